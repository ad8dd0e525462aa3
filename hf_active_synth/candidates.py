"""A cycle's candidates, from the generator's rows to the accepted samples: validate, score, filter, select.

Selection is the discrete form of L_G = E_x~G[Var(y|x)]: among the filters' survivors, each target keeps its quota of
the highest-disagreement candidates (or, with `"band"`, of those of medium disagreement). Every function here is pure
(the member logits are computed by the caller; with `judge_members` they are the JUDGE members' only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Value

from .acquisition import mean_probabilities, score
from .columns import (
    ANCHOR_LABEL_COLUMN,
    LABEL_PROBABILITY_COLUMN,
    PREDICTED_LABEL_COLUMN,
    PREDICTED_PROBABILITY_COLUMN,
    REQUIRED_PROVENANCE_COLUMNS,
    SCORE_COLUMN,
    TARGET_ID_COLUMN,
    TARGET_UNCERTAINTY_COLUMN,
    set_column,
)
from .filters import Filter, FilterContext
from .generators.base import SynthesisTarget

if TYPE_CHECKING:
    from .config import ActiveSynthesisConfig, SelectionStrategy

# The count `filter_counts` records after the filters: rows kept by selection.
SELECTED_COUNT = "selected"


@dataclass(frozen=True)
class CandidateSettings:
    """The loop settings candidate handling reads.

    Args:
        input_column (`str`), label_column (`str`): The candidates' (and real data's) input and label columns.
        num_labels (`int`): Number of classes.
        acquisition_function (`str`): The uncertainty score written to `synth_score`.
        selection_strategy (`str`, defaults to `"top"`): `"top"`, `"random"` or `"band"` (see
            [`select_candidates`]).
        selection_band (`tuple[float, float]`, defaults to `(0.25, 0.75)`): The quantile band of `"band"`.
    """

    input_column: str
    label_column: str
    num_labels: int
    acquisition_function: str
    selection_strategy: SelectionStrategy = "top"
    selection_band: tuple[float, float] = (0.25, 0.75)

    @classmethod
    def from_config(cls, args: ActiveSynthesisConfig, num_labels: int) -> CandidateSettings:
        return cls(
            input_column=args.input_column,
            label_column=args.label_column,
            num_labels=num_labels,
            acquisition_function=args.acquisition_function,
            selection_strategy=args.selection_strategy,
            selection_band=(args.selection_band_low, args.selection_band_high),
        )

    def filter_context(
        self, real_dataset: Dataset, accepted_dataset: Dataset | None, num_requested: int | None = None
    ) -> FilterContext:
        """What the filters may look at: these columns, the real training rows, earlier accepted samples and how
        many samples the cycle requests."""
        return FilterContext(
            input_column=self.input_column,
            label_column=self.label_column,
            real_dataset=real_dataset,
            num_labels=self.num_labels,
            accepted_dataset=accepted_dataset,
            num_requested=num_requested,
        )


def validate_candidates(
    candidates: Any, targets: Sequence[SynthesisTarget], generator_name: str, settings: CandidateSettings
) -> None:
    """Checks a generator's output before anything is scored: a non-empty `Dataset` with the input, label and
    provenance columns and integer labels in `[0, num_labels)`.

    Raises:
        `TypeError`: Not a `Dataset`.
        `ValueError`: No rows, missing columns, or invalid labels (the message names the generator and the fix).
    """
    name, input_column, label_column = generator_name, settings.input_column, settings.label_column
    num_labels = settings.num_labels
    if not isinstance(candidates, Dataset):
        raise TypeError(f"Generator {name!r} returned {type(candidates).__name__}; it must return a Dataset.")
    if len(candidates) == 0:
        raise ValueError(
            f"Generator {name!r} returned no candidates for {len(targets)} targets. Check its output parsing "
            "and settings (max_new_tokens, prompts, guidance scales); the completed cycles are kept on disk."
        )
    missing = [
        column
        for column in (input_column, label_column, *REQUIRED_PROVENANCE_COLUMNS)
        if column not in candidates.column_names
    ]
    if missing:
        raise ValueError(
            f"Generator {name!r} returned rows without the column(s) {missing} (it returned "
            f"{candidates.column_names}). Every candidate needs its input, its label and provenance columns."
        )
    labels = candidates[label_column]
    bad = [label for label in labels if not isinstance(label, int) or not 0 <= label < num_labels]
    if bad:
        raise ValueError(
            f"Generator {name!r} returned rows with invalid labels {bad[:5]}: each needs an integer label in "
            f"[0, {num_labels})."
        )


def score_candidates(
    candidates: Dataset,
    logits: torch.Tensor,
    targets: Sequence[SynthesisTarget],
    settings: CandidateSettings,
    seed: int,
) -> Dataset:
    """Adds (or replaces) the score columns filters and selection read.

    Args:
        candidates (`datasets.Dataset`): Validated candidates.
        logits (`torch.Tensor`): Member logits `[N, C, K]` of `candidates`, in row order.
        targets (`Sequence[SynthesisTarget]`): The cycle's targets (their scores become `synth_target_uncertainty`,
            their examples' classes `synth_anchor_label`).
        settings ([`CandidateSettings`]): The label column and the acquisition function of `synth_score`.
        seed (`int`): Seed of random scores (only for `acquisition_function="random"`).
    """
    scores = score(logits, settings.acquisition_function, seed=seed)
    probabilities = mean_probabilities(logits)
    labels = torch.tensor(candidates[settings.label_column])
    predicted_probability, predicted = probabilities.max(dim=1)
    target_scores = {target.target_id: target.score for target in targets}
    anchor_labels = {target.target_id: target.anchor_label for target in targets}
    columns = {
        SCORE_COLUMN: scores.tolist(),
        LABEL_PROBABILITY_COLUMN: probabilities[torch.arange(len(labels)), labels].tolist(),
        PREDICTED_LABEL_COLUMN: predicted.tolist(),
        PREDICTED_PROBABILITY_COLUMN: predicted_probability.tolist(),
        TARGET_UNCERTAINTY_COLUMN: [target_scores.get(t, float("nan")) for t in candidates[TARGET_ID_COLUMN]],
        ANCHOR_LABEL_COLUMN: [anchor_labels.get(t, -1) for t in candidates[TARGET_ID_COLUMN]],
    }
    for column, values in columns.items():
        candidates = set_column(candidates, column, values)
    return candidates


def apply_filters(
    candidates: Dataset, filters: Sequence[Filter], context: FilterContext
) -> tuple[Dataset, dict[str, int]]:
    """Runs `filters` in order; returns the survivors and the rows left after each filter, by filter name."""
    counts: dict[str, int] = {}
    kept = candidates
    for candidate_filter in filters:
        kept = candidate_filter(kept, context)
        counts[candidate_filter.name] = len(kept)
    return kept, counts


def quantile_positions(scores: np.ndarray) -> np.ndarray:
    """Each score's quantile position among `scores`: its average rank / (n - 1), in `[0, 1]` (0.5 when n = 1)."""
    if len(scores) == 1:
        return np.array([0.5])
    below = (scores[None, :] < scores[:, None]).sum(axis=1)
    ties = (scores[None, :] == scores[:, None]).sum(axis=1) - 1
    return (below + ties / 2) / (len(scores) - 1)


def band_priority(scores: np.ndarray, target_ids: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Selection priority (lower first) of `"band"`: in-band candidates of a target first, closest to the band's
    middle first, then the others by the same distance (they only fill quotas the band cannot).

    Args:
        scores (`np.ndarray`): `synth_score` of each candidate.
        target_ids (`np.ndarray`): Each candidate's target.
        band (`tuple[float, float]`): `(low, high)` quantiles, among each target's candidates.
    """
    low, high = band
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"The selection band must satisfy 0 <= low < high <= 1 (quantiles), got {band}.")
    priority = np.empty(len(scores))
    for target in np.unique(target_ids):
        rows = np.flatnonzero(target_ids == target)
        position = quantile_positions(scores[rows])
        outside = (position < low - 1e-9) | (position > high + 1e-9)
        # Distances are at most 1, so +2 puts every out-of-band candidate after every in-band one.
        priority[rows] = np.abs(position - (low + high) / 2) + 2.0 * outside
    return priority


def select_candidates(
    candidates: Dataset,
    quotas: Mapping[int, int],
    strategy: SelectionStrategy = "top",
    seed: int = 0,
    band: tuple[float, float] = (0.25, 0.75),
) -> Dataset:
    """Keeps `quotas[target_id]` candidates per target, then tops up from the leftovers to the total budget.

    With `strategy="top"` the candidates with the highest `synth_score` (ensemble disagreement) are kept, so the
    accepted set maximises the expected disagreement of what the generator proposed; `"random"` keeps a seeded
    uniform sample instead (the random-synthetic baseline). `"band"` keeps medium disagreement: the candidates whose
    score's quantile position among their target's candidates (see [`quantile_positions`]) lies in `band`, closest
    to the band's middle first (extreme scores are often off-label or off-manifold samples). When a target has
    fewer eligible candidates than its quota, its share goes to the best leftovers of other targets (for `"band"`,
    in-band ones first), so the budget is met whenever enough candidates survived.

    Returns the kept rows ordered by target id, then by rank, so the result is deterministic.
    """
    if len(candidates) == 0:
        return candidates
    target_ids = np.asarray(candidates[TARGET_ID_COLUMN])
    if strategy == "top":
        priority = -np.asarray(candidates[SCORE_COLUMN], dtype=np.float64)
    elif strategy == "random":
        priority = np.random.default_rng(seed).random(len(candidates))
    elif strategy == "band":
        priority = band_priority(np.asarray(candidates[SCORE_COLUMN], dtype=np.float64), target_ids, band)
    else:
        raise ValueError(f"Unknown selection strategy {strategy!r}; use 'top', 'random' or 'band'.")
    # Stable sort by priority, ties broken by row order.
    order = np.argsort(priority, kind="stable")
    taken: list[int] = []
    leftovers: list[int] = []
    used = dict.fromkeys(quotas, 0)
    for row in order:
        target = int(target_ids[row])
        if used.get(target, 0) < quotas.get(target, 0):
            used[target] += 1
            taken.append(int(row))
        else:
            leftovers.append(int(row))
    budget = sum(quotas.values())
    taken.extend(leftovers[: max(0, budget - len(taken))])
    rank = {row: position for position, row in enumerate(order.tolist())}
    taken.sort(key=lambda row: (int(target_ids[row]), rank[row]))
    return candidates.select(taken)


def cast_like_real(synthetic: Dataset, real_features: Features, label_column: str) -> Dataset:
    """Gives the label column the real data's feature (e.g. `ClassLabel`), so pushes carry class names."""
    feature = real_features[label_column]
    if isinstance(feature, (ClassLabel, Value)):
        synthetic = synthetic.cast_column(label_column, feature)
    return synthetic


def filter_and_select(
    scored: Dataset,
    filters: Sequence[Filter],
    context: FilterContext,
    quotas: Mapping[int, int],
    strategy: SelectionStrategy,
    seed: int,
    band: tuple[float, float] = (0.25, 0.75),
) -> tuple[Dataset, dict[str, int]]:
    """Filters scored candidates, selects each target's quota and casts the labels like the real data.

    Args:
        scored (`datasets.Dataset`): Candidates with their score columns (see [`score_candidates`]).
        filters (`Sequence[Filter]`): Applied in order.
        context ([`FilterContext`]): What the filters may look at (the real rows give the label feature too).
        quotas (`Mapping[int, int]`): `target_id -> samples to keep` (see [`select_candidates`]).
        strategy (`str`): `"top"`, `"random"` or `"band"`.
        seed (`int`): Seed of the random selection.
        band (`tuple[float, float]`, defaults to `(0.25, 0.75)`): The quantile band of `"band"`.

    Returns:
        `tuple[Dataset, dict[str, int]]`: The accepted rows, and the rows left after each filter plus
        `"selected"` (the cycle's `filter_counts`).
    """
    kept, counts = apply_filters(scored, filters, context)
    selected = select_candidates(kept, quotas=quotas, strategy=strategy, seed=seed, band=band)
    counts[SELECTED_COUNT] = len(selected)
    return cast_like_real(selected, context.real_dataset.features, context.label_column), counts

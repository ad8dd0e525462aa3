"""Choosing a cycle's synthesis targets: score the real pool, split the budget into quotas, build the targets.

Pure functions of the pool's member logits, its labels and the loop's settings: no trainer needed. Where the pool
comes from (`target_source`) is the trainer's business: the labelled training rows scored by the loop's estimator
(`"train"`), the same rows scored by members that never trained on them (`"crossfit"`, see `crossfit.py`, whose
seeded folds come from [`fold_assignment`]), or an unlabelled pool whose targets carry confidence-gated ensemble
pseudo-labels (`"pool"`, [`pseudo_labels`]). The budget goes to classes equally or by their uncertainty
([`class_quotas`]); with `hard_negative_share`, part of each target's quota becomes a hard negative: samples of the
class the ensemble confuses the target with most, drawn from the target's own image ([`with_hard_negatives`]).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
from datasets import Dataset

from .acquisition import mean_probabilities, score, select_per_class
from .generators.base import SynthesisTarget

if TYPE_CHECKING:
    from .config import ActiveSynthesisConfig

TargetStrategy = Literal["uncertain", "unlearned", "random"]
"""Values of `target_strategy`: the most uncertain real examples of each class, the ones whose label the ensemble
gives the least probability (not yet learned), or seeded random ones."""
LABEL_LOSS_STRATEGIES: tuple[str, ...] = ("unlearned",)
"""The strategies that rank rows by their label, so they need labels from outside the ensemble."""
TargetSource = Literal["train", "crossfit", "pool", "pseudo_labelled_pool"]
"""Values of `target_source`: where targets come from and how they are scored (see the module docstring)."""
POOL_TARGET_SOURCES: tuple[str, ...] = ("pool", "pseudo_labelled_pool")
"""The sources whose targets are rows of a separate `pool_dataset` (scored by members that never trained on it)."""
ClassBudget = Literal["equal", "uncertainty"]
"""Values of `class_budget`: the cycle's budget split equally over classes, or by each class's mean uncertainty."""
TARGET_STRATEGIES: tuple[str, ...] = get_args(TargetStrategy)
TARGET_SOURCES: tuple[str, ...] = get_args(TargetSource)
CLASS_BUDGETS: tuple[str, ...] = get_args(ClassBudget)


@dataclass(frozen=True)
class TargetingSettings:
    """The loop settings targeting reads.

    Args:
        input_column (`str`), label_column (`str`): The pool's input and label columns.
        num_labels (`int`): Number of classes.
        targets_per_class (`int`): Targets per class (fewer when a class has fewer examples).
        budget (`int`): Synthetic samples to accept per cycle (`synthetic_samples_per_cycle`).
        acquisition_function (`str`): The uncertainty score (a name of `acquisition.ACQUISITION_FUNCTIONS`).
        target_strategy (`str`, defaults to `"uncertain"`): `"uncertain"`: the highest acquisition scores of each
            class; `"unlearned"`: the highest ensemble cross-entropy of each row's label ([`label_loss`]), the
            examples not yet learned (needs labels from outside the ensemble: not `target_source="pool"`);
            `"random"`: seeded random examples of each class (the random baselines).
        target_source (`str`, defaults to `"train"`): With `"pool"` the pool's label column is never read: a row's
            class is its ensemble pseudo-label ([`pseudo_labels`]); otherwise it is the row's label (with
            `"pseudo_labelled_pool"` a pseudo-label given by a labeller outside the loop, e.g. label spreading).
        pseudo_label_min_confidence (`float`, defaults to 0.5): With `target_source="pool"`, rows whose
            ensemble-mean probability of their pseudo-label is below this are never targets.
        class_budget (`str`, defaults to `"equal"`): `"equal"`: the budget is split evenly over all targets;
            `"uncertainty"`: first over classes by their mean acquisition score ([`class_quotas`]), then within each
            class over its targets.
        class_budget_floor (`float`, defaults to 0.5): With `class_budget="uncertainty"`, the share of the equal
            per-class quota every class keeps.
        hard_negative_share (`float`, defaults to 0.0): Share of the budget spent on hard negatives (see
            [`with_hard_negatives`]); 0 keeps every sample in its target's class.
    """

    input_column: str
    label_column: str
    num_labels: int
    targets_per_class: int
    budget: int
    acquisition_function: str
    target_strategy: TargetStrategy = "uncertain"
    target_source: TargetSource = "train"
    pseudo_label_min_confidence: float = 0.5
    class_budget: ClassBudget = "equal"
    class_budget_floor: float = 0.5
    hard_negative_share: float = 0.0

    @classmethod
    def from_config(cls, args: ActiveSynthesisConfig, num_labels: int) -> TargetingSettings:
        return cls(
            input_column=args.input_column,
            label_column=args.label_column,
            num_labels=num_labels,
            targets_per_class=args.targets_per_class,
            budget=args.synthetic_samples_per_cycle,
            acquisition_function=args.acquisition_function,
            target_strategy=args.target_strategy,
            target_source=args.target_source,
            pseudo_label_min_confidence=args.pseudo_label_min_confidence,
            class_budget=args.class_budget,
            class_budget_floor=args.class_budget_floor,
            hard_negative_share=args.hard_negative_share,
        )


def label_loss(pool_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's cross-entropy `[N]` of its label under the ensemble-mean probabilities, `-log p̄(y | x)`.

    Unlike an acquisition function it reads the label: a row the ensemble confidently puts in the wrong class
    scores high here (low disagreement, so BALD ranks it last), a row it already gets right scores near 0. Rows
    without a class (label -1) score `-inf`, so they are never ranked first.

    Args:
        pool_logits (`torch.Tensor`): Member logits `[N, C, K]`.
        labels (`torch.Tensor`): Class ids `[N]` (-1: no class).
    """
    probabilities = mean_probabilities(pool_logits)
    has_class = labels >= 0
    own = probabilities[torch.arange(len(labels)), labels.clamp(min=0)]
    # The clamp keeps a probability that underflowed to 0 finite (and still the largest loss).
    loss = -torch.log(own.clamp(min=torch.finfo(own.dtype).tiny))
    return torch.where(has_class, loss, torch.full_like(loss, -math.inf))


def score_pool(
    pool_logits: torch.Tensor,
    acquisition_function: str,
    *,
    target_strategy: str,
    seed: int,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Target scores `[N]` of the pool, highest first: `acquisition_function` for `"uncertain"` targets, the label's
    cross-entropy ([`label_loss`]) for `"unlearned"` ones, seeded random scores for `"random"` ones.

    Args:
        pool_logits (`torch.Tensor`): Member logits `[N, C, K]` of the real pool.
        acquisition_function (`str`): A name of `acquisition.ACQUISITION_FUNCTIONS` (e.g. `"bald"`).
        target_strategy (`str`): `"uncertain"`, `"unlearned"` or `"random"` (the random baselines).
        seed (`int`): Seed of the random scores.
        labels (`torch.Tensor`, *optional*): The rows' class ids `[N]`; needed by `"unlearned"`.
    """
    if target_strategy not in TARGET_STRATEGIES:
        raise ValueError(f"Unknown target strategy {target_strategy!r}; choose one of {list(TARGET_STRATEGIES)}.")
    if target_strategy == "unlearned":
        if labels is None:
            raise ValueError("target_strategy='unlearned' ranks rows by their label: pass `labels`.")
        return label_loss(pool_logits, labels)
    return score(pool_logits, acquisition_function if target_strategy == "uncertain" else "random", seed=seed)


def interleave_by_rank(per_class: Mapping[int, Sequence[int]], targets_per_class: int, num_labels: int) -> list[int]:
    """Row indices ordered rank by rank across classes: every class's best, then every class's second, ...

    So, when the budget does not divide evenly, the extra samples go to the most uncertain target of each class
    first. Classes with fewer than `targets_per_class` rows simply drop out of the later ranks.
    """
    return [
        per_class[label][rank]
        for rank in range(targets_per_class)
        for label in range(num_labels)
        if rank < len(per_class[label])
    ]


def allocate_quotas(budget: int, num_targets: int) -> list[int]:
    """Splits `budget` samples over `num_targets` targets as evenly as possible, the remainder to the first ones.

    The quotas sum to `budget`; targets beyond the budget get 0 (and are dropped by `choose_targets`).
    """
    return [budget // num_targets + (1 if i < budget % num_targets else 0) for i in range(num_targets)]


def fold_assignment(labels: Sequence[int], num_folds: int, seed: int) -> list[int]:
    """The cross-fitting fold (`0 .. num_folds - 1`) of every labelled row, stratified by class and seeded.

    Each class's rows, in a seeded random order, are dealt to the folds in turn, carrying on where the previous
    class stopped: folds differ in size by at most one and hold every class as evenly as it divides. The same
    labels and seed always give the same folds.

    Args:
        labels (`Sequence[int]`): The rows' class ids.
        num_folds (`int`): Number of folds, k (at least 2, at most the number of rows).
        seed (`int`): Seed of the row order.

    Raises:
        `ValueError`: `num_folds` is below 2 or above the number of rows.
    """
    if not 2 <= num_folds <= len(labels):
        raise ValueError(
            f"Cross-fitting needs 2 <= crossfit_folds <= the number of labelled rows ({len(labels)}), got "
            f"{num_folds}. Lower `crossfit_folds`."
        )
    generator = torch.Generator().manual_seed(seed)
    folds = [0] * len(labels)
    dealt = 0
    for label in sorted(set(labels)):
        rows = [i for i, y in enumerate(labels) if y == label]
        for position in torch.randperm(len(rows), generator=generator).tolist():
            folds[rows[position]] = dealt % num_folds
            dealt += 1
    return folds


def pseudo_labels(logits: torch.Tensor, min_confidence: float) -> torch.Tensor:
    """Ensemble pseudo-labels `[N]` of unlabelled rows: the argmax of the ensemble-mean probabilities, or -1 where
    that probability is below `min_confidence` (the row is never a target).

    The gate keeps targets uncertain yet not hopeless: a row the ensemble cannot place in any class would give the
    generator an anchor of unknown class.

    Args:
        logits (`torch.Tensor`): Member logits `[N, C, K]`.
        min_confidence (`float`): Least ensemble-mean probability of the pseudo-label, in `[0, 1]`.
    """
    confidence, labels = mean_probabilities(logits).max(dim=1)
    return torch.where(confidence >= min_confidence, labels, torch.full_like(labels, -1))


def class_quotas(budget: int, class_scores: Mapping[int, float], floor: float) -> dict[int, int]:
    """Splits `budget` samples over classes by their uncertainty, each keeping `floor` of the equal quota.

    Class `c` gets the share `floor·B/C + (1 - floor)·B·s_c / Σ s` of the budget `B` (`C` classes, `s_c` its
    score), rounded by largest remainder (ties to the lower class id): the quotas sum to `budget` exactly and every
    class gets at least `⌊floor·B/C⌋`. `floor=1` is the equal split, `floor=0` a purely proportional one; scores
    that are all zero give the equal split. Computed in exact fractions, so rounding never loses a sample.

    Args:
        budget (`int`): Samples to split.
        class_scores (`Mapping[int, float]`): Class id -> its (non-negative) uncertainty, for the classes that have
            targets; the others get nothing.
        floor (`float`): Share of the equal per-class quota every class keeps, in `[0, 1]`.
    """
    if not class_scores:
        return {}
    classes = sorted(class_scores)
    weights = {c: Fraction(max(float(class_scores[c]), 0.0)) for c in classes}
    if sum(weights.values()) == 0:
        weights = dict.fromkeys(classes, Fraction(1))
    total = sum(weights.values())
    base = Fraction(floor) * budget / len(classes)
    spread = budget - base * len(classes)
    shares = {c: base + spread * weights[c] / total for c in classes}
    quotas = {c: math.floor(shares[c]) for c in classes}
    leftover = budget - sum(quotas.values())
    for c in sorted(classes, key=lambda c: (quotas[c] - shares[c], c))[:leftover]:
        quotas[c] += 1
    return quotas


def target_labels(pool_logits: torch.Tensor, pool: Dataset, settings: TargetingSettings) -> torch.Tensor:
    """The class each pool row is a target of: its label, or with `target_source="pool"` its confidence-gated
    pseudo-label (-1: never a target), without reading the pool's label column."""
    if settings.target_source == "pool":
        return pseudo_labels(pool_logits, settings.pseudo_label_min_confidence)
    return torch.tensor(pool[settings.label_column])


def _quotas_by_class_uncertainty(
    pool_logits: torch.Tensor,
    labels: torch.Tensor,
    per_class: Mapping[int, Sequence[int]],
    ranked: Sequence[int],
    settings: TargetingSettings,
) -> list[int]:
    """`class_budget="uncertainty"`: each class's quota from the mean acquisition score of its candidate rows (every
    row of that class, or pseudo-label, whatever `target_strategy`, so the random baselines get the same class
    budget), split over its targets most uncertain first; returned in `ranked` order."""
    uncertainty = score(pool_logits, settings.acquisition_function)
    class_scores = {c: float(uncertainty[labels == c].mean()) for c, rows in per_class.items() if rows}
    budgets = class_quotas(settings.budget, class_scores, settings.class_budget_floor)
    quota_of = {
        row: quota
        for c, rows in per_class.items()
        if rows
        for row, quota in zip(rows, allocate_quotas(budgets[c], len(rows)))
    }
    return [quota_of[row] for row in ranked]


def confusable_classes(pool_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's most confusable other class `[N]`: the ensemble-mean argmax over every class but the row's own
    `labels` (ties to the lower class id)."""
    probabilities = mean_probabilities(pool_logits).clone()
    own = labels.clamp(min=0)
    probabilities[torch.arange(len(labels)), own] = -1.0
    return probabilities.argmax(dim=1)


def split_hard_negative_quotas(quotas: Sequence[int], share: float) -> list[int]:
    """How many of each target's `quotas` become hard negatives: `share` of the running total, rounded half up, so
    the counts sum to `round(share * sum(quotas))` and no target gives more than its quota. Exact fractions."""
    fraction = Fraction(share).limit_denominator(10**6)  # 0.3 means 3/10, not the float just below it
    split, total, given = [], 0, 0
    for quota in quotas:
        total += quota
        due = math.floor(fraction * total + Fraction(1, 2))
        split.append(min(quota, due - given))
        given += split[-1]
    return split


def with_hard_negatives(
    targets: Sequence[SynthesisTarget], pool_logits: torch.Tensor, share: float
) -> list[SynthesisTarget]:
    """Turns `share` of the budget into hard negatives (GeNIe, Koohpayegani et al. 2024).

    A hard negative of target `t` (an image of class `y`) asks for samples of the class `y'` the ensemble confuses
    it with most, drawn from `t`'s own image (img2img / SDEdit at the generator's strength, conditioned on `y'`): a
    `y'` sample that keeps much of a `y` image's layout, right on the `y`/`y'` boundary the ensemble is unsure of.
    Each target keeps `quota - h` samples of its own class and its hard negative gets `h`
    ([`split_hard_negative_quotas`]); targets are renumbered in order, each hard negative right after its source.
    The random baselines get the same treatment from their random targets, so only the choice of targets differs.

    Args:
        targets (`Sequence[SynthesisTarget]`): The chosen targets, `example_id` indexing `pool_logits`' rows.
        pool_logits (`torch.Tensor`): Member logits `[N, C, K]` of the pool the targets come from.
        share (`float`): Share of the budget to give hard negatives, in `[0, 1]`.
    """
    if share == 0.0:
        return list(targets)
    example_ids = torch.tensor([target.example_id for target in targets], dtype=torch.long)
    labels = torch.tensor([target.label for target in targets], dtype=torch.long)
    confused = confusable_classes(pool_logits[example_ids], labels).tolist()
    hard = split_hard_negative_quotas([target.num_samples for target in targets], share)
    expanded: list[SynthesisTarget] = []
    for target, other, num_hard in zip(targets, confused, hard):
        if target.num_samples > num_hard:
            expanded.append(dataclasses.replace(target, num_samples=target.num_samples - num_hard))
        if num_hard:
            expanded.append(
                dataclasses.replace(target, label=int(other), example_label=target.label, num_samples=num_hard)
            )
    return [dataclasses.replace(target, target_id=i) for i, target in enumerate(expanded)]


def choose_targets(
    pool_logits: torch.Tensor, pool: Dataset, settings: TargetingSettings, seed: int
) -> list[SynthesisTarget]:
    """The `targets_per_class` most uncertain real examples of each class (the least learned ones for
    `target_strategy="unlearned"`, random ones for `"random"`), interleaved by rank, each with its quota of the cycle's budget.

    Args:
        pool_logits (`torch.Tensor`): Member logits `[N, C, K]` of `pool`.
        pool (`datasets.Dataset`): The scored real examples (raw rows with the input column, and the label column
            unless `target_source="pool"`, which never reads it).
        settings ([`TargetingSettings`]): Columns, budget, scoring, label source and class budget.
        seed (`int`): Seed of the random scores (the cycle's selection seed).

    Returns:
        `list[SynthesisTarget]`: Targets with a quota > 0, in the interleaved order (with `hard_negative_share`,
        each target's hard negative right after it); `target_id` is the position in that list.
    """
    labels = target_labels(pool_logits, pool, settings)
    scores = score_pool(
        pool_logits, settings.acquisition_function, target_strategy=settings.target_strategy, seed=seed, labels=labels
    )
    per_class = select_per_class(scores, labels, settings.targets_per_class, settings.num_labels)
    ranked = interleave_by_rank(per_class, settings.targets_per_class, settings.num_labels)
    if settings.class_budget == "uncertainty":
        quotas = _quotas_by_class_uncertainty(pool_logits, labels, per_class, ranked, settings)
    else:
        quotas = allocate_quotas(settings.budget, len(ranked))
    # Targets without a share of the budget are dropped; the others are numbered without gaps.
    kept = [(example_id, quota) for example_id, quota in zip(ranked, quotas) if quota > 0]
    inputs = pool.select([example_id for example_id, _ in kept])[settings.input_column]
    targets = [
        SynthesisTarget(
            target_id=i,
            label=int(labels[example_id]),
            example_id=int(example_id),
            example=inputs[i],
            score=float(scores[example_id]),
            num_samples=quota,
        )
        for i, (example_id, quota) in enumerate(kept)
    ]
    return with_hard_negatives(targets, pool_logits, settings.hard_negative_share)


def seed_examples(targets: Sequence[SynthesisTarget]) -> dict[int, list[tuple[int, Any]]]:
    """Every target's `(example_id, example)`, grouped by the example's own class (a hard negative's example counts
    for the class it was drawn from, once): few-shot material shared across processes."""
    examples: dict[int, list[tuple[int, Any]]] = {}
    seen: set[tuple[int, int]] = set()
    for target in targets:
        key = (target.anchor_label, target.example_id)
        if key not in seen:
            seen.add(key)
            examples.setdefault(target.anchor_label, []).append((target.example_id, target.example))
    return examples


def target_quotas(targets: Sequence[SynthesisTarget]) -> dict[int, int]:
    """`target_id -> num_samples`: the per-target quotas that selection fills."""
    return {target.target_id: target.num_samples for target in targets}

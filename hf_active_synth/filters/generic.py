"""Filters that work for any modality."""

from __future__ import annotations

import hashlib
import logging
import pickle
from typing import TYPE_CHECKING, Any

import numpy as np

from ..columns import LABEL_PROBABILITY_COLUMN, PREDICTED_LABEL_COLUMN, PREDICTED_PROBABILITY_COLUMN
from .base import Filter, FilterContext

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "PREDICTED_LABEL_COLUMN",  # defined in `hf_active_synth.columns`; importable from here too
    "PREDICTED_PROBABILITY_COLUMN",
    "ExactDuplicateFilter",
    "LabelAgreementFilter",
    "LabelProbabilityFloorFilter",
    "content_fingerprint",
    "label_filters",
]


class LabelAgreementFilter:
    """Drops candidates the ensemble confidently assigns to a label other than the intended one.

    Args:
        max_other_probability (`float`, defaults to 0.9): A candidate is rejected when the ensemble-mean argmax is
            another class *and* its probability is above this. Lower is stricter; 1.0 disables the check.
        min_label_probability (`float`, defaults to 0.0): Also reject candidates whose intended label gets less
            ensemble-mean probability than this.
    """

    name = "label_agreement"
    checks_real_data = False

    def __init__(self, max_other_probability: float = 0.9, min_label_probability: float = 0.0):
        if not 0.0 <= max_other_probability <= 1.0 or not 0.0 <= min_label_probability <= 1.0:
            raise ValueError("LabelAgreementFilter thresholds are probabilities: pass values in [0, 1].")
        self.max_other_probability = max_other_probability
        self.min_label_probability = min_label_probability

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset:
        labels = np.asarray(candidates[context.label_column])
        predicted = np.asarray(candidates[PREDICTED_LABEL_COLUMN])
        predicted_probability = np.asarray(candidates[PREDICTED_PROBABILITY_COLUMN])
        label_probability = np.asarray(candidates[LABEL_PROBABILITY_COLUMN])
        confidently_other = (predicted != labels) & (predicted_probability > self.max_other_probability)
        keep = ~confidently_other & (label_probability >= self.min_label_probability)
        return candidates.select(np.flatnonzero(keep))


class LabelProbabilityFloorFilter:
    """Drops candidates whose intended label gets less judged probability than a floor.

    It reads `synth_label_probability`, the ensemble-mean probability of the intended label (from the JUDGE members
    when `judge_members` is set, so the members that guided generation have no say). Unlike
    `LabelAgreementFilter`, which needs another class to be confidently predicted, it also fires on the uncertain,
    off-label samples that guidance towards disagreement produces; its rejections are counted under its own name.

    A floor set for a well-trained ensemble can reject every candidate of a weak one (few labels, a harder data set,
    an early cycle). With `top_up`, when fewer candidates than the cycle requests (`context.num_requested`) clear
    the floor, the most probable of the others are kept too, up to that number: the floor then ranks candidates by
    how much the ensemble believes their label instead of emptying the cycle (`top_up_` counts the rows kept so
    at the last call, and a warning says so).

    Args:
        min_probability (`float`): The floor, a probability in `[0, 1]` (e.g. 0.5; 1/num_labels is chance).
        top_up (`bool`, defaults to `False`): Keep at least `context.num_requested` candidates, the most probable
            first (see above); `False` drops everything under the floor.
    """

    name = "label_probability_floor"
    checks_real_data = False

    def __init__(self, min_probability: float, top_up: bool = False):
        if not 0.0 <= min_probability <= 1.0:
            raise ValueError(f"`min_probability` is a probability: pass a value in [0, 1], got {min_probability}.")
        self.min_probability = min_probability
        self.top_up = top_up

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset:
        if LABEL_PROBABILITY_COLUMN not in candidates.column_names:
            raise ValueError(
                f"{type(self).__name__} reads {LABEL_PROBABILITY_COLUMN!r}: score the candidates first "
                "(`candidates.score_candidates`)."
            )
        label_probability = np.asarray(candidates[LABEL_PROBABILITY_COLUMN], dtype=np.float64)
        keep = label_probability >= self.min_probability
        cleared, wanted = int(keep.sum()), min(context.num_requested or 0, len(candidates))
        self.top_up_ = 0
        if self.top_up and cleared < wanted:
            # Most probable first; a stable sort keeps ties in row order, so the choice is deterministic.
            below = np.flatnonzero(~keep)
            best_below = below[np.argsort(-label_probability[below], kind="stable")][: wanted - cleared]
            keep[best_below] = True
            self.top_up_ = len(best_below)
            logger.warning(
                "Only %d of %d candidates reach the label-probability floor %.2f; keeping the %d most probable of the "
                "others too, so the cycle still gets its %d samples (the floor suits a better-trained ensemble: "
                "lower --min_label_probability to silence this).",
                cleared, len(candidates), self.min_probability, self.top_up_, wanted,
            )  # fmt: skip
        return candidates.select(np.flatnonzero(keep))


def content_fingerprint(value: Any) -> str:
    """A stable hash of an input value (text, array, PIL image, nested lists) for exact-duplicate checks."""
    if isinstance(value, str):
        payload = value.strip().encode()
    elif hasattr(value, "tobytes"):  # numpy arrays and PIL images
        payload = np.asarray(value).tobytes()
    else:
        payload = pickle.dumps(value)
    return hashlib.sha256(payload).hexdigest()


class ExactDuplicateFilter:
    """Drops candidates identical to an earlier candidate, a real training example, or an already accepted sample."""

    name = "exact_duplicate"
    # Most of what it drops repeats another candidate or an accepted sample, so its count cannot be reported as
    # copies of real data; the near-copy filters are the privacy checks.
    checks_real_data = False

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset:
        seen = {content_fingerprint(value) for value in context.real_dataset[context.input_column]}
        if context.accepted_dataset is not None:
            seen |= {content_fingerprint(value) for value in context.accepted_dataset[context.input_column]}
        keep = []
        for index, value in enumerate(candidates[context.input_column]):
            fingerprint = content_fingerprint(value)
            if fingerprint not in seen:
                seen.add(fingerprint)
                keep.append(index)
        return candidates.select(keep)


def label_filters(
    max_other_probability: float, min_label_probability: float | None = None, top_up: bool = False
) -> list[Filter]:
    """The label checks of a filter chain: [`LabelAgreementFilter`], then, with `min_label_probability`, a
    [`LabelProbabilityFloorFilter`] (what the recipes' `--max_other_probability`, `--min_label_probability` and
    `--min_label_probability_top_up` build).

    Args:
        max_other_probability (`float`): Reject a candidate the ensemble gives another label above this.
        min_label_probability (`float`, *optional*): Reject a candidate whose intended label gets less mean
            probability than this; `None` (default): no floor.
        top_up (`bool`, defaults to `False`): The floor's `top_up` (never leave a cycle short because of the floor).
    """
    filters: list[Filter] = [LabelAgreementFilter(max_other_probability=max_other_probability)]
    if min_label_probability is not None:
        filters.append(LabelProbabilityFloorFilter(min_label_probability, top_up=top_up))
    return filters

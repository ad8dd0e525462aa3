"""Near-copies at the near-copy filter's own threshold and measure, for the privacy audit.

The audit counts, among the samples it is given, those the run's near-copy filter would reject: every accepted
sample has passed it, so a count above 0 means the filter did not run, ran with another threshold, or the samples
did not come through it (a dataset assembled by hand). The filter's own measure is used, not the audit's DCR space:
for images the two agree (RMS pixels); for text the filter measures shingle containment, which the TF-IDF cosine
distance does not translate into.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["NearCopyRule", "near_copy_rule"]


@dataclass(frozen=True)
class NearCopyRule:
    """What counts as a near-copy of a real training record: one near-copy filter's measure and threshold.

    Args:
        filter (`Filter`): A `filters.image.NearCopyFilter` or a `filters.text.RealNearCopyFilter`.
        measure (`str`): How the filter measures closeness (for reports).
        threshold (`float`): The filter's threshold.
        direction (`str`): `"below"` (a distance under the threshold is a near-copy) or `"at_or_above"` (an overlap
            at or over it is).
    """

    filter: Any
    measure: str
    threshold: float
    direction: Literal["below", "at_or_above"]

    def flags(self, samples: Dataset, real: Dataset, input_column: str, label_column: str) -> np.ndarray:
        """`bool [len(samples)]`: which samples the filter would reject as near-copies of a row of `real`."""
        from ..filters.base import FilterContext

        if len(samples) == 0:
            return np.zeros(0, dtype=bool)
        context = FilterContext(input_column, label_column, real, num_labels=0)
        if self.direction == "below":
            return self.filter.nearest_real_distances(samples, context) < self.threshold
        texts = [str(text) for text in samples[input_column]]
        return self.filter.max_real_overlap(texts, context) >= self.threshold


def near_copy_rule(filters: Sequence[Any]) -> NearCopyRule | None:
    """The near-copy rule of the first near-copy filter among `filters`; `None` when the run has none (the audit
    then reports no near-copy count rather than a count against a threshold nobody used)."""
    from ..filters.image import NearCopyFilter
    from ..filters.text import RealNearCopyFilter

    for candidate in filters:
        if isinstance(candidate, NearCopyFilter):
            measure = "RMS pixel distance" if candidate.metric == "l2" else "cosine pixel distance"
            return NearCopyRule(candidate, measure, float(candidate.threshold), "below")
        if isinstance(candidate, RealNearCopyFilter):
            measure = f"{candidate.metric} of {candidate.unit} {candidate.n}-gram shingles"
            return NearCopyRule(candidate, measure, float(candidate.max_overlap), "at_or_above")
    return None

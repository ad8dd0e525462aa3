"""The filter protocol: a filter takes scored candidates and returns the ones it keeps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from datasets import Dataset


@dataclass(frozen=True)
class FilterContext:
    """What filters may look at besides the candidates.

    Args:
        input_column (`str`): Column with the inputs (text or image) in candidates and real data.
        label_column (`str`): Column with the labels.
        real_dataset (`Dataset`): The real training rows (raw, un-preprocessed): for near-copy (privacy) checks.
        num_labels (`int`): Number of classes.
        accepted_dataset (`Dataset`, *optional*): Synthetic samples accepted in earlier cycles (raw).
        num_requested (`int`, *optional*): Samples the cycle will accept (the sum of its targets' quotas): a filter
            that can rank may keep at least this many rather than empty the cycle (see `LabelProbabilityFloorFilter`).
    """

    input_column: str
    label_column: str
    real_dataset: Dataset
    num_labels: int
    accepted_dataset: Dataset | None = None
    num_requested: int | None = None


@runtime_checkable
class Filter(Protocol):
    """Keeps a subset of candidate rows. `name` labels its counts in the cycle history.

    `checks_real_data` says whether the filter drops candidates for being too close to the real training data (a
    privacy check, such as a near-copy filter): the dataset card reports what such a filter removed as too close to a
    real example. A filter that compares candidates with each other, or looks at the real data for another reason
    (realism), sets it to `False`.

    Candidates arrive scored: besides the generator's columns they carry `synth_score` (acquisition score under
    the ensemble), `synth_label_probability` (ensemble-mean probability of the intended label),
    `synth_predicted_label` and `synth_predicted_probability` (the ensemble-mean argmax and its probability).
    A filter may add `synth_*` columns of its own (a realism score, say); it must not drop columns.
    """

    name: str
    checks_real_data: bool

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset: ...


def real_data_filter_names(filters: Iterable[Filter]) -> frozenset[str]:
    """Names of the filters that check candidates against the real training data (`checks_real_data`).

    A filter written before the flag existed (without the attribute) counts as not checking the real data.
    """
    return frozenset(f.name for f in filters if getattr(f, "checks_real_data", False))

"""The filter protocol: a filter takes scored candidates and returns the ones it keeps."""

from __future__ import annotations

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
    """

    input_column: str
    label_column: str
    real_dataset: Dataset
    num_labels: int
    accepted_dataset: Dataset | None = None


@runtime_checkable
class Filter(Protocol):
    """Keeps a subset of candidate rows. `name` labels its counts in the cycle history.

    Candidates arrive scored: besides the generator's columns they carry `synth_score` (acquisition score under
    the ensemble), `synth_label_probability` (ensemble-mean probability of the intended label),
    `synth_predicted_label` and `synth_predicted_probability` (the ensemble-mean argmax and its probability).
    A filter may add `synth_*` columns of its own (a realism score, say); it must not drop columns.
    """

    name: str

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset: ...

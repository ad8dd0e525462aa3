"""The uncertainty-estimator protocol and the batched prediction every estimator shares."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..modeling import extract_logits

if TYPE_CHECKING:
    from datasets import Dataset

    from .context import FitContext


@runtime_checkable
class UncertaintyEstimator(Protocol):
    """Fits an ensemble (or a stochastic model) and returns member logits shaped `[N, C, K]`.

    * `fit(trainer)` builds the members from the trainer's current model and training data, and returns `self`;
      it reads only what [`FitContext`] names.
    * `predict(dataset)` scores a dataset of *model inputs* (already preprocessed), without gradients.
    * `member_logits(inputs)` scores one collated batch *with* gradients w.r.t. the inputs, for guided generation.
    """

    num_members: int

    def fit(self, trainer: FitContext) -> UncertaintyEstimator: ...

    def predict(self, dataset: Dataset) -> torch.Tensor: ...

    def member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor: ...


class BatchedEstimator:
    """Base class: `predict` batches a dataset through `member_logits` with the trainer's collator.

    Subclasses implement `fit` (calling `_bind(trainer)`) and `member_logits`.
    """

    num_members: int

    def _bind(self, trainer: FitContext) -> None:
        # Fitted state ends in `_` (scikit-learn convention): nothing here exists before `fit`.
        self.collate_fn_: Callable = trainer.data_collator
        self.batch_size_: int = trainer.args.per_device_eval_batch_size
        self.device_: torch.device = trainer.args.device
        self.show_progress_: bool = not trainer.args.disable_tqdm

    def _check_fitted(self) -> None:
        if not hasattr(self, "collate_fn_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call `fit(trainer)` before predicting.")

    def _to_device(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            key: value.to(self.device_) if isinstance(value, torch.Tensor) else value for key, value in inputs.items()
        }

    def member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, dataset: Dataset) -> torch.Tensor:
        """Member logits `[N, C, K]` (float32, on CPU) for every row of a preprocessed dataset."""
        self._check_fitted()
        if len(dataset) == 0:
            raise ValueError("Cannot estimate uncertainty on an empty dataset.")
        loader = DataLoader(dataset, batch_size=self.batch_size_, shuffle=False, collate_fn=self.collate_fn_)
        chunks = []
        progress = tqdm(loader, desc=f"Scoring ({type(self).__name__})", disable=not self.show_progress_, leave=False)
        for batch in progress:
            batch = {key: value for key, value in batch.items() if key not in _NON_MODEL_KEYS}
            chunks.append(self.member_logits(self._to_device(batch)).float().cpu())
        return torch.cat(chunks, dim=0)


# Keys our collated batches may carry that are not model inputs.
_NON_MODEL_KEYS = frozenset({"labels", "is_synthetic"})


def qualified_class_name(module: object) -> str:
    """`module`'s class as `package.module.Class`: the allow-lists of fast scoring paths match exact classes (a
    subclass may override `forward`)."""
    return f"{type(module).__module__}.{type(module).__qualname__}"


def model_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """`inputs` without the keys of our collated batches that are not model inputs (`labels`, `is_synthetic`)."""
    return {key: value for key, value in inputs.items() if key not in _NON_MODEL_KEYS}


def forward_logits(model: torch.nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
    """Runs `model(**inputs)` and returns its logits `[B, C]` (see `extract_logits`)."""
    return extract_logits(model(**model_inputs(inputs)))

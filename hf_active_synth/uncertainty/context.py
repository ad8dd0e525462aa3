"""`FitContext`: what an estimator's `fit` may read from the trainer, and nothing more.

Estimators type against this protocol instead of `ActiveSynthesisTrainer`, so `uncertainty/` never imports the
trainer (the trainer satisfies the protocol structurally; a test double can too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from datasets import Dataset


class ScoringArgs(Protocol):
    """The settings estimators read from the trainer's `TrainingArguments` to batch their predictions."""

    per_device_eval_batch_size: int
    disable_tqdm: bool | None

    @property
    def device(self) -> torch.device: ...


class FitContext(Protocol):
    """The trainer as an estimator sees it while fitting (see `UncertaintyEstimator.fit`).

    Attributes:
        num_labels (`int`): Number of classes (e.g. the size of a LoRA ensemble's task head).
        data_collator (`Callable`): Collates a list of preprocessed rows into a model batch.
        args ([`ScoringArgs`]): Eval batch size, device and progress-bar flag used for scoring.
        model_init (`Callable`, *optional*): The trainer's model factory, `None` when it was given a model.
    """

    @property
    def num_labels(self) -> int: ...

    @property
    def data_collator(self) -> Callable[[list[Any]], Mapping[str, Any]]: ...

    @property
    def args(self) -> ScoringArgs: ...

    @property
    def model_init(self) -> Callable[..., nn.Module] | None: ...

    def call_model_init(self, trial: Any = None) -> nn.Module:
        """A new, untrained model from `model_init`."""
        ...

    def current_model(self) -> nn.Module:
        """The model being trained, unwrapped from any distributed wrapper (never modify it in place)."""
        ...

    def train_member(self, model: nn.Module, *, seed: int, name: str) -> nn.Module:
        """Trains `model` (a member, or the active adapter) on the current real ∪ synthetic data; returns it."""
        ...

    def sample_model_inputs(self, num_rows: int = 2) -> dict[str, Any]:
        """A collated batch of real training inputs, without labels (for probing a model)."""
        ...


@runtime_checkable
class MemberDataContext(FitContext, Protocol):
    """A [`FitContext`] that also lets a member choose its rows and epochs (`ActiveSynthesisTrainer` is one).

    `LoRAEnsemble(bootstrap=True)` trains each adapter inside `restrict_real_rows(its resample)`, and
    `LoRAEnsemble(num_train_epochs=...)` passes `training_args` built from `args.member_args(seed, output_dir)` (an
    [`ActiveSynthesisConfig`]). Cross-fitting's fold contexts are plain `FitContext`s (their rows are already
    narrowed to the fold).

    Attributes:
        real_train_dataset (`datasets.Dataset`): The real labelled training rows (their count is what is resampled).
    """

    real_train_dataset: Dataset

    def restrict_real_rows(self, rows: Sequence[int]) -> AbstractContextManager[None]:
        """Inside the block, `train_member` trains on the real rows `rows` (repeats allowed) and every synthetic row."""
        ...

    def train_member(self, model: nn.Module, *, seed: int, name: str, training_args: Any = None) -> nn.Module:
        """As [`FitContext.train_member`]; `training_args` (default: the member settings) replace the settings."""
        ...

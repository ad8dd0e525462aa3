"""Cross-fitted uncertainty (`target_source="crossfit"`): every labelled row scored by members that never trained
on it.

The labelled rows are split into k seeded, class-stratified folds ([`targeting.fold_assignment`]). For each fold a
fresh estimator of the loop's kind is fitted on the other folds' real rows and every accepted synthetic row, then
scores the held-out fold; the folds' member logits are put back in row order, `[N, C, K]`. Targets then rank the
rows the model has not simply memorised.

Cost: k estimator fits per cycle on top of the loop's own. A deep ensemble trains its members from scratch, so a
fold costs K member trainings on (k - 1)/k of the real rows plus the synthetic ones. MC dropout and LoRA ensembles
start from the trained model, which has seen every row: for them each fold first trains a fresh model on the fold's
rows with the main model's epochs and learning rate (one more training per fold), and samples or adapts that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from .modeling import default_model_init
from .targeting import fold_assignment

if TYPE_CHECKING:
    from datasets import Dataset

    from .config import ActiveSynthesisConfig
    from .uncertainty import UncertaintyEstimator

CROSSFIT_SEED_OFFSET = 20_000
"""Fold `f` seeds its model with `seed + CROSSFIT_SEED_OFFSET + 100·f` and its estimator with one more, far from
the loop's members (`seed + 1 ...`) and the held-out audit's (`seed + 10_000 ...`), so no fold member is a twin."""


class CrossFitHost(Protocol):
    """What cross-fitting needs from the trainer ([`ActiveSynthesisTrainer`] satisfies it)."""

    args: ActiveSynthesisConfig
    num_labels: int
    real_train_dataset: Dataset
    data_collator: Callable[[list[Any]], Mapping[str, Any]]
    model_init: Callable[..., nn.Module] | None

    def call_model_init(self, trial: Any = None) -> nn.Module: ...

    def current_model(self) -> nn.Module: ...

    def sample_model_inputs(self, num_rows: int = 2) -> dict[str, Any]: ...

    def restrict_real_rows(self, rows: Sequence[int]) -> AbstractContextManager[None]: ...

    def train_member(
        self, model: nn.Module, *, seed: int, name: str, training_args: ActiveSynthesisConfig | None = None
    ) -> nn.Module: ...

    def predict_member_logits(
        self, dataset: Dataset, estimator: UncertaintyEstimator | None = None
    ) -> torch.Tensor: ...


def fold_model_args(args: ActiveSynthesisConfig, seed: int, output_dir: str) -> ActiveSynthesisConfig:
    """The settings of a fold's model: a member's (no checkpoints, evaluation or trackers) with the main model's
    epochs, learning rate and step limit, since it stands in for the main model."""
    return dataclasses.replace(
        args.member_args(seed, output_dir=output_dir),
        num_train_epochs=args.num_train_epochs,
        learning_rate=args.learning_rate,
        max_steps=args.max_steps,
    )


class FoldContext:
    """The [`uncertainty.FitContext`] of one fold: the host's, except that its model is one that never saw the fold.

    Use it inside `host.restrict_real_rows(training rows of the fold)`. `current_model()` trains, on first use, a
    fresh model on those rows (what MC dropout samples and a LoRA ensemble adapts); `model_init` is never `None`
    (the host's, else fresh copies of its model), so a deep ensemble builds its members without that model.

    Args:
        host ([`CrossFitHost`]): The trainer.
        fold (`int`): The held-out fold (names the members' output folders).
        seed (`int`): Seed of the fold's model.
    """

    def __init__(self, host: CrossFitHost, fold: int, seed: int):
        self.host = host
        self.fold = fold
        self.seed = seed
        self.num_labels = host.num_labels
        self.data_collator = host.data_collator
        self.args = host.args
        self._fresh_model: Callable[[], nn.Module] | None = None
        self._model: nn.Module | None = None

    @property
    def model_init(self) -> Callable[..., nn.Module]:
        if self.host.model_init is not None:
            return self.host.model_init
        if self._fresh_model is None:
            try:
                self._fresh_model = default_model_init(self.host.current_model())
            except ValueError as error:
                raise ValueError(
                    f"target_source='crossfit' builds fresh models for its folds: {error} Or pass `model_init=` (a "
                    "function returning a new, untrained model) to the trainer."
                ) from error
        return self._fresh_model

    def call_model_init(self, trial: Any = None) -> nn.Module:
        return self.host.call_model_init(trial) if self.host.model_init is not None else self.model_init()

    def current_model(self) -> nn.Module:
        if self._model is None:
            torch.manual_seed(self.seed)
            name = f"crossfit_fold_{self.fold}_model"
            output_dir = str(Path(self.args.output_dir) / "members" / name)
            self._model = self.host.train_member(
                self.call_model_init(),
                seed=self.seed,
                name=name,
                training_args=fold_model_args(self.args, self.seed, output_dir),
            ).eval()
        return self._model

    def train_member(self, model: nn.Module, *, seed: int, name: str) -> nn.Module:
        return self.host.train_member(model, seed=seed, name=f"crossfit_fold_{self.fold}_{name}")

    def sample_model_inputs(self, num_rows: int = 2) -> dict[str, Any]:
        return self.host.sample_model_inputs(num_rows)


def crossfit_member_logits(
    host: CrossFitHost,
    make_fold_estimator: Callable[[int], UncertaintyEstimator],
    num_folds: int,
    seed: int,
) -> torch.Tensor:
    """Member logits `[N, C, K]` of the host's labelled rows, each row's from the fold estimator that did not train
    on it.

    Args:
        host ([`CrossFitHost`]): The trainer (its current synthetic rows join every fold's training data).
        make_fold_estimator (`Callable[[int], UncertaintyEstimator]`): A new, unfitted estimator from a seed.
        num_folds (`int`): Number of folds, k.
        seed (`int`): Seed of the folds and, through `CROSSFIT_SEED_OFFSET`, of the fold models and estimators.
    """
    rows = host.real_train_dataset
    folds = fold_assignment(rows[host.args.label_column], num_folds, seed)
    logits: torch.Tensor | None = None
    for fold in range(num_folds):
        heldout = [i for i, f in enumerate(folds) if f == fold]
        fold_seed = seed + CROSSFIT_SEED_OFFSET + 100 * fold
        with host.restrict_real_rows([i for i, f in enumerate(folds) if f != fold]):
            estimator = make_fold_estimator(fold_seed + 1).fit(FoldContext(host, fold, fold_seed))
        fold_logits = host.predict_member_logits(rows.select(heldout), estimator)
        if logits is None:
            logits = fold_logits.new_empty((len(rows), *fold_logits.shape[1:]))
        logits[heldout] = fold_logits
    return logits

"""Monte Carlo dropout: K stochastic forward passes of one trained model (Gal & Ghahramani, 2016)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .base import BatchedEstimator, forward_logits

if TYPE_CHECKING:
    from .context import FitContext

# Normalisation layers whose behaviour (running statistics) must stay in eval mode while dropout samples.
_FROZEN_IN_EVAL = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


@contextmanager
def dropout_sampling(model: nn.Module) -> Iterator[nn.Module]:
    """Puts `model` in a state where dropout samples but nothing else changes, then restores the original modes.

    Patching only `nn.Dropout` modules is not enough: transformers models also call `nn.functional.dropout(...,
    training=self.training)` inside attention. So the whole model goes to `train()` mode (which switches on every
    dropout, modular and functional) while batch/instance norm layers are put back to `eval()` so their running
    statistics are used, not updated.
    """
    modes = {module: module.training for module in model.modules()}
    model.train()
    for module in model.modules():
        if isinstance(module, _FROZEN_IN_EVAL):
            module.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.train(training)


class MCDropout(BatchedEstimator):
    """K stochastic passes of the trained model with dropout active.

    Args:
        num_members (`int`, defaults to 5): Stochastic passes per input, K.
        seed (`int`, defaults to 0): Seed of the dropout masks; pass `k` uses `seed + k`, so scores are reproducible.

    `fit` raises `ValueError` when the model has no dropout to sample (two passes give identical logits).
    """

    def __init__(self, num_members: int = 5, seed: int = 0):
        if num_members < 2:
            raise ValueError(f"MCDropout needs at least 2 passes to measure disagreement, got {num_members}.")
        self.num_members = num_members
        self.seed = seed

    def fit(self, trainer: FitContext) -> MCDropout:
        self._bind(trainer)
        self.model_ = trainer.current_model()
        self._check_has_dropout(trainer)
        return self

    def _check_has_dropout(self, trainer: FitContext) -> None:
        # Several rows and all K passes: sample-level noise such as stochastic depth can leave 2 rows x 2 passes
        # unchanged by chance, and a false alarm here would stop a run that has something to sample.
        batch = trainer.sample_model_inputs(num_rows=8)
        with torch.no_grad():
            logits = self.member_logits(self._to_device(batch))
        if all(torch.equal(logits[..., 0], logits[..., k]) for k in range(1, self.num_members)):
            raise ValueError(
                f"MC dropout found nothing to sample: {self.num_members} passes of {type(self.model_).__name__} gave "
                "identical logits, so the model has no active dropout. Raise its dropout probabilities (e.g. "
                "`hidden_dropout_prob` / `attention_probs_dropout_prob` in the config) or use "
                "`uncertainty_method='deep_ensemble'` or `'lora_ensemble'`."
            )

    def member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """K dropout passes over one batch, shaped `[B, C, K]`; differentiable w.r.t. the inputs."""
        if not hasattr(self, "model_"):
            raise RuntimeError("MCDropout is not fitted yet: call `fit(trainer)` first.")
        passes = []
        with dropout_sampling(self.model_):
            for member in range(self.num_members):
                # A private RNG stream per pass: reproducible masks that leave the global RNG untouched.
                with torch.random.fork_rng(devices=_cuda_devices(self.model_)):
                    torch.manual_seed(self.seed + member)
                    passes.append(forward_logits(self.model_, inputs))
        return torch.stack(passes, dim=-1)


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted(
        {p.device.index for p in model.parameters() if p.device.type == "cuda" and p.device.index is not None}
    )

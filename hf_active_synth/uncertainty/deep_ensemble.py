"""Deep ensembles: K independently initialised and seeded models (Lakshminarayanan et al., 2017)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..modeling import default_model_init
from .base import BatchedEstimator, forward_logits

if TYPE_CHECKING:
    from .context import FitContext


class DeepEnsemble(BatchedEstimator):
    """K members, each built fresh under its own seed and trained on the trainer's current data (real ∪ synthetic).

    The most faithful and most expensive estimator: K full trainings per cycle and K full forward passes per input.

    Args:
        num_members (`int`, defaults to 5): Ensemble size, K.
        model_init (`Callable[[], nn.Module]`, *optional*): Returns a new, untrained model. Defaults to the trainer's
            `model_init`, else to `modeling.default_model_init(trainer.model)` (reload the pretrained checkpoint with
            a new head, or re-initialise a model built from a config).
        seed (`int`, defaults to 0): Member `k` is initialised and trained with seed `seed + k`.
    """

    def __init__(self, num_members: int = 5, model_init: Callable[[], nn.Module] | None = None, seed: int = 0):
        if num_members < 2:
            raise ValueError(f"DeepEnsemble needs at least 2 members to measure disagreement, got {num_members}.")
        self.num_members = num_members
        self.model_init = model_init
        self.seed = seed

    def fit(self, trainer: FitContext) -> DeepEnsemble:
        self._bind(trainer)
        if self.model_init is not None:
            model_init = self.model_init
        elif trainer.model_init is not None:
            model_init = trainer.call_model_init
        else:
            model_init = default_model_init(trainer.current_model())
        members = []
        for member in range(self.num_members):
            seed = self.seed + member
            torch.manual_seed(seed)
            model = model_init()
            trained = trainer.train_member(model, seed=seed, name=f"deep_ensemble_member_{member}")
            members.append(trained.eval())
        self.members_ = members
        return self

    def member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Each member's logits for one batch, shaped `[B, C, K]`; differentiable w.r.t. the inputs."""
        if not hasattr(self, "members_"):
            raise RuntimeError("DeepEnsemble is not fitted yet: call `fit(trainer)` first.")
        return torch.stack([forward_logits(member, inputs) for member in self.members_], dim=-1)

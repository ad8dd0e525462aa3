"""LoRA ensembles: one frozen base model, K peft LoRA adapters trained with different seeds.

Scoring shares the work the adapters allow sharing. Adapters sit on the top `num_adapted_layers` blocks only, so the
trunk below them is the same for every member: it is computed once per batch, then its output is repeated K times
along the batch axis at the first adapted block, and each copy runs through its own adapter, by default with
per-member merged weights (one batched matmul per adapted layer), or with peft's mixed-adapter batches
(`adapter_names`); see `lora_scoring`. The cost is one trunk pass plus K passes of the top blocks, instead of K full
passes.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn

from .base import BatchedEstimator, forward_logits
from .lora_scoring import (
    RepeatedBatchError,
    check_first_token_only,
    merged_adapter_batch,
    mixed_adapter_batch,
    plan_merged_layers,
)

if TYPE_CHECKING:
    from .context import FitContext

logger = logging.getLogger(__name__)


def find_block_list(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The model's stack of repeated blocks (e.g. `bert.encoder.layer`): the longest `ModuleList` of same-type modules."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        if best is None or len(module) > len(best[1]):
            best = (name, module)
    return best


def default_lora_config(model: nn.Module, num_labels: int, num_adapted_layers: int = 1, rank: int = 8) -> LoraConfig:
    """LoRA on every linear layer of the top `num_adapted_layers` blocks, with a per-member copy of the task head.

    The task head is every `nn.Linear` outside the block stack whose output size is `num_labels`.
    """
    blocks = find_block_list(model)
    head_names = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear)
            and module.out_features == num_labels
            and (blocks is None or not name.startswith(blocks[0] + "."))
        }
    )
    if blocks is None:
        linear_names = sorted(
            {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
            - set(head_names)
        )
        return LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=linear_names, modules_to_save=head_names)
    block_path, block_list = blocks
    num_adapted_layers = min(num_adapted_layers, len(block_list))
    linear_names = sorted(
        {name.rsplit(".", 1)[-1] for name, module in block_list[-1].named_modules() if isinstance(module, nn.Linear)}
    )
    return LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=linear_names,
        layers_to_transform=list(range(len(block_list) - num_adapted_layers, len(block_list))),
        layers_pattern=block_path.rsplit(".", 1)[-1],
        modules_to_save=head_names or None,
    )


class LoRAEnsemble(BatchedEstimator):
    """K LoRA adapters on a frozen copy of the trained model, each trained with its own seed.

    Args:
        num_members (`int`, defaults to 5): Number of adapters, K.
        lora_config (`peft.LoraConfig`, *optional*): The adapters' configuration. Defaults to
            `default_lora_config(model, num_labels, num_adapted_layers)`: LoRA on the top blocks only, which is what
            lets scoring compute the shared trunk once.
        num_adapted_layers (`int`, defaults to 1): Top blocks carrying adapters when `lora_config` is not given.
        seed (`int`, defaults to 0): Adapter `k` is initialised and trained with seed `seed + k`.
        share_trunk (`bool`, defaults to `True`): Score with one trunk pass + K copies of the adapted top blocks. When
            the adapters cover the whole model, or the model's head cannot take a repeated batch, scoring falls back
            to K full passes (logged once).
        scoring (`str`, defaults to `"merged"`): How the adapted blocks score the K copies (see
            `hf_active_synth.uncertainty.lora_scoring`). `"merged"`: per-member merged weights `W + s·B_k A_k`, one
            batched matmul per layer (layers it does not handle keep peft's path). `"mixed_adapter_batch"`: peft's
            mixed-adapter batches everywhere (slower; kept for comparison). Both give the same logits to float
            rounding. Merged weights leave out LoRA dropout: a model put in training mode is scored with peft's path.
        first_token_only (`bool`, defaults to `False`): With `scoring="merged"`, compute only token 0 in the adapted
            block. Only for BERT-family encoders whose single adapted block is the last one and whose head reads
            token 0 alone (`[CLS]` pooling, as in `*ForSequenceClassification`); `fit` and `refresh` raise
            `ValueError` when the block is not the last one or not BERT-style. Whether the head reads token 0 alone
            cannot be checked: it is up to the caller.

    The trainer's model is deep-copied before adapters are added: the model being trained is never modified. The merged
    weights are computed once, at the end of `fit`; call `refresh()` after changing the adapters or moving the model.
    """

    def __init__(
        self,
        num_members: int = 5,
        lora_config: LoraConfig | None = None,
        num_adapted_layers: int = 1,
        seed: int = 0,
        share_trunk: bool = True,
        scoring: Literal["merged", "mixed_adapter_batch"] = "merged",
        first_token_only: bool = False,
    ):
        if num_members < 2:
            raise ValueError(f"LoRAEnsemble needs at least 2 adapters to measure disagreement, got {num_members}.")
        if scoring not in _SCORING_MODES:
            raise ValueError(f"scoring must be one of {', '.join(map(repr, _SCORING_MODES))}, got {scoring!r}.")
        if first_token_only and scoring != "merged":
            raise ValueError(f"first_token_only=True is an option of scoring='merged', not of scoring={scoring!r}.")
        self.num_members = num_members
        self.lora_config = lora_config
        self.num_adapted_layers = num_adapted_layers
        self.seed = seed
        self.share_trunk = share_trunk
        self.scoring = scoring
        self.first_token_only = first_token_only

    @property
    def adapter_names(self) -> list[str]:
        return [f"member_{member}" for member in range(self.num_members)]

    def fit(self, trainer: FitContext) -> LoRAEnsemble:
        self._bind(trainer)
        base = copy.deepcopy(trainer.current_model())
        if isinstance(base, PeftModel):
            base = base.merge_and_unload()
        base.requires_grad_(False)
        config = self.lora_config or default_lora_config(base, trainer.num_labels, self.num_adapted_layers)
        names = self.adapter_names
        torch.manual_seed(self.seed)
        peft_model = get_peft_model(base, copy.deepcopy(config), adapter_name=names[0])
        for member, name in enumerate(names[1:], start=1):
            torch.manual_seed(self.seed + member)
            peft_model.add_adapter(name, copy.deepcopy(config))
        if self.first_token_only:  # fail before training the adapters
            self._check_first_token_only(peft_model, self._find_split_module(peft_model) if self.share_trunk else None)
        for member, name in enumerate(names):
            peft_model.set_adapter(name)
            trainer.train_member(peft_model, seed=self.seed + member, name=f"lora_ensemble_{name}")
        peft_model.eval()
        self.model_ = peft_model
        self.refresh()
        return self

    def refresh(self) -> LoRAEnsemble:
        """Recomputes the shared-trunk split and, with `scoring="merged"`, the per-member merged weights.

        Call it after changing the adapters' or the base model's weights, or moving the model to another device or
        dtype: the merged weights are snapshots taken at the end of `fit`.

        Raises:
            `ValueError`: `first_token_only=True` on a model where it does not apply.
        """
        if not hasattr(self, "model_"):
            raise RuntimeError("LoRAEnsemble is not fitted yet: call `fit(trainer)` first.")
        if self.scoring not in _SCORING_MODES:
            raise ValueError(f"scoring must be one of {', '.join(map(repr, _SCORING_MODES))}, got {self.scoring!r}.")
        self.split_module_ = self._find_split_module(self.model_) if self.share_trunk else None
        if self.first_token_only:
            if self.scoring != "merged":
                raise ValueError("first_token_only=True is an option of scoring='merged'.")
            self._check_first_token_only(self.model_, self.split_module_)
        use_merged = self.scoring == "merged" and self.split_module_ is not None
        self.merged_layers_ = plan_merged_layers(self.model_, self.adapter_names) if use_merged else None
        return self

    @staticmethod
    def _find_split_module(peft_model: PeftModel) -> nn.Module | None:
        """The first block holding adapters, if every block below it is adapter-free (so the trunk is shared)."""
        blocks = find_block_list(peft_model.get_base_model())
        if blocks is None:
            return None
        adapted = [i for i, block in enumerate(blocks[1]) if any(isinstance(m, LoraLayer) for m in block.modules())]
        if not adapted or adapted[0] == 0:
            return None
        return blocks[1][adapted[0]]

    @staticmethod
    def _check_first_token_only(peft_model: PeftModel, split_module: nn.Module | None) -> None:
        blocks = find_block_list(peft_model.get_base_model())
        check_first_token_only(split_module, None if blocks is None else blocks[1][-1])

    def _repeated_batch(self, batch_size: int) -> AbstractContextManager[None]:
        """The hooks (and, for merged scoring, patched forwards) that score one batch with every adapter."""
        if self.scoring == "merged" and not self.model_.training:  # merged weights leave out LoRA dropout
            if getattr(self, "merged_layers_", None) is None:  # e.g. `scoring` changed after fitting
                self.refresh()
            return merged_adapter_batch(
                self.model_,
                self.split_module_,
                self.merged_layers_,
                self.adapter_names,
                batch_size,
                first_token_only=self.first_token_only,
            )
        return mixed_adapter_batch(self.model_, self.split_module_, self.adapter_names, batch_size)

    def member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Each adapter's logits for one batch, shaped `[B, C, K]`; differentiable w.r.t. the inputs."""
        if not hasattr(self, "model_"):
            raise RuntimeError("LoRAEnsemble is not fitted yet: call `fit(trainer)` first.")
        if self.split_module_ is not None:
            batch_size = _batch_size(inputs)
            try:
                with self._repeated_batch(batch_size):
                    logits = forward_logits(self.model_, inputs)
            except RepeatedBatchError as error:
                reason = str(error)
            else:
                if logits.shape[0] == batch_size * self.num_members:
                    return logits.view(self.num_members, batch_size, -1).permute(1, 2, 0)
                reason = (
                    f"the model's head did not keep the repeated batch (got {logits.shape[0]} rows for "
                    f"{self.num_members} x {batch_size})"
                )
            logger.warning("Scoring LoRA members with one full pass each from now on: %s.", reason)
            self.split_module_ = None
        return self._sequential_member_logits(inputs)

    def _sequential_member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        logits = []
        for name in self.adapter_names:
            self.model_.set_adapter(name)
            logits.append(forward_logits(self.model_, inputs))
        return torch.stack(logits, dim=-1)


_SCORING_MODES = ("merged", "mixed_adapter_batch")


def _batch_size(inputs: Mapping[str, Any]) -> int:
    for value in inputs.values():
        if isinstance(value, torch.Tensor) and value.ndim >= 1:
            return value.shape[0]
    raise ValueError("Cannot infer the batch size: the inputs hold no tensors.")

"""LoRA ensembles: one frozen base model, K peft LoRA adapters trained with different seeds.

Scoring shares the work the adapters allow sharing. Adapters sit on the top `num_adapted_layers` blocks only, so the
trunk below them is the same for every member: it is computed once per batch, then its output is repeated K times
along the batch axis at the first adapted block, and peft's mixed-adapter batches (`adapter_names`) send each copy
through its own adapter. The cost is one trunk pass plus K passes of the top blocks, instead of K full passes.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils.other import AuxiliaryTrainingWrapper
from torch import nn

from .base import BatchedEstimator, forward_logits

if TYPE_CHECKING:
    from ..trainer import ActiveSynthesisTrainer

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


def _repeat_batch(value: Any, batch_size: int, repeats: int) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim >= 2 and value.shape[0] == batch_size:
        return value.repeat(repeats, *([1] * (value.ndim - 1)))
    if isinstance(value, tuple):  # e.g. rotary (cos, sin) position embeddings
        return tuple(_repeat_batch(item, batch_size, repeats) for item in value)
    return value


def _expand_batch_hook(module, args, kwargs, *, batch_size: int, repeats: int):
    args = tuple(_repeat_batch(arg, batch_size, repeats) for arg in args)
    kwargs = {key: _repeat_batch(value, batch_size, repeats) for key, value in kwargs.items()}
    return args, kwargs


def _adapter_names_hook(module, args, kwargs, *, adapter_names: list[str]):
    kwargs["adapter_names"] = adapter_names
    return args, kwargs


class LoRAEnsemble(BatchedEstimator):
    """K LoRA adapters on a frozen copy of the trained model, each trained with its own seed.

    Args:
        num_members (`int`, defaults to 5): Number of adapters, K.
        lora_config (`peft.LoraConfig`, *optional*): The adapters' configuration. Defaults to
            `default_lora_config(model, num_labels, num_adapted_layers)`: LoRA on the top blocks only, which is what
            lets scoring compute the shared trunk once.
        num_adapted_layers (`int`, defaults to 1): Top blocks carrying adapters when `lora_config` is not given.
        seed (`int`, defaults to 0): Adapter `k` is initialised and trained with seed `seed + k`.
        share_trunk (`bool`, defaults to `True`): Score with one trunk pass + mixed-adapter top blocks. When the
            adapters cover the whole model, or the model's head cannot take a repeated batch, scoring falls back to
            K full passes (logged once).

    The trainer's model is deep-copied before adapters are added: the model being trained is never modified.
    """

    def __init__(
        self,
        num_members: int = 5,
        lora_config: LoraConfig | None = None,
        num_adapted_layers: int = 1,
        seed: int = 0,
        share_trunk: bool = True,
    ):
        if num_members < 2:
            raise ValueError(f"LoRAEnsemble needs at least 2 adapters to measure disagreement, got {num_members}.")
        self.num_members = num_members
        self.lora_config = lora_config
        self.num_adapted_layers = num_adapted_layers
        self.seed = seed
        self.share_trunk = share_trunk

    @property
    def adapter_names(self) -> list[str]:
        return [f"member_{member}" for member in range(self.num_members)]

    def fit(self, trainer: ActiveSynthesisTrainer) -> LoRAEnsemble:
        self._bind(trainer)
        base = copy.deepcopy(trainer.accelerator.unwrap_model(trainer.model))
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
        for member, name in enumerate(names):
            peft_model.set_adapter(name)
            trainer.train_member(peft_model, seed=self.seed + member, name=f"lora_ensemble_{name}")
        peft_model.eval()
        self.model_ = peft_model
        self.split_module_ = self._find_split_module(peft_model) if self.share_trunk else None
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

    @contextmanager
    def _mixed_adapter_batch(self, batch_size: int) -> Iterator[None]:
        """Hooks that repeat the trunk output K times at the split block and route copy k through adapter k."""
        adapter_names = [name for name in self.adapter_names for _ in range(batch_size)]
        handles = [
            self.split_module_.register_forward_pre_hook(
                partial(_expand_batch_hook, batch_size=batch_size, repeats=self.num_members), with_kwargs=True
            )
        ]
        for module in self.model_.modules():
            if isinstance(module, (LoraLayer, AuxiliaryTrainingWrapper)):
                handles.append(
                    module.register_forward_pre_hook(
                        partial(_adapter_names_hook, adapter_names=adapter_names), with_kwargs=True
                    )
                )
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Each adapter's logits for one batch, shaped `[B, C, K]`; differentiable w.r.t. the inputs."""
        if not hasattr(self, "model_"):
            raise RuntimeError("LoRAEnsemble is not fitted yet: call `fit(trainer)` first.")
        if self.split_module_ is not None:
            batch_size = _batch_size(inputs)
            with self._mixed_adapter_batch(batch_size):
                logits = forward_logits(self.model_, inputs)
            if logits.shape[0] == batch_size * self.num_members:
                return logits.view(self.num_members, batch_size, -1).permute(1, 2, 0)
            logger.warning(
                "The model's head did not accept a repeated batch (got %d rows for %d x %d); scoring LoRA members "
                "with one full pass each from now on.",
                logits.shape[0],
                self.num_members,
                batch_size,
            )
            self.split_module_ = None
        return self._sequential_member_logits(inputs)

    def _sequential_member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        logits = []
        for name in self.adapter_names:
            self.model_.set_adapter(name)
            logits.append(forward_logits(self.model_, inputs))
        return torch.stack(logits, dim=-1)


def _batch_size(inputs: Mapping[str, Any]) -> int:
    for value in inputs.values():
        if isinstance(value, torch.Tensor) and value.ndim >= 1:
            return value.shape[0]
    raise ValueError("Cannot infer the batch size: the inputs hold no tensors.")

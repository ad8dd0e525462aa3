"""What makes the members of a `LoRAEnsemble` differ: where the adapters sit, how they and the heads start, and
which rows each member trains on.

With peft's defaults every member starts as the trained model (B = 0, and each member's head copy is the trained
head), and every member sees the same rows: a few optimizer steps later the adapters barely disagree (issue #13
measured BALD about 1e-5 in the SST-2 recipe). The choices here break that symmetry:

* `adapter_init`: `"random"` (peft's `init_lora_weights=False`, torch's default `nn.Linear` init for A *and* B) starts
  each member at its own random point around the trained model; `"zero_b"` (peft's default) and `"gaussian"` (A
  Gaussian with std 1/r) both keep B = 0, so members start identical and differ only through training.
* `head_init="random"`: each member's copy of the task head is re-initialised from its own seed.
* `bootstrap_rows`: each member trains on its own seeded resample, with replacement, of the real training rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from peft import LoraConfig
from peft.utils.other import ModulesToSaveWrapper
from torch import nn

__all__ = [
    "ADAPTER_INITS",
    "HEAD_INITS",
    "AdapterInit",
    "HeadInit",
    "bootstrap_rows",
    "default_lora_config",
    "find_block_list",
    "reinit_member_heads",
]

AdapterInit = Literal["zero_b", "gaussian", "random"]
"""How each member's LoRA A and B start (peft's `init_lora_weights`; see the module docstring)."""
ADAPTER_INITS: dict[str, bool | str] = {"zero_b": True, "gaussian": "gaussian", "random": False}

HeadInit = Literal["trained", "random"]
"""How each member's copy of the task head starts: the trained head, or re-initialised from the member's seed."""
HEAD_INITS = ("trained", "random")


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


def default_lora_config(
    model: nn.Module,
    num_labels: int,
    num_adapted_layers: int = 1,
    rank: int = 8,
    adapter_init: AdapterInit = "zero_b",
) -> LoraConfig:
    """LoRA on every linear layer of the top `num_adapted_layers` blocks, with a per-member copy of the task head.

    The task head is every `nn.Linear` outside the block stack whose output size is `num_labels`.

    Args:
        model (`nn.Module`): The model the adapters go on.
        num_labels (`int`): Number of classes (finds the head).
        num_adapted_layers (`int`, defaults to 1): Top blocks carrying adapters (capped at the number of blocks).
        rank (`int`, defaults to 8): LoRA rank r (`lora_alpha = 2r`).
        adapter_init (`str`, defaults to `"zero_b"`): `"zero_b"`, `"gaussian"` or `"random"` (see `AdapterInit`).
    """
    if adapter_init not in ADAPTER_INITS:
        raise ValueError(f"adapter_init must be one of {list(ADAPTER_INITS)}, got {adapter_init!r}.")
    init_lora_weights = ADAPTER_INITS[adapter_init]
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
        return LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            target_modules=linear_names,
            modules_to_save=head_names,
            init_lora_weights=init_lora_weights,
        )
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
        init_lora_weights=init_lora_weights,
    )


@torch.no_grad()
def reinit_member_heads(model: nn.Module, adapter_name: str, seed: int) -> int:
    """Re-initialises adapter `adapter_name`'s copy of every `modules_to_save` module (the task head) from `seed`.

    Every submodule with a `reset_parameters` method (e.g. `nn.Linear`: Kaiming-uniform weight, uniform bias) is
    reset under `torch.manual_seed(seed)`, so the result depends on the seed alone.

    Args:
        model (`nn.Module`): The peft model holding the adapter.
        adapter_name (`str`): The adapter whose head copies are reset.
        seed (`int`): The member's seed.

    Returns:
        `int`: How many modules were reset.

    Raises:
        `ValueError`: the adapter has no head copy with parameters to reset (the model has no `modules_to_save`).
    """
    torch.manual_seed(seed)
    reset = 0
    for wrapper in model.modules():
        if not isinstance(wrapper, ModulesToSaveWrapper) or adapter_name not in wrapper.modules_to_save:
            continue
        for module in wrapper.modules_to_save[adapter_name].modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
                reset += 1
    if reset == 0:
        raise ValueError(
            f"head_init='random' found no per-member head copy of adapter {adapter_name!r} to re-initialise: the "
            "LoraConfig has no `modules_to_save` (name the task head there), or use head_init='trained'."
        )
    return reset


def bootstrap_rows(num_rows: int, seed: int) -> list[int]:
    """A seeded bootstrap resample: `num_rows` row indices drawn uniformly with replacement from `range(num_rows)`.

    Args:
        num_rows (`int`): Rows to resample (the real training rows).
        seed (`int`): The member's seed; the same seed gives the same resample.
    """
    if num_rows < 1:
        raise ValueError(f"Cannot bootstrap an empty training set (num_rows={num_rows}).")
    return np.random.default_rng(seed).integers(0, num_rows, size=num_rows).tolist()

"""The repeated batch of `LoRAEnsemble` scoring: the shared trunk runs once, every block from the first adapted one
(the *split block*) on runs on K member-major copies of the batch.

A forward pre-hook on the split block repeats its inputs K times along the batch axis (rows `k*B:(k+1)*B` belong to
adapter k). Blocks above the split get their hidden states already repeated from the block below, but the encoder
loop hands each of them the *original* per-batch tensors too (the attention mask, rotary position embeddings): a
pre-hook on every later block repeats those, so more than one adapted block (or an adapted block below the top)
still shares the trunk below the lowest one. `mixed_adapter_batch` then routes copy k through adapter k with peft's
mixed-adapter batches (`adapter_names`); `lora_scoring.merged_adapter_batch` uses per-member merged weights instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from peft.tuners.lora import LoraLayer
from peft.utils.other import AuxiliaryTrainingWrapper
from torch import nn

__all__ = ["RepeatedBatchError", "SharedInputs", "mixed_adapter_batch", "repeat_batch_hooks", "route_by_adapter_names"]


class RepeatedBatchError(RuntimeError):
    """A merged layer was given a batch that is not the K-fold repeated one (e.g. a LoRA layer below the split)."""


class SharedInputs:
    """The tensors the split-block hook produced by repeating the trunk output (their K member blocks are identical)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.tensors: list[torch.Tensor] = []

    def holds(self, x: torch.Tensor) -> bool:
        return any(x is tensor for tensor in self.tensors)


def _repeat_batch(value: Any, batch_size: int, repeats: int) -> Any:
    """`value` repeated `repeats` times along the batch axis when it is a batch-first tensor (or a tuple of them)."""
    if isinstance(value, torch.Tensor) and value.ndim >= 2 and value.shape[0] == batch_size:
        return value.repeat(repeats, *([1] * (value.ndim - 1)))
    if isinstance(value, tuple):  # e.g. rotary (cos, sin) position embeddings
        return tuple(_repeat_batch(item, batch_size, repeats) for item in value)
    return value


def _expand_batch_hook(module, args, kwargs, *, batch_size: int, repeats: int, shared: SharedInputs | None = None):
    # Tensors already repeated (the hidden states above the split: K x B rows) no longer have B rows: left as they are.
    args = tuple(_repeat_batch(arg, batch_size, repeats) for arg in args)
    kwargs = {key: _repeat_batch(value, batch_size, repeats) for key, value in kwargs.items()}
    if shared is not None:
        # The hidden states are the first tensor argument: remember them, their member blocks are identical.
        first = args[0] if args else kwargs.get("hidden_states")
        shared.tensors = [first] if isinstance(first, torch.Tensor) else []
    return args, kwargs


def repeat_batch_hooks(
    split_module: nn.Module,
    later_blocks: Sequence[nn.Module],
    batch_size: int,
    repeats: int,
    shared: SharedInputs | None = None,
) -> list[Any]:
    """Pre-hooks repeating the batch `repeats` times at `split_module` and every block of `later_blocks`.

    Args:
        split_module (`nn.Module`): The first block holding adapters.
        later_blocks (`Sequence[nn.Module]`): The blocks of the stack above it (their per-batch inputs get repeated).
        batch_size (`int`): Rows of the batch about to be scored.
        repeats (`int`): The number of members, K.
        shared ([`SharedInputs`], *optional*): Records the split block's repeated hidden states.

    Returns:
        `list`: The hook handles (call `.remove()` on each).
    """
    handles = [
        split_module.register_forward_pre_hook(
            partial(_expand_batch_hook, batch_size=batch_size, repeats=repeats, shared=shared), with_kwargs=True
        )
    ]
    hook = partial(_expand_batch_hook, batch_size=batch_size, repeats=repeats)
    handles += [block.register_forward_pre_hook(hook, with_kwargs=True) for block in later_blocks]
    return handles


def _adapter_names_hook(module, args, kwargs, *, adapter_names: list[str]):
    kwargs["adapter_names"] = adapter_names
    return args, kwargs


def route_by_adapter_names(modules: Iterable[nn.Module], adapter_names: list[str]) -> list[Any]:
    """Hooks handing peft's `adapter_names` to every LoRA layer and auxiliary wrapper of `modules`."""
    hook = partial(_adapter_names_hook, adapter_names=adapter_names)
    return [
        module.register_forward_pre_hook(hook, with_kwargs=True)
        for module in modules
        if isinstance(module, (LoraLayer, AuxiliaryTrainingWrapper))
    ]


@contextmanager
def mixed_adapter_batch(
    model: nn.Module,
    split_module: nn.Module,
    adapter_names: list[str],
    batch_size: int,
    later_blocks: Sequence[nn.Module] = (),
) -> Iterator[None]:
    """Scores one batch with every adapter through peft's mixed-adapter batches.

    Inside the context, a forward pass of `model` on a batch of `batch_size` rows repeats the input of `split_module`
    (and the per-batch inputs of `later_blocks`) once per adapter, member-major, and routes copy k through
    `adapter_names[k]`.

    Args:
        model (`nn.Module`): The peft model holding the adapters.
        split_module (`nn.Module`): The first block holding adapters (everything below it is shared).
        adapter_names (`list[str]`): The K adapters, in member order.
        batch_size (`int`): Rows of the batch about to be scored.
        later_blocks (`Sequence[nn.Module]`, defaults to `()`): The blocks above `split_module` in the block stack.
    """
    repeats = len(adapter_names)
    handles = repeat_batch_hooks(split_module, later_blocks, batch_size, repeats)
    handles += route_by_adapter_names(model.modules(), [name for name in adapter_names for _ in range(batch_size)])
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()

"""A faster scoring path for a fitted `LoRAEnsemble`: per-member merged weights over contiguous member blocks.

This is a *proposal* measured by `bench_uncertainty.py`, kept out of `hf_active_synth/uncertainty/` (owned by the
lead). It changes nothing about fitting: `MergedLoRAEnsemble.from_fitted(estimator)` reuses a fitted
`LoRAEnsemble`'s model and adapters, and its logits match the library's shared-trunk path to float rounding.

Why the library path is slower than it needs to be. `LoRAEnsemble` repeats the trunk output K times at the first
adapted block and hands every LoRA layer `adapter_names` (K x B names), so peft's `_mixed_batch_forward` runs, in
every adapted linear layer: the base linear over the K x B rows, then for each adapter an advanced-index gather of
its rows (`x[indices]`, a copy), two skinny rank-r matmuls, a scaling multiply and an index-put back into the result.
The head (`ModulesToSaveWrapper`) gathers rows, runs each copy and re-stacks K x B row tensors one by one.

What this path does instead, exploiting that the repeated batch is laid out member-major (rows `k*B:(k+1)*B` belong
to adapter k):

1. every adapted `nn.Linear` (and a `Linear` head in `modules_to_save`) holds K merged weights
   `W_k = W + scale_k * B_k A_k`, stacked `[K, in, out]`, and runs one `baddbmm` over `x.view(K, -1, in)`: the same
   FLOPs as the base linear alone, no gathers, no index-puts, no rank-r matmuls;
2. a linear whose input *is* the repeated trunk output (in BERT: query, key and value of the first adapted block)
   computes the base projection once on B rows, plus the K low-rank corrections (one `[n, K*r]` matmul and one
   `bmm`), instead of K identical base projections.

3. optionally (`first_token_only=True`, BERT-family encoders only), when the adapted block is the *last* block and the
   head reads only the first token (BERT/RoBERTa/ELECTRA-style `[CLS]` poolers, as in `*ForSequenceClassification`),
   the last block computes keys and values for every token but the query, attention output and feed-forward only
   for token 0: the rows nothing downstream reads are never computed. Not checkable in general, so opt-in; the
   benchmark checks its logits against the library's.

LoRA layers this does not understand (DoRA and other variants, LoRA biases, non-`Linear` base layers such as
`Conv2d`, adapters missing from a layer) keep peft's mixed-batch path, so the result is always correct.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import LoraLayer
from peft.utils.other import AuxiliaryTrainingWrapper, ModulesToSaveWrapper
from torch import nn

from hf_active_synth.uncertainty import LoRAEnsemble
from hf_active_synth.uncertainty.base import forward_logits
from hf_active_synth.uncertainty.lora_ensemble import _adapter_names_hook, _batch_size, _repeat_batch, find_block_list


@dataclass
class _MergedLinear:
    """Stacked per-member weights of one adapted linear layer."""

    weight_t: torch.Tensor  # [K, in, out]: (W + scale_k B_k A_k)^T
    bias: torch.Tensor | None  # [K, 1, out]
    base_weight: torch.Tensor | None = None  # [out, in], for the shared-input path
    base_bias: torch.Tensor | None = None  # [out]
    lora_a_cat: torch.Tensor | None = None  # [in, K*r]
    lora_b_t: torch.Tensor | None = None  # [K, r, out], scaling folded in
    rank: int = 0


class _SharedInputs:
    """The tensors the split-block hook produced by repeating the trunk output (identical member blocks)."""

    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.batch_size: int = 0

    def holds(self, x: torch.Tensor) -> bool:
        return any(x is tensor for tensor in self.tensors)


def _merged_linear_forward(
    module: nn.Module, x: torch.Tensor, *args: Any, merged: _MergedLinear, members: int, shared: _SharedInputs, **_
) -> torch.Tensor:
    in_features, out_features = merged.weight_t.shape[1:]
    if merged.lora_a_cat is not None and shared.holds(x):
        # Every member block of `x` is the same trunk output: one base projection + K low-rank corrections.
        first = x[: shared.batch_size].reshape(-1, in_features)
        rows = first.shape[0]
        base = F.linear(first, merged.base_weight, merged.base_bias)  # [n, out]
        low = (first @ merged.lora_a_cat).view(rows, members, merged.rank).transpose(0, 1)  # [K, n, r]
        out = torch.bmm(low, merged.lora_b_t).add_(base)  # [K, n, out]
    else:
        stacked = x.reshape(members, -1, in_features)
        if merged.bias is None:
            out = torch.bmm(stacked, merged.weight_t)
        else:
            out = torch.baddbmm(merged.bias, stacked, merged.weight_t)
    return out.view(*x.shape[:-1], out_features)


def _first_token_bert_layer_forward(
    layer: nn.Module,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *args: Any,
    **kwargs: Any,
) -> torch.Tensor:
    """A BERT-style layer's output for token 0 only, `[B, 1, hidden]` (keys and values still see every token)."""
    attention = layer.attention.self
    rows, length = hidden_states.shape[:2]
    first = hidden_states[:, :1]
    head_dim = attention.attention_head_size

    def heads(x: torch.Tensor, tokens: int) -> torch.Tensor:
        return x.view(rows, tokens, -1, head_dim).transpose(1, 2)

    query = heads(attention.query(first), 1)
    key = heads(attention.key(hidden_states), length)
    value = heads(attention.value(hidden_states), length)
    if attention_mask is not None and attention_mask.ndim == 4 and attention_mask.shape[-2] == length:
        attention_mask = attention_mask[:, :, :1]
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=attention.scaling)
    context = context.transpose(1, 2).reshape(rows, 1, -1)
    attention_output = layer.attention.output(context, first)
    return layer.output(layer.intermediate(attention_output), attention_output)


def _is_bert_style_layer(module: nn.Module) -> bool:
    try:
        attention = module.attention.self
        return (
            all(hasattr(attention, name) for name in ("query", "key", "value", "attention_head_size", "scaling"))
            and all(hasattr(module, name) for name in ("intermediate", "output"))
            and not getattr(attention, "is_causal", False)
        )
    except AttributeError:
        return False


class MergedLoRAEnsemble(LoRAEnsemble):
    """`LoRAEnsemble` whose shared-trunk scoring runs per-member merged weights (see the module docstring).

    Build it from a fitted estimator with `MergedLoRAEnsemble.from_fitted(estimator)`, or fit it like a
    `LoRAEnsemble` (same arguments). The merged weights are computed once, after fitting; call `refresh()` if the
    adapters are changed afterwards.

    Args:
        first_token_only (`bool`, defaults to `False`): Compute only token 0 in the adapted block (see the module
            docstring, point 3). Only valid when that block is the model's last and the head reads token 0 alone;
            `refresh()` raises `ValueError` when the block is not a BERT-style layer or not the last block.
        **kwargs: `LoRAEnsemble` arguments.
    """

    def __init__(self, *args: Any, first_token_only: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.first_token_only = first_token_only

    @classmethod
    def from_fitted(cls, estimator: LoRAEnsemble, first_token_only: bool = False) -> MergedLoRAEnsemble:
        """Shares the fitted model and adapters of `estimator` (nothing is copied or retrained)."""
        if not hasattr(estimator, "model_"):
            raise RuntimeError("The LoRAEnsemble is not fitted yet: call `fit(trainer)` first.")
        merged = cls.__new__(cls)
        merged.__dict__.update(estimator.__dict__)
        merged.first_token_only = first_token_only
        merged.refresh()
        return merged

    def fit(self, trainer: Any) -> MergedLoRAEnsemble:
        super().fit(trainer)
        self.refresh()
        return self

    @torch.no_grad()
    def refresh(self) -> None:
        """(Re)computes the stacked merged weights of every layer the fast path handles."""
        names = self.adapter_names
        self.merged_layers_: dict[nn.Module, _MergedLinear] = {}
        for module in self.model_.modules():
            if isinstance(module, LoraLinear):
                plan = self._plan_lora_linear(module, names)
            elif isinstance(module, ModulesToSaveWrapper):
                plan = self._plan_head(module, names)
            else:
                continue
            if plan is not None:
                self.merged_layers_[module] = plan
        if self.first_token_only:
            blocks = find_block_list(self.model_.get_base_model())
            if self.split_module_ is None or blocks is None or blocks[1][-1] is not self.split_module_:
                raise ValueError(
                    "first_token_only needs a shared trunk whose adapted block is the model's last block."
                )
            if not _is_bert_style_layer(self.split_module_):
                raise ValueError(
                    f"first_token_only supports BERT-style layers only, not {type(self.split_module_).__name__}."
                )

    @staticmethod
    def _plan_lora_linear(module: LoraLinear, names: list[str]) -> _MergedLinear | None:
        base = module.get_base_layer()
        if not isinstance(base, nn.Linear) or module.fan_in_fan_out:
            return None
        if any(name not in module.lora_A or name in module.lora_variant for name in names):
            return None
        if any(getattr(module.lora_B[name], "bias", None) is not None for name in names):
            return None
        weights = torch.stack([base.weight + module.get_delta_weight(name).to(base.weight.dtype) for name in names])
        bias = None if base.bias is None else base.bias.expand(len(names), 1, -1).contiguous()
        plan = _MergedLinear(weight_t=weights.transpose(1, 2).contiguous(), bias=bias)
        ranks = {module.lora_A[name].weight.shape[0] for name in names}
        if len(ranks) == 1:
            plan.rank = ranks.pop()
            plan.base_weight = base.weight
            plan.base_bias = base.bias
            plan.lora_a_cat = torch.cat([module.lora_A[name].weight for name in names], dim=0).t().contiguous()
            plan.lora_b_t = torch.stack(
                [module.lora_B[name].weight.t() * module.scaling[name] for name in names]
            ).contiguous()
        return plan

    @staticmethod
    def _plan_head(module: ModulesToSaveWrapper, names: list[str]) -> _MergedLinear | None:
        copies = [module.modules_to_save[name] if name in module.modules_to_save else None for name in names]
        if any(not isinstance(copy, nn.Linear) for copy in copies):
            return None
        weights = torch.stack([copy.weight for copy in copies]).transpose(1, 2).contiguous()
        has_bias = [copy.bias is not None for copy in copies]
        if any(has_bias) and not all(has_bias):
            return None
        bias = torch.stack([copy.bias for copy in copies]).unsqueeze(1) if all(has_bias) else None
        return _MergedLinear(weight_t=weights, bias=bias)

    def _split_hook(self, module, args, kwargs, *, shared: _SharedInputs):
        batch_size, members = shared.batch_size, self.num_members
        args = tuple(_repeat_batch(arg, batch_size, members) for arg in args)
        kwargs = {key: _repeat_batch(value, batch_size, members) for key, value in kwargs.items()}
        # The hidden states are the first tensor argument: remember them, their member blocks are identical.
        first = args[0] if args else kwargs.get("hidden_states")
        shared.tensors = [first] if isinstance(first, torch.Tensor) else []
        return args, kwargs

    @contextmanager
    def _merged_batch(self, batch_size: int) -> Iterator[None]:
        shared = _SharedInputs()
        shared.batch_size = batch_size
        adapter_names = [name for name in self.adapter_names for _ in range(batch_size)]
        handles = [
            self.split_module_.register_forward_pre_hook(partial(self._split_hook, shared=shared), with_kwargs=True)
        ]
        patched = []
        if self.first_token_only:
            self.split_module_.forward = types.MethodType(_first_token_bert_layer_forward, self.split_module_)
            patched.append(self.split_module_)
        for module in self.model_.modules():
            plan = self.merged_layers_.get(module)
            if plan is not None:
                module.forward = types.MethodType(
                    partial(_merged_linear_forward, merged=plan, members=self.num_members, shared=shared), module
                )
                patched.append(module)
            elif isinstance(module, (LoraLayer, AuxiliaryTrainingWrapper)):
                handles.append(
                    module.register_forward_pre_hook(
                        partial(_adapter_names_hook, adapter_names=adapter_names), with_kwargs=True
                    )
                )
        try:
            yield
        finally:
            for module in patched:
                del module.forward  # back to the class's forward
            for handle in handles:
                handle.remove()
            shared.tensors = []

    def member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Each adapter's logits for one batch, shaped `[B, C, K]`."""
        if not hasattr(self, "merged_layers_"):
            raise RuntimeError("MergedLoRAEnsemble is not fitted yet: call `fit(trainer)` or `from_fitted(...)`.")
        if self.split_module_ is None:
            return self._sequential_member_logits(inputs)
        batch_size = _batch_size(inputs)
        with self._merged_batch(batch_size):
            logits = forward_logits(self.model_, inputs)
        if logits.shape[0] != batch_size * self.num_members:
            raise RuntimeError(
                f"The model's head did not keep the repeated batch ({logits.shape[0]} rows for "
                f"{self.num_members} x {batch_size}); use LoRAEnsemble's fallback path for this model."
            )
        return logits.view(self.num_members, batch_size, -1).permute(1, 2, 0)

"""How `LoRAEnsemble` scores one batch with all K adapters at once: merged per-member weights.

The trunk below the first adapted block is shared by every member, so it runs once; forward pre-hooks on that block
(the *split block*) and on every block above it repeat their inputs K times along the batch axis, member-major: rows
`k*B:(k+1)*B` belong to adapter k (see `lora_repeat`). Two ways then route each copy through its own adapter:

* `mixed_adapter_batch` (peft's mixed-adapter batches): every LoRA layer receives `adapter_names` (K x B names) and
  peft's `_mixed_batch_forward` runs the base linear over the K x B rows, then for each adapter gathers its rows
  (`x[indices]`, a copy), applies two rank-r matmuls and a scaling, and index-puts the result back; the task head
  (`ModulesToSaveWrapper`) gathers and re-stacks its K copies' rows the same way.
* `merged_adapter_batch` (the default): every adapted `nn.Linear` (and a `Linear` head in `modules_to_save`) holds
  K merged weights `W_k = W + scale_k * B_k A_k`, stacked, and runs one `baddbmm` over `x.view(K, B, in)`: the FLOPs
  of the base linear alone, without gathers, index-puts or rank-r matmuls. A linear whose input *is* the repeated
  trunk output (in BERT: query, key and value of the first adapted block) computes the base projection once on B
  rows and adds K low-rank corrections (one `[n, K*r]` matmul and one `bmm`) instead of K identical projections.
  With `first_token_only` (BERT-family encoders whose adapted block is the last one and whose head reads token 0
  only), that block computes keys and values for every token but the query, attention output and feed-forward for
  token 0 alone: the rows nothing downstream reads are never computed. `LoRAEnsemble` turns it on by default where
  it is exact: the model is one of `TOKEN0_HEADS` (transformers classes whose sequence-classification head reads
  `hidden_states[:, 0]` and nothing else, checked in their source) and `first_token_only_blocker` finds nothing in
  the way (see `token0_head_blocker`).

Why: `benchmarks/bench_uncertainty.py` (all-MiniLM-L6-v2, K = 5, adapters on the top block, 1 thread) measured the
mixed-adapter path at 0.41x the throughput of one plain forward pass (peft's gathers, rank-r matmuls, copies and
index-puts cost about 0.23 s of a 1.55 s batch of 32), the merged path at 0.66x (the ideal for one adapted block of
six at K = 5 is about 0.67x) and the token-0 path at 1.12x, with the same logits to float rounding (max |diff| < 1e-6).
See `benchmarks/README.md` for the current table.

Layers the merged path does not understand (DoRA and other LoRA variants, LoRA biases, `fan_in_fan_out`, non-`Linear`
base layers such as `Conv2d`, layers missing an adapter, non-`Linear` heads) keep peft's mixed-adapter path inside
the same forward pass, so the result is always the mixed-adapter result. The merged weights are a snapshot: they
ignore LoRA dropout (scoring runs in eval mode) and must be recomputed (`LoRAEnsemble.refresh()`) when the adapters,
the base weights, or their device or dtype change. They cost K copies of the adapted layers' weights in memory.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.lora import Linear as LoraLinear
from peft.utils.other import ModulesToSaveWrapper
from torch import nn

from .base import qualified_class_name
from .lora_repeat import (
    RepeatedBatchError,
    SharedInputs,
    mixed_adapter_batch,
    repeat_batch_hooks,
    route_by_adapter_names,
)

__all__ = [
    "TOKEN0_HEADS",
    "RepeatedBatchError",
    "check_first_token_only",
    "first_token_only_blocker",
    "is_bert_style_layer",
    "merged_adapter_batch",
    "mixed_adapter_batch",
    "plan_lora_linear",
    "plan_merged_layers",
    "plan_modules_to_save",
    "token0_head_blocker",
]


@dataclass
class _MergedLinear:
    """The stacked per-member weights of one adapted linear layer (or of a `Linear` head with per-member copies).

    Attributes:
        weight_t (`torch.Tensor` of shape `[K, in, out]`): `(W + scale_k * B_k A_k)^T` for every member k.
        bias (`torch.Tensor` of shape `[K, 1, out]`, *optional*): Per-member bias.
        base_weight (`torch.Tensor` of shape `[out, in]`, *optional*): The shared base weight, for inputs whose member
            blocks are identical (set when every member has the same rank).
        base_bias (`torch.Tensor` of shape `[out]`, *optional*): The shared base bias.
        lora_a_cat (`torch.Tensor` of shape `[in, K*r]`, *optional*): Every member's `A_k^T`, concatenated.
        lora_b_t (`torch.Tensor` of shape `[K, r, out]`, *optional*): `scale_k * B_k^T`, stacked.
        rank (`int`): The members' common rank r (0 when the shared-input path is unavailable).
    """

    weight_t: torch.Tensor
    bias: torch.Tensor | None
    base_weight: torch.Tensor | None = None
    base_bias: torch.Tensor | None = None
    lora_a_cat: torch.Tensor | None = None
    lora_b_t: torch.Tensor | None = None
    rank: int = 0


# ----------------------------------------------------------------------------------------------- merged forward
def _merged_linear_forward(
    module: nn.Module, x: torch.Tensor, *args: Any, merged: _MergedLinear, members: int, shared: SharedInputs, **_
) -> torch.Tensor:
    """Replaces the forward of one planned layer for a member-major repeated batch."""
    if x.shape[0] != members * shared.batch_size:
        raise RepeatedBatchError(
            f"{type(module).__name__} got {x.shape[0]} rows where the repeated batch has "
            f"{members} x {shared.batch_size}: it runs outside the repeated part of the model."
        )
    in_features, out_features = merged.weight_t.shape[1:]
    if merged.lora_a_cat is not None and shared.holds(x):
        # Every member block of `x` is the same trunk output: one base projection + K low-rank corrections.
        first = x[: shared.batch_size].reshape(-1, in_features)
        rows = first.shape[0]
        base = F.linear(first, merged.base_weight, merged.base_bias)  # [n, out]
        low = (first @ merged.lora_a_cat).view(rows, members, merged.rank).transpose(0, 1)  # [K, n, r]
        out = torch.baddbmm(base, low, merged.lora_b_t)  # [K, n, out]
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
    """A BERT-style layer's output for token 0 only, `[B, 1, hidden]` (its keys and values still see every token)."""
    attention = layer.attention.self
    rows, length = hidden_states.shape[:2]
    first = hidden_states[:, :1]
    head_dim = attention.attention_head_size

    def heads(x: torch.Tensor, tokens: int) -> torch.Tensor:
        return x.view(rows, tokens, -1, head_dim).transpose(1, 2)

    query = heads(attention.query(first), 1)
    key = heads(attention.key(hidden_states), length)
    value = heads(attention.value(hidden_states), length)
    if attention_mask is not None:
        if attention_mask.ndim != 4:
            raise RuntimeError(
                f"first_token_only expects a 4-D attention mask (eager or sdpa attention), got {attention_mask.ndim}-D."
            )
        if attention_mask.shape[-2] == length:
            attention_mask = attention_mask[:, :, :1]
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=attention.scaling)
    context = context.transpose(1, 2).reshape(rows, 1, -1)
    attention_output = layer.attention.output(context, first)
    return layer.output(layer.intermediate(attention_output), attention_output)


def is_bert_style_layer(module: nn.Module) -> bool:
    """Whether `module` is a BERT-family encoder layer the token-0 forward reproduces.

    That is: `attention.self` with `query`/`key`/`value` projections, `attention.output`, `intermediate` and `output`,
    no causal masking or cross-attention, and eager or sdpa attention.
    """
    attention = getattr(getattr(module, "attention", None), "self", None)
    if attention is None:
        return False
    implementation = getattr(getattr(attention, "config", None), "_attn_implementation", None) or "eager"
    return (
        all(hasattr(attention, name) for name in ("query", "key", "value", "attention_head_size", "scaling"))
        and all(hasattr(module, name) for name in ("intermediate", "output"))
        and hasattr(module.attention, "output")
        and not getattr(attention, "is_causal", False)
        and not getattr(module, "is_decoder", False)
        and not getattr(module, "add_cross_attention", False)
        and implementation in {"eager", "sdpa"}
    )


def first_token_only_blocker(split_module: nn.Module | None, last_block: nn.Module | None) -> str | None:
    """Why the token-0 forward cannot run here, or `None` when it can: it needs a shared trunk whose adapted block is a
    BERT-style last block.

    Args:
        split_module (`nn.Module`, *optional*): The first adapted block (`None` when there is no shared trunk).
        last_block (`nn.Module`, *optional*): The model's last block (`None` when it has no block stack).
    """
    if split_module is None or last_block is None or split_module is not last_block:
        return (
            "first_token_only=True needs a shared trunk whose only adapted block is the model's last block "
            "(adapters on the top block only, e.g. num_adapted_layers=1, and share_trunk=True)."
        )
    if not is_bert_style_layer(split_module):
        return (
            f"first_token_only=True supports BERT-family encoder layers only (non-causal self-attention with "
            f"query/key/value, eager or sdpa attention), not {type(split_module).__name__}."
        )
    return None


def check_first_token_only(split_module: nn.Module | None, last_block: nn.Module | None) -> None:
    """Raises `ValueError` (naming why) where `first_token_only_blocker` finds the token-0 forward does not apply.

    Args:
        split_module (`nn.Module`, *optional*): The first adapted block (`None` when there is no shared trunk).
        last_block (`nn.Module`, *optional*): The model's last block (`None` when it has no block stack).
    """
    reason = first_token_only_blocker(split_module, last_block)
    if reason is not None:
        raise ValueError(reason)


# ------------------------------------------------------------------------------------------ token-0 heads (auto)
_TF = "transformers.models"
TOKEN0_HEADS: dict[str, tuple[str | None, str | None]] = {
    # Model class -> (attribute path of the module that reads the last hidden state, that module's class). Each
    # model's `forward` passes the encoder output to that module only, and the module reads `[:, 0]` alone
    # (transformers 5.24, checked in the source):
    # * pooler `hidden_states[:, 0]` -> dense -> tanh, then dropout -> classifier:
    f"{_TF}.bert.modeling_bert.BertForSequenceClassification": ("bert.pooler", f"{_TF}.bert.modeling_bert.BertPooler"),
    f"{_TF}.ernie.modeling_ernie.ErnieForSequenceClassification": (
        "ernie.pooler",
        f"{_TF}.ernie.modeling_ernie.ErniePooler",
    ),
    # * classification head `features[:, 0, :]` -> dropout -> dense -> activation -> dropout -> out_proj (the model
    #   is built with `add_pooling_layer=False`):
    f"{_TF}.roberta.modeling_roberta.RobertaForSequenceClassification": (
        "classifier",
        f"{_TF}.roberta.modeling_roberta.RobertaClassificationHead",
    ),
    f"{_TF}.xlm_roberta.modeling_xlm_roberta.XLMRobertaForSequenceClassification": (
        "classifier",
        f"{_TF}.xlm_roberta.modeling_xlm_roberta.XLMRobertaClassificationHead",
    ),
    f"{_TF}.camembert.modeling_camembert.CamembertForSequenceClassification": (
        "classifier",
        f"{_TF}.camembert.modeling_camembert.CamembertClassificationHead",
    ),
    f"{_TF}.data2vec.modeling_data2vec_text.Data2VecTextForSequenceClassification": (
        "classifier",
        f"{_TF}.data2vec.modeling_data2vec_text.Data2VecTextClassificationHead",
    ),
    f"{_TF}.electra.modeling_electra.ElectraForSequenceClassification": (
        "classifier",
        f"{_TF}.electra.modeling_electra.ElectraClassificationHead",
    ),
    # * `forward` itself takes `hidden_state[:, 0]` (-> pre_classifier -> ReLU -> dropout -> classifier). Its blocks
    #   (`TransformerBlock`, `q_lin`/`k_lin`/`v_lin`) are not BERT-style, so `first_token_only_blocker` still says no.
    f"{_TF}.distilbert.modeling_distilbert.DistilBertForSequenceClassification": (None, None),
}
"""The models whose logits read token 0 of the last hidden state only, by fully qualified class name.

Left out on purpose: last-token poolers (`GPT2ForSequenceClassification`, `LlamaForSequenceClassification`, ...),
pre-LayerNorm BERT variants, which the token-0 forward does not reproduce (`XLMRobertaXL`, whose layers even pass
`is_bert_style_layer`, and `MegatronBert`), and DeBERTa (its `ContextPooler` reads token 0, its layers are not
BERT-style). Subclasses are not trusted: they may override `forward`.
"""


def token0_head_blocker(model: nn.Module) -> str | None:
    """Why `model`'s logits may read more than token 0 of the last hidden state, or `None` when they provably do not.

    `model` (the base model under peft) must be an instance of exactly one of the `TOKEN0_HEADS` classes, and the
    module its head reads the hidden states through must still be of the listed class (a replaced pooler, e.g. a
    mean-pooling one, fails). Per-member copies of that module (peft's `modules_to_save`) are checked too.

    Args:
        model (`nn.Module`): The transformers model (e.g. `peft_model.get_base_model()`).
    """
    name = qualified_class_name(model)
    if name not in TOKEN0_HEADS:
        return f"{type(model).__name__} is not a known token-0 sequence-classification model (TOKEN0_HEADS)"
    path, expected = TOKEN0_HEADS[name]
    if path is None:
        return None
    reader: Any = model
    for part in path.split("."):
        reader = getattr(reader, part, None)
    copies = [reader]
    if isinstance(reader, ModulesToSaveWrapper):
        copies = [reader.original_module, *reader.modules_to_save.values()]
    for copy in copies:
        if qualified_class_name(copy) != expected:
            return f"{type(model).__name__}.{path} is a {type(copy).__name__}, not the {expected.rsplit('.', 1)[-1]}"
    return None


# ------------------------------------------------------------------------------------------------------ planning
def plan_lora_linear(module: LoraLinear, adapter_names: list[str]) -> _MergedLinear | None:
    """The merged weights of a peft LoRA `Linear` layer, or `None` if the merged path does not handle it.

    Args:
        module (`peft.tuners.lora.Linear`): The LoRA layer.
        adapter_names (`list[str]`): The K adapters, in member order.
    """
    base = module.get_base_layer()
    if not isinstance(base, nn.Linear) or module.fan_in_fan_out:
        return None
    if any(name not in module.lora_A or name in module.lora_variant for name in adapter_names):
        return None
    if any(getattr(module.lora_B[name], "bias", None) is not None for name in adapter_names):
        return None
    dtype = base.weight.dtype
    weights = torch.stack([base.weight + module.get_delta_weight(name).to(dtype) for name in adapter_names])
    bias = None if base.bias is None else base.bias.expand(len(adapter_names), 1, -1).contiguous()
    plan = _MergedLinear(weight_t=weights.transpose(1, 2).contiguous(), bias=bias)
    ranks = {module.lora_A[name].weight.shape[0] for name in adapter_names}
    if len(ranks) == 1:
        plan.rank = ranks.pop()
        plan.base_weight = base.weight
        plan.base_bias = base.bias
        a_cat = torch.cat([module.lora_A[name].weight for name in adapter_names], dim=0)
        plan.lora_a_cat = a_cat.t().to(dtype).contiguous()
        b_t = [module.lora_B[name].weight.t() * module.scaling[name] for name in adapter_names]
        plan.lora_b_t = torch.stack(b_t).to(dtype).contiguous()
    return plan


def plan_modules_to_save(module: ModulesToSaveWrapper, adapter_names: list[str]) -> _MergedLinear | None:
    """The stacked per-member copies of a `Linear` in `modules_to_save` (the task head), or `None`.

    Args:
        module (`peft.utils.other.ModulesToSaveWrapper`): The wrapper holding one copy per adapter.
        adapter_names (`list[str]`): The K adapters, in member order.
    """
    copies = [module.modules_to_save[name] if name in module.modules_to_save else None for name in adapter_names]
    if any(not isinstance(copy, nn.Linear) for copy in copies):
        return None
    has_bias = [copy.bias is not None for copy in copies]
    if any(has_bias) and not all(has_bias):
        return None
    weights = torch.stack([copy.weight for copy in copies]).transpose(1, 2).contiguous()
    bias = torch.stack([copy.bias for copy in copies]).unsqueeze(1) if all(has_bias) else None
    return _MergedLinear(weight_t=weights, bias=bias)


@torch.no_grad()
def plan_merged_layers(model: nn.Module, adapter_names: list[str]) -> dict[nn.Module, _MergedLinear]:
    """The merged weights of every layer of `model` the merged path handles (the others keep peft's path).

    Args:
        model (`nn.Module`): The peft model holding the adapters.
        adapter_names (`list[str]`): The K adapters, in member order.

    Returns:
        `dict[nn.Module, _MergedLinear]`: One plan per handled LoRA `Linear` or `modules_to_save` wrapper. The
        tensors are detached snapshots: recompute them when the weights change.
    """
    plans: dict[nn.Module, _MergedLinear] = {}
    for module in model.modules():
        if isinstance(module, LoraLinear):
            plan = plan_lora_linear(module, adapter_names)
        elif isinstance(module, ModulesToSaveWrapper):
            plan = plan_modules_to_save(module, adapter_names)
        else:
            continue
        if plan is not None:
            plans[module] = plan
    return plans


_NO_FORWARD = object()


@contextmanager
def merged_adapter_batch(
    model: nn.Module,
    split_module: nn.Module,
    plans: dict[nn.Module, _MergedLinear],
    adapter_names: list[str],
    batch_size: int,
    first_token_only: bool = False,
    later_blocks: Sequence[nn.Module] = (),
) -> Iterator[None]:
    """Scores one batch with every adapter through per-member merged weights.

    Inside the context, a forward pass of `model` on a batch of `batch_size` rows repeats the input of `split_module`
    (and the per-batch inputs of `later_blocks`) once per adapter, member-major; every planned layer runs its merged weights over the repeated batch, and every
    other LoRA layer or wrapper gets peft's `adapter_names` routing. The patched forwards are restored on exit.

    Args:
        model (`nn.Module`): The peft model holding the adapters.
        split_module (`nn.Module`): The first block holding adapters (everything below it is shared).
        plans (`dict[nn.Module, _MergedLinear]`): From `plan_merged_layers(model, adapter_names)`.
        adapter_names (`list[str]`): The K adapters, in member order.
        batch_size (`int`): Rows of the batch about to be scored.
        first_token_only (`bool`, defaults to `False`): Compute only token 0 in `split_module` (check it applies with
            `check_first_token_only` first).
        later_blocks (`Sequence[nn.Module]`, defaults to `()`): The blocks above `split_module` in the block stack.

    A planned layer given a batch that is not the repeated one raises `RepeatedBatchError`.
    """
    members = len(adapter_names)
    shared = SharedInputs(batch_size)
    handles = repeat_batch_hooks(split_module, later_blocks, batch_size, members, shared)
    replaced: dict[nn.Module, Any] = {}

    def replace_forward(module: nn.Module, forward: Any) -> None:
        replaced[module] = module.__dict__.get("forward", _NO_FORWARD)
        module.forward = types.MethodType(forward, module)

    try:
        if first_token_only:
            replace_forward(split_module, _first_token_bert_layer_forward)
        unplanned = []
        for module in model.modules():
            plan = plans.get(module)
            if plan is None:
                unplanned.append(module)
            else:
                replace_forward(module, partial(_merged_linear_forward, merged=plan, members=members, shared=shared))
        handles += route_by_adapter_names(unplanned, [name for name in adapter_names for _ in range(batch_size)])
        yield
    finally:
        for module, previous in replaced.items():
            if previous is _NO_FORWARD:
                del module.forward  # back to the class's forward
            else:
                module.forward = previous
        for handle in handles:
            handle.remove()
        shared.tensors = []

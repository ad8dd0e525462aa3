"""The causal LM of `TextGenerationGenerator`: loading it (a Hub id, a local folder, a `.gguf` file or a loaded model)
and the model-side helpers of sampling: end-of-sequence ids, the KV cache of a prompt prefix a batch shares, and the
seeded sampler.

`SharedPrefix`: the token prefix every prompt of a batch starts with (the chat template's system turn and the start of
the user turn) is prefilled once, and its KV cache copied into the batch: each row is laid out as
`[prefix][padding][own suffix]`, with the padding masked, so every real token keeps the position and the attention
context it has in the plain, left-padded batch. The result is the same computation (equal up to floating-point
summation order), minus the prefix's share of the prefill.

`SeededSampler`: a logits processor that draws each row's token from `model.generate`'s temperature / top-k / top-p
distribution (`nucleus_sample`), looking at the top candidates only, from the row's own seeded random stream.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import Cache, PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "SeededSampler",
    "SharedPrefix",
    "bucketed_prefill_inputs",
    "eos_token_ids",
    "length_buckets",
    "load_causal_lm",
    "model_display_name",
    "nucleus_sample",
    "prefix_cache_blocker",
    "row_uniforms",
    "seeded_sampler_blocker",
    "shared_prefix_length",
    "split_gguf",
]

# `generate` arguments that read the token layout of a row or manage the cache themselves: with any of them the
# `[prefix][padding][suffix]` layout is not known to give the plain path's tokens, so the prefix is not shared.
_LAYOUT_SENSITIVE_ARGUMENTS = frozenset(
    {
        "assistant_model",
        "cache",
        "cache_implementation",
        "encoder_no_repeat_ngram_size",
        "no_repeat_ngram_size",
        "num_beams",
        "num_return_sequences",
        "past_key_values",
        "prefill_chunk_size",
        "prompt_lookup_num_tokens",
        "use_cache",
    }
)

logger = logging.getLogger(__name__)


def load_causal_lm(
    model: str | os.PathLike | PreTrainedModel,
    tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None = None,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Loads (or adopts) a causal LM and its tokenizer, in eval mode, with a pad token for left padding.

    Args:
        model (`str`, `os.PathLike` or `PreTrainedModel`): A Hub id or local folder, a `.gguf` path, or a loaded model
            (cast to `dtype` when given).
        tokenizer (`str` or `PreTrainedTokenizerBase`, *optional*): Defaults to the tokenizer stored with `model`;
            required for a loaded model.
        gguf_file (`str`, *optional*): Name of the GGUF file inside the `model` folder.
        dtype (`torch.dtype` or `str`, *optional*): Load (or cast) the model in this dtype. transformers warns, on
            loading a GGUF in another dtype than float32, that packed GGUF weights compute fastest in float32: that
            holds for the architectures its GGUF quantizer keeps packed (qwen35, lfm2, ... with the `kernels`
            package); a Llama GGUF such as SmolLM2 is dequantised into plain `nn.Linear` layers of `dtype`, where
            bfloat16 is the faster dtype on CPUs with native bf16.
        device (`str` or `torch.device`, *optional*): Move the model there.
        model_kwargs (`Mapping`, *optional*): Extra `from_pretrained` arguments.

    Returns:
        `tuple`: `(model, tokenizer)`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    source, gguf_file = split_gguf(model, gguf_file)
    if isinstance(model, PreTrainedModel):
        loaded = model
        if dtype is not None:
            loaded = loaded.to(dtype)
    elif isinstance(model, (str, os.PathLike)):
        kwargs = dict(model_kwargs or {})
        if gguf_file is not None:
            kwargs["gguf_file"] = gguf_file
        if dtype is not None:
            kwargs["dtype"] = dtype
        loaded = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    else:
        raise TypeError(
            "TextGenerationGenerator(model=...) must be a Hub id, a local folder, a .gguf path or a loaded "
            f"transformers PreTrainedModel, got {type(model).__name__}."
        )
    if tokenizer is None:
        if isinstance(model, PreTrainedModel):
            raise ValueError(
                "TextGenerationGenerator got an already-loaded model but no tokenizer: pass tokenizer=..."
            )
        tokenizer = AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}))
    elif isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("The tokenizer has neither a pad nor an eos token: set tokenizer.pad_token first.")
        logger.info("Tokenizer has no pad token; using its eos token %r for (left) padding.", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        loaded = loaded.to(device)
    return loaded.eval(), tokenizer


def split_gguf(model: Any, gguf_file: str | None) -> tuple[Any, str | None]:
    """`path/to/model.gguf` → (`path/to`, `model.gguf`); anything else is returned unchanged."""
    if isinstance(model, (str, os.PathLike)) and gguf_file is None and str(model).endswith(".gguf"):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist.")
        return str(path.parent), path.name
    return (str(model) if isinstance(model, os.PathLike) else model), gguf_file


def model_display_name(model: Any, gguf_file: str | None) -> str:
    """A short name of `model` for the generator's default name: the GGUF file, the folder or the Hub id."""
    if gguf_file is not None:
        return Path(gguf_file).name
    if isinstance(model, (str, os.PathLike)):
        path = str(model).rstrip("/")
        return Path(path).name if os.path.isabs(path) or os.path.exists(path) else path
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", "") or ""
    return Path(name).name if name else type(model).__name__


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The end-of-sequence token ids: the model's generation config's, else the tokenizer's (empty if neither)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(value) for value in (eos if isinstance(eos, (list, tuple)) else [eos])]


def shared_prefix_length(token_ids: Sequence[Sequence[int]]) -> int:
    """The number of leading tokens every sequence of `token_ids` shares, leaving each at least one token of its own
    (the prefill of a batch needs one new token per row). 0 for no sequences."""
    if not token_ids:
        return 0
    first, limit = token_ids[0], min(len(ids) for ids in token_ids) - 1
    length = 0
    while length < limit and all(ids[length] == first[length] for ids in token_ids):
        length += 1
    return length


def _cache_argument(model: Any) -> str:
    """The name the model's `forward` (and `generate`) take the KV cache under: `cache` since transformers 5.x,
    `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prefix_cache_blocker(model: Any, generation_kwargs: Mapping[str, Any]) -> str | None:
    """Why a shared prompt prefix cannot be prefilled once for `model` and these `generate` arguments, or `None` when
    it can: a decoder-only model whose every cache layer is a plain full-attention `DynamicLayer`, no beams or extra
    returned sequences, and no argument that reads the row layout or brings its own cache."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return "not a decoder-only transformers model"
    blocking = sorted(_LAYOUT_SENSITIVE_ARGUMENTS & set(generation_kwargs))
    if blocking:
        return f"generation_kwargs set {blocking}"
    defaults = getattr(model, "generation_config", None)
    if defaults is not None and (
        (defaults.num_beams or 1) > 1
        or (defaults.num_return_sequences or 1) > 1
        or defaults.cache_implementation is not None
        or defaults.no_repeat_ngram_size
    ):
        return "the model's generation_config uses beams, several sequences, its own cache or an n-gram block"
    layers = getattr(DynamicCache(config=config), "layers", [])
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return "the model has sliding-window, linear-attention or other non-plain cache layers"
    return None


@dataclass
class SharedPrefix:
    """The prompt prefix every prompt of a request shares, prefilled once: its token ids and their KV cache.

    Args:
        token_ids (`list[int]`): The shared prefix.
        cache (`Cache`): Its KV cache, batch size 1 (never modified: every batch gets a copy).
        cache_argument (`str`): The name `generate` takes a cache under.
    """

    token_ids: list[int]
    cache: Cache
    cache_argument: str

    @classmethod
    @torch.no_grad()
    def prefill(cls, model: Any, token_ids: Sequence[int]) -> SharedPrefix:
        """Runs `token_ids` through `model` once (no padding, one row) and keeps the KV cache."""
        from transformers import DynamicCache

        argument = _cache_argument(model)
        cache = DynamicCache(config=model.config)
        input_ids = torch.tensor([list(token_ids)], device=model.device)
        extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
        output = model(input_ids=input_ids, use_cache=True, **{argument: cache}, **extra)
        # `forward` fills the cache it was given in place; prefer the one it returns, should it be another object.
        returned = getattr(output, argument, None)
        return cls(list(token_ids), returned if returned is not None else cache, argument)

    def batch_inputs(self, token_ids: Sequence[Sequence[int]], pad_token_id: int) -> dict[str, Any]:
        """`generate` inputs for prompts that all start with the prefix: rows `[prefix][padding][suffix]`, the padding
        masked, and a copy of the prefix cache repeated once per row.

        Raises:
            `ValueError`: when a prompt does not start with the prefix or has nothing after it.
        """
        prefix = self.token_ids
        suffixes = []
        for ids in token_ids:
            if list(ids[: len(prefix)]) != prefix or len(ids) <= len(prefix):
                raise ValueError("Every prompt of a shared-prefix batch must start with the prefix and extend it.")
            suffixes.append(list(ids[len(prefix) :]))
        width = max(len(suffix) for suffix in suffixes)
        rows, masks = [], []
        for suffix in suffixes:
            padding = width - len(suffix)
            rows.append(prefix + [pad_token_id] * padding + suffix)
            masks.append([1] * len(prefix) + [0] * padding + [1] * len(suffix))
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(len(rows))
        return {"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(masks), self.cache_argument: cache}


# What a separate prefill forward costs, in padded prompt tokens: a bucket is split off only when that saves more
# padding than this (a forward's fixed costs, and smaller matmuls running less efficiently).
_BUCKET_COST = 96


def length_buckets(lengths: Sequence[int], bucket_cost: int = _BUCKET_COST) -> list[list[int]]:
    """Row indices grouped into buckets of similar lengths, minimising the tokens a bucketed prefill computes: per
    bucket, its rows times its longest length, plus `bucket_cost` (an exact dynamic programme over the rows sorted by
    length). Buckets come shortest first; rows of equal length keep their order."""
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    sorted_lengths = [lengths[index] for index in order]
    best, split = [0.0] + [float("inf")] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * sorted_lengths[end - 1] + bucket_cost
            if cost < best[end]:
                best[end], split[end] = cost, start
    buckets, end = [], len(order)
    while end > 0:
        buckets.append(order[split[end] : end])
        end = split[end]
    return buckets[::-1]


@torch.no_grad()
def bucketed_prefill_inputs(
    model: Any,
    token_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    prefix: SharedPrefix | None = None,
    bucket_cost: int = _BUCKET_COST,
) -> dict[str, Any]:
    """`generate` inputs for a batch whose prompts are prefilled in buckets of similar lengths, so that a short prompt
    is not padded to the batch's longest: the returned cache holds every prompt token but the last, and `generate`
    computes only the last column, then decodes the whole batch at once.

    Each row is laid out `[prefix][padding][suffix]` (`prefix` empty without a `SharedPrefix`: plain left padding),
    the padding masked; its cached keys and values are those of its own tokens at their own positions, computed in
    its bucket (the cache's padding columns are zeros, never attended to). The same computation as prefilling the
    padded batch at once, up to floating-point summation order. Needs a model `prefix_cache_blocker` accepts.

    Args:
        model (`PreTrainedModel`): The causal LM.
        token_ids (`Sequence[Sequence[int]]`): The batch's prompts (each starting with `prefix`, and extending it).
        pad_token_id (`int`): The padding token.
        prefix (`SharedPrefix`, *optional*): A prefilled prefix every prompt starts with.
        bucket_cost (`int`): A separate bucket's cost in padded tokens (`length_buckets`).

    Returns:
        `dict`: `input_ids`, `attention_mask` and the filled cache under the name `generate` takes it.
    """
    from transformers import DynamicCache

    argument = prefix.cache_argument if prefix is not None else _cache_argument(model)
    prefix_ids = prefix.token_ids if prefix is not None else []
    length = len(prefix_ids)
    suffixes = []
    for ids in token_ids:
        if list(ids[:length]) != prefix_ids or len(ids) <= length:
            raise ValueError("Every prompt of a shared-prefix batch must start with the prefix and extend it.")
        suffixes.append(list(ids[length:]))
    width = max(len(suffix) for suffix in suffixes)
    rows = [prefix_ids + [pad_token_id] * (width - len(suffix)) + suffix for suffix in suffixes]
    masks = [[1] * length + [0] * (width - len(suffix)) + [1] * len(suffix) for suffix in suffixes]
    inputs = {"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(masks)}
    if length + width - 1 == 0:
        return inputs  # one token per prompt and no prefix: nothing to prefill ahead of `generate`
    device = model.device
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    filled = []  # (bucket rows, bucket width, that bucket's cache layers as (keys, values))
    for bucket in length_buckets([len(suffix) for suffix in suffixes], bucket_cost):
        bucket_width = max(len(suffixes[row]) for row in bucket) - 1  # the last token is left to `generate`
        if prefix is None and bucket_width == 0:
            continue  # nothing of these rows to cache: their columns stay zero (masked)
        if prefix is not None:
            cache = copy.deepcopy(prefix.cache)
            cache.batch_repeat_interleave(len(bucket))
        else:
            cache = DynamicCache(config=model.config)
        if bucket_width > 0:
            padded = [[pad_token_id] * (bucket_width + 1 - len(suffixes[row])) + suffixes[row][:-1] for row in bucket]
            mask = torch.tensor(
                [[1] * length + [0] * (bucket_width + 1 - len(suffixes[row])) + [1] * (len(suffixes[row]) - 1)
                 for row in bucket],
                device=device,
            )  # fmt: skip
            positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)[:, length:]
            output = model(
                input_ids=torch.tensor(padded, device=device),
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{argument: cache},
                **extra,
            )
            returned = getattr(output, argument, None)
            cache = returned if returned is not None else cache
        filled.append((bucket, bucket_width, [(layer.keys, layer.values) for layer in cache.layers]))
    merged = [
        tuple(state.new_zeros((len(rows), state.shape[1], length + width - 1, state.shape[-1])) for state in pair)
        for pair in filled[0][2]
    ]
    for bucket, bucket_width, layers in filled:
        index = torch.tensor(bucket, device=device)
        for pair, merged_pair in zip(layers, merged, strict=True):
            # Prefix columns as they are; the bucket's suffix columns right-aligned with the batch's.
            for source, target in zip(pair, merged_pair, strict=True):
                target[index, :, :length] = source[:, :, :length]
                if bucket_width > 0:
                    target[index, :, length + width - 1 - bucket_width :] = source[:, :, length:]
    cache = DynamicCache(config=model.config)
    for layer, (keys, values) in zip(cache.layers, merged, strict=True):
        layer.update(keys, values)
    return {**inputs, argument: cache}


# transformers' own default `top_k` when sampling (`GenerationConfig._get_default_generation_params`), which the
# generator has always sampled with: temperature, then top-k 50, then top-p.
TRANSFORMERS_DEFAULT_TOP_K = 50
# Tokens examined per row before falling back to a full sort: top-k plus this many more, to catch ties at the k-th
# value (common with bf16 logits), or this many for a nucleus without top-k.
_TIE_MARGIN = 64
_MAX_CANDIDATES = 1024
# `generate` arguments that shape the sampled distribution beyond temperature / top-k / top-p, or sample several
# sequences: with any of them `model.generate` samples itself.
_OTHER_SAMPLING_ARGUMENTS = frozenset(
    {
        "epsilon_cutoff",
        "eta_cutoff",
        "min_p",
        "num_beams",
        "num_return_sequences",
        "top_h",
        "typical_p",
        "watermarking_config",
        "assistant_model",
        "prompt_lookup_num_tokens",
    }
)


def seeded_sampler_blocker(arguments: Mapping[str, Any]) -> str | None:
    """Why `SeededSampler` cannot stand in for `model.generate`'s own sampling with these `generate` arguments, or
    `None` when it can: sampling on, and no warper or search beyond temperature, top-k and top-p."""
    if not arguments.get("do_sample", False):
        return "do_sample is off (greedy decoding)"
    blocking = sorted(_OTHER_SAMPLING_ARGUMENTS & {name for name, value in arguments.items() if value is not None})
    return f"generation_kwargs set {blocking}" if blocking else None


def row_uniforms(seeds: Sequence[int], num_steps: int) -> torch.Tensor:
    """`(len(seeds), num_steps)` float64 uniforms in [0, 1): row `i` comes from its own generator seeded `seeds[i]`,
    so a row's draws do not depend on the other rows of its batch."""
    rows = [
        torch.rand(num_steps, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
        for seed in seeds
    ]
    return torch.stack(rows) if rows else torch.empty(0, num_steps, dtype=torch.float64)


def nucleus_sample(
    scores: torch.Tensor,
    uniforms: torch.Tensor,
    *,
    temperature: float,
    top_k: int | None,
    top_p: float,
    max_candidates: int = _MAX_CANDIDATES,
) -> torch.Tensor:
    """One token per row from `softmax(scores / temperature)` cut to the top-k tokens and then to the top-p nucleus:
    the distribution `model.generate` samples from with `TemperatureLogitsWarper`, `TopKLogitsWarper` (ties at the
    k-th score kept) and `TopPLogitsWarper` (a token is kept while the mass of the tokens ranked before it is below
    `top_p`), drawn by inverting the cumulative distribution at `uniforms` (one per row) instead of
    `torch.multinomial`.

    Only the few highest scores of a row are sorted (`torch.topk`), rather than the whole vocabulary twice; a row whose
    cut cannot be decided from them (ties beyond the candidates, a nucleus wider than `max_candidates`) is sorted in
    full, with the same ranking: score descending, then token id ascending.

    Args:
        scores (`torch.Tensor`): `(batch, vocab)` next-token scores (after any other logits processor).
        uniforms (`torch.Tensor`): `(batch,)` uniforms in [0, 1).
        temperature (`float`): Divides the scores.
        top_k (`int`, *optional*): Keep the `top_k` highest scores (and ties); `None` or 0: no top-k cut.
        top_p (`float`): Nucleus mass; 1.0: no top-p cut.
        max_candidates (`int`): Candidates per row without top-k, before the full sort (at least the vocabulary
            size: always the full sort).

    Returns:
        `torch.Tensor`: `(batch,)` token ids.
    """
    logits = scores.float() / temperature
    batch, vocab = logits.shape
    k = min(int(top_k), vocab) if top_k else 0
    width = vocab if max_candidates >= vocab else min(vocab, k + _TIE_MARGIN if k else max_candidates)
    # Ties rank by token id: a stable sort of the whole row keeps id order among equal scores; the candidates of
    # `topk` (in no set order among ties) are sorted by id first, then stably by score.
    if width == vocab:
        values, indices = logits.sort(dim=-1, descending=True, stable=True)
    else:
        values, indices = logits.topk(width, dim=-1)
        by_id = indices.argsort(dim=-1)
        values, indices = values.gather(-1, by_id), indices.gather(-1, by_id)
        by_score = values.argsort(dim=-1, descending=True, stable=True)
        values, indices = values.gather(-1, by_score), indices.gather(-1, by_score)
    if k:
        threshold = values[:, k - 1 : k]
        values = values.masked_fill(values < threshold, float("-inf"))
        # Every token tied with the k-th is among the candidates unless the last candidate still ties.
        complete = (values[:, -1] == float("-inf")) | (width == vocab)
        log_normalizer = torch.logsumexp(values, dim=-1, keepdim=True)
    else:
        complete = torch.full((batch,), width == vocab, device=logits.device)
        log_normalizer = torch.logsumexp(logits, dim=-1, keepdim=True)
    probabilities = (values - log_normalizer).exp()
    cumulative = probabilities.cumsum(dim=-1)
    kept = probabilities > 0
    if top_p < 1.0:
        kept &= (cumulative - probabilities) < top_p
        if not k and width < vocab:
            # Decided here when the cut falls strictly before the last candidate's score (ties could hide beyond).
            last = kept.long().cumsum(dim=-1).argmax(dim=-1, keepdim=True)
            complete |= (cumulative[:, -1] >= top_p) & (values.gather(-1, last)[:, 0] > values[:, -1])
    weights = probabilities * kept
    targets = uniforms.to(weights.dtype) * weights.sum(dim=-1)
    choice = (weights.cumsum(dim=-1) <= targets[:, None]).sum(dim=-1).clamp_max(width - 1)
    # A uniform landing on the rounding slack past the last kept token takes the last kept token.
    last_kept = kept.long().cumsum(dim=-1).argmax(dim=-1)
    choice = torch.minimum(choice, last_kept)
    tokens = indices.gather(-1, choice[:, None])[:, 0]
    if not bool(complete.all()):
        rows = (~complete).nonzero()[:, 0]
        tokens[rows] = nucleus_sample(
            scores[rows], uniforms[rows], temperature=temperature, top_k=top_k, top_p=top_p, max_candidates=vocab
        )
    return tokens


class SeededSampler:
    """A logits processor that samples each row's next token itself, from that row's own random stream, and leaves
    greedy decoding (`do_sample=False`) to pick it: the returned scores are 0 at the chosen token, -inf elsewhere.

    The distribution is `model.generate`'s temperature / top-k / top-p sampling (`nucleus_sample`); what changes is
    where the randomness comes from: row `i` draws its `t`-th token from `uniforms[i, t]`, seeded by `seeds[i]`, so
    a prompt's sample no longer depends on the other prompts of its batch, nor on the global RNG. Must come last
    among the logits processors.

    Args:
        seeds (`Sequence[int]`): One seed per row of the batch.
        num_steps (`int`): Tokens to sample at most (`max_new_tokens`).
        temperature (`float`): Sampling temperature.
        top_k (`int`, *optional*): Top-k cut (`None` or 0: none).
        top_p (`float`): Nucleus mass (1.0: none).
    """

    def __init__(self, seeds: Sequence[int], num_steps: int, *, temperature: float, top_k: int | None, top_p: float):
        self.uniforms = row_uniforms(seeds, num_steps)
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.step = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.step >= self.uniforms.shape[1]:
            raise RuntimeError(f"SeededSampler was built for {self.uniforms.shape[1]} steps and asked for one more.")
        if scores.shape[0] != self.uniforms.shape[0]:
            raise ValueError(f"SeededSampler has {self.uniforms.shape[0]} row seeds for a batch of {scores.shape[0]}.")
        tokens = nucleus_sample(
            scores,
            self.uniforms[:, self.step].to(scores.device),
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
        )
        self.step += 1
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(-1, tokens[:, None].to(scores.device), 0.0)

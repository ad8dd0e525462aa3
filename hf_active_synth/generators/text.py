"""LLM synthesis targeted by uncertainty: few-shot prompts seeded with the examples the ensemble is unsure about.

For each `SynthesisTarget`, `TextGenerationGenerator` writes `target.num_samples * request.candidates_per_sample`
prompts asking a causal LM for a new example of the target's label, *close to* the uncertain real examples of that
label (the target's own example plus a few of `request.seed_examples[label]`). It samples one answer per prompt,
parses it into a clean candidate (`generators.parsing`) and returns all candidates with provenance. Over-generating
is deliberate: the loop scores every candidate with the ensemble, filters, and keeps the highest-disagreement
survivors per target (the discrete form of L_G = E[Var(y|x)]).

Every method builds its prompts the same way: the random baselines (`target_strategy="random"`) get random real
examples as targets, so their prompts are the same few-shot prompts, shown random examples instead of uncertain ones,
and a difference between methods is the targeting, not the prompting. The zero-shot template
(`PromptTemplates.zero_shot`, the label alone) is only for a target with no example to show. A text model takes no
gradient guidance: `request.estimator` is not used here.

Prompts are written by `generators.text_prompts`, the model is loaded by `generators.text_model`; this module samples
and turns the parsed answers into candidates (`hf_active_synth.columns.build_candidates`).

Throughput (measured in `benchmarks/bench_text_generation.py`): batched on CPU, prefilling the prompts took about half
the time, the model's decoding steps a third, and transformers' top-p sampling (sorting the 49k-token vocabulary per
row and step, then `torch.multinomial` over it) the rest. The defaults decode large batches (`batch_size=64`) but
prefill them in buckets of similar lengths (`bucket_prefill`: little padding), prefill the prompt prefix a batch
shares (the chat template's system turn, the label's instruction) once and reuse its KV cache for every row
(`share_prompt_prefix`), batch the prompts of a label together (`sort_prompts`: longer shared prefixes when a request
takes several batches), and draw each token from the few top candidates (`sampler="seeded"`); see
`generators.text_model`. None of them changes what a prompt's row computes or the distribution it samples from.

Seeding: with `sampler="seeded"` (default) every candidate draws from its own random stream, seeded by (request seed,
cycle, target, candidate index), so a given seed gives the same candidates whatever the batch size, the sorting or the
other prompts of the batch (up to floating-point differences in the logits of differently shaped batches, which can
flip a draw that lands on a boundary; bf16 has more of them than float32). With `sampler="transformers"`, each
batch's `model.generate` call samples the whole batch from one stream seeded by (request seed, cycle, batch index):
candidates are reproducible for the same `batch_size` and `sort_prompts` only, as they were before the seeded
sampler. Greedy decoding (`generation_kwargs={"do_sample": False}`) depends on neither.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..columns import PROMPT_COLUMN
from .base import GenerationRequest
from .text_candidates import CandidateCollector, GenerationStats, check_generator_arguments, check_request
from .text_model import (
    TRANSFORMERS_DEFAULT_TOP_K,
    SeededSampler,
    SharedPrefix,
    bucketed_prefill_inputs,
    eos_token_ids,
    load_causal_lm,
    model_display_name,
    prefix_cache_blocker,
    seeded_sampler_blocker,
    shared_prefix_length,
)
from .text_model import split_gguf as _split_gguf  # noqa: F401  (importable from here, as before)
from .text_prompts import PromptTemplates, PromptWriter

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["PROMPT_COLUMN", "GenerationStats", "PromptTemplates", "TextGenerationGenerator"]

logger = logging.getLogger(__name__)

# A shared prefix shorter than this is prefilled with the rest of the prompt: a separate forward for a few tokens
# costs about what it saves.
MIN_SHARED_PREFIX_TOKENS = 8
SAMPLERS = ("seeded", "transformers")
# Appended to a candidate's seed material, so that its sampling stream is not the prompt writer's shot draw.
_SAMPLING_STREAM = 0x5EED


class TextGenerationGenerator:
    """Proposes text candidates with a causal LM, prompted with the ensemble's most uncertain real examples.

    The model is loaded lazily, on the first `generate` call: the constructor stores its arguments only.

    Args:
        model (`str`, `os.PathLike` or `PreTrainedModel`): A Hub id or local folder (loaded with
            `AutoModelForCausalLM`), the path of a `.gguf` file (split into folder + `gguf_file`), or an
            already-loaded causal LM.
        tokenizer (`str` or `PreTrainedTokenizerBase`, *optional*): Defaults to the tokenizer stored with `model`
            (and `gguf_file`). Required when `model` is an already-loaded model.
        gguf_file (`str`, *optional*): Name of the GGUF file inside the `model` folder (transformers dequantises it).
        templates (`PromptTemplates`, *optional*): Prompt templates; defaults to `PromptTemplates()`.
        label_descriptions (`Sequence[str]`, *optional*): What to call each class in prompts, indexed by label id
            (e.g. `["negative", "positive"]` or longer descriptions). Defaults to `request.label_names`.
        num_shots (`int`, defaults to 3): Seed examples per prompt: the target's example plus
            `num_shots - 1` drawn (seeded) from `request.seed_examples[label]`.
        batch_size (`int`, defaults to 64): Prompts per `model.generate` call: the text recipe's 64 prompts per cycle
            at once. On CPU, with bucketed prefill, 64 gave about 10 % more tokens/s than 32 and 30 % more than 16.
        max_new_tokens (`int`, defaults to 48): New tokens per sequence.
        temperature (`float`, defaults to 0.9): Sampling temperature.
        top_p (`float`, defaults to 0.95): Nucleus sampling mass.
        top_k (`int`, *optional*): Top-k cut before the nucleus (0: none). Default: the model's
            `generation_config.top_k`, else transformers' default 50 (what the generator has always sampled with).
        sampler (`str`, defaults to `"seeded"`): Who draws the tokens. `"seeded"`: `generators.text_model.
            SeededSampler`, each prompt from its own random stream (seeded by request seed, cycle, target and
            candidate index), so its sample does not depend on the other prompts of its batch, the batch size or the
            sorting; the same temperature / top-k / top-p distribution as `model.generate`, found from the top
            tokens instead of two sorts of the vocabulary (on CPU they took as long as the model's decoding steps).
            `"transformers"`: `model.generate`'s own sampling (`torch.multinomial`), one random stream per batch
            seeded by (request seed, cycle, batch index). `generation_kwargs` with another warper (`min_p`,
            `typical_p`, ...), beams or several sequences per prompt use `"transformers"` whatever this says.
        dtype (`torch.dtype` or `str`, *optional*): Load (or cast) the model in this dtype; default: the
            checkpoint's (float32 for the shipped GGUF, which transformers dequantises into plain `nn.Linear`
            layers). `torch.bfloat16` is 2-3x faster than float32 on CPUs with native bf16 (AVX512-BF16, AMX) and on
            GPUs, and slower on CPUs without it. An already-loaded model is cast in place.
        device (`str` or `torch.device`, *optional*): Move the model there; default: leave it where it is (CPU for
            models loaded here).
        use_chat_template (`bool`, *optional*): Default: use the chat template when the tokenizer has one, a plain
            prompt otherwise.
        max_example_chars (`int`, defaults to 400): Seed examples are cut to this many characters in prompts.
        max_seed_similarity (`float`, defaults to 0.9): A candidate whose word-level similarity ratio to any seed
            example its prompt showed is at least this is a copy, not a new sample, and is dropped (small models
            often echo their few-shot examples). 1.0 drops exact copies only (punctuation and case ignored).
        generation_kwargs (`dict`, *optional*): Extra `model.generate` arguments (`repetition_penalty`, `top_k`, ...);
            they override the generator's own (`do_sample=False` decodes greedily).
        model_kwargs (`dict`, *optional*): Extra `from_pretrained` arguments when loading `model`.
        name (`str`, *optional*): Goes into `synth_generator`; defaults to `"text_generation:<model name>"`.
        show_progress (`bool`, defaults to True): Show a tqdm bar over batches.
        sort_prompts (`bool`, defaults to True): Batch the prompts sorted by label, then token length (candidates still
            come back in request order): a batch's prompts then share a longer prefix (the label's instruction) and
            need less padding. With `sampler="transformers"` it changes which prompts share a batch's random stream,
            hence the sampled texts for a given seed (not their distribution); the seeded sampler's texts do not
            depend on it.
        share_prompt_prefix (`bool`, defaults to True): Prefill the token prefix all prompts of a batch share once and
            reuse its KV cache for every row (rows laid out `[prefix][padding][suffix]`, padding masked): the same
            computation as the plain left-padded batch, up to floating-point summation order. Used when the prefix
            has at least `MIN_SHARED_PREFIX_TOKENS` tokens and the model and `generation_kwargs` allow it
            (`generators.text_model.prefix_cache_blocker`); otherwise the plain path runs.
        bucket_prefill (`bool`, defaults to True): Prefill each batch's prompts in buckets of similar lengths, then
            decode the batch as one (`generators.text_model.bucketed_prefill_inputs`): a short prompt is not padded to
            the batch's longest in the prefill, where most of the padding's cost is. The same computation as the
            plain batch, up to floating-point summation order; under the same conditions as `share_prompt_prefix`.

    After `generate`, `last_stats_` (a `GenerationStats`) holds throughput and parsing counts.

    Example:

    ```python
    >>> from hf_active_synth.tasks.assets import smollm2_gguf_path
    >>> generator = TextGenerationGenerator(smollm2_gguf_path(), dtype=torch.bfloat16)
    >>> candidates = generator.generate(request)  # Dataset: text, label, provenance, synth_prompt
    >>> generator.last_stats_.tokens_per_second
    ```
    """

    def __init__(
        self,
        model: str | os.PathLike | PreTrainedModel,
        tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None = None,
        *,
        gguf_file: str | None = None,
        templates: PromptTemplates | None = None,
        label_descriptions: Sequence[str] | None = None,
        num_shots: int = 3,
        batch_size: int = 64,
        max_new_tokens: int = 48,
        temperature: float = 0.9,
        top_p: float = 0.95,
        top_k: int | None = None,
        sampler: str = "seeded",
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        use_chat_template: bool | None = None,
        max_example_chars: int = 400,
        max_seed_similarity: float = 0.9,
        generation_kwargs: Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        show_progress: bool = True,
        sort_prompts: bool = True,
        share_prompt_prefix: bool = True,
        bucket_prefill: bool = True,
    ):
        check_generator_arguments(
            "TextGenerationGenerator",
            temperature=temperature,
            top_p=top_p,
            max_seed_similarity=max_seed_similarity,
            templates=templates,
            num_shots=num_shots,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            max_example_chars=max_example_chars,
        )
        if sampler not in SAMPLERS:
            raise ValueError(f"TextGenerationGenerator: sampler must be one of {SAMPLERS}, got {sampler!r}.")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
            raise ValueError(f"TextGenerationGenerator: top_k must be a non-negative integer or None, got {top_k!r}.")
        self.model = model
        self.tokenizer = tokenizer
        self.gguf_file = gguf_file
        self.templates = templates
        self.label_descriptions = label_descriptions
        self.num_shots = num_shots
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.sampler = sampler
        self.dtype = dtype
        self.device = device
        self.use_chat_template = use_chat_template
        self.max_example_chars = max_example_chars
        self.max_seed_similarity = max_seed_similarity
        self.generation_kwargs = generation_kwargs
        self.model_kwargs = model_kwargs
        self.name = name if name is not None else f"text_generation:{model_display_name(model, gguf_file)}"
        self.show_progress = show_progress
        self.sort_prompts = sort_prompts
        self.share_prompt_prefix = share_prompt_prefix
        self.bucket_prefill = bucket_prefill

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        """Loads (or adopts) model and tokenizer once; sets `model_` and `tokenizer_`."""
        if hasattr(self, "model_"):
            return
        self.model_, self.tokenizer_ = load_causal_lm(
            self.model,
            self.tokenizer,
            gguf_file=self.gguf_file,
            dtype=self.dtype,
            device=self.device,
            model_kwargs=self.model_kwargs,
        )

    def _prompt_writer(self) -> PromptWriter:
        return PromptWriter(
            templates=self.templates or PromptTemplates(),
            tokenizer=self.tokenizer_,
            label_descriptions=self.label_descriptions,
            num_shots=self.num_shots,
            max_example_chars=self.max_example_chars,
            use_chat_template=self.use_chat_template,
        )

    # ------------------------------------------------------------------ generation
    def _generate_arguments(self) -> dict[str, Any]:
        """`model.generate` arguments besides the inputs: sampling settings, then `generation_kwargs` over them."""
        arguments = {
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "pad_token_id": self.tokenizer_.pad_token_id,
        }
        if self.top_k is not None:
            arguments["top_k"] = self.top_k
        return {**arguments, **dict(self.generation_kwargs or {})}

    def _seeded_sampler(self, arguments: dict[str, Any], row_seeds: Sequence[int]) -> dict[str, Any]:
        """`arguments` with `SeededSampler` drawing the tokens: its temperature / top-k / top-p taken out of them
        (top-k resolved as `model.generate` would), greedy selection of the token it chose."""
        from transformers import LogitsProcessorList

        arguments = dict(arguments)
        top_k = arguments.pop("top_k", None)
        if top_k is None:
            top_k = getattr(self.model_.generation_config, "top_k", None)
        sampler = SeededSampler(
            row_seeds,
            arguments["max_new_tokens"],
            temperature=arguments.pop("temperature", None) or 1.0,
            top_k=TRANSFORMERS_DEFAULT_TOP_K if top_k is None else top_k,
            top_p=arguments.pop("top_p", None) or 1.0,
        )
        arguments["do_sample"] = False
        arguments["logits_processor"] = LogitsProcessorList([*(arguments.get("logits_processor") or []), sampler])
        return arguments

    def _shared_prefix(
        self, token_ids: list[list[int]], request_prefix: int, prefixes: dict[tuple[int, ...], SharedPrefix]
    ) -> SharedPrefix | None:
        """The prefilled prefix the batch `token_ids` shares, or `None` for the plain path.

        A batch of several prompts uses the prefix they share; a single prompt uses the `request_prefix` tokens all
        prompts of the request share (its own prefix would be reused by nothing). `prefixes` memoises the prefills of
        one `generate` call: batches often share one prefix (the system turn, or a label's instruction).
        """
        length = shared_prefix_length(token_ids) if len(token_ids) > 1 else request_prefix
        if length < MIN_SHARED_PREFIX_TOKENS:
            return None
        key = tuple(token_ids[0][:length])
        if key not in prefixes:
            prefixes[key] = SharedPrefix.prefill(self.model_, key)
        return prefixes[key]

    @torch.no_grad()
    def _sample(
        self,
        encodings: Mapping[str, Sequence[Sequence[int]]],
        seed: int,
        prefix: SharedPrefix | None = None,
        row_seeds: Sequence[int] | None = None,
        bucketed: bool = False,
    ) -> tuple[list[str], int, int]:
        """Samples one continuation per prompt. Returns (decoded texts, prompt tokens, generated tokens).

        Args:
            encodings (`Mapping[str, Sequence[Sequence[int]]]`): The batch's prompts as `generate` tokenized them, one
                unpadded row per prompt: `input_ids` and the tokenizer's other outputs (`attention_mask`, ...), padded
                here, so that no prompt is tokenized twice.
            seed (`int`): Seeds `model.generate`'s own sampling (one stream for the batch).
            prefix (`SharedPrefix`, *optional*): A prefilled prefix every prompt starts with: rows are laid out
                `[prefix][padding][suffix]` and its KV cache is reused; otherwise the prompts are left-padded.
            row_seeds (`Sequence[int]`, *optional*): One seed per prompt: `SeededSampler` draws the tokens (`seed` is
                then unused).
            bucketed (`bool`, defaults to False): Prefill the prompts in buckets of similar lengths
                (`generators.text_model.bucketed_prefill_inputs`) before `generate` decodes the whole batch.
        """
        tokenizer, model = self.tokenizer_, self.model_
        token_ids = encodings["input_ids"]
        if bucketed:
            inputs = bucketed_prefill_inputs(model, token_ids, tokenizer.pad_token_id, prefix)
        elif prefix is not None:
            inputs = prefix.batch_inputs(token_ids, tokenizer.pad_token_id)
        else:
            # What `tokenizer(prompts, padding=True, padding_side="left", ...)` returns, from the ids already computed.
            inputs = dict(tokenizer.pad(dict(encodings), padding=True, padding_side="left", return_tensors="pt"))
        inputs = {name: value.to(model.device) if torch.is_tensor(value) else value for name, value in inputs.items()}
        arguments = self._generate_arguments()
        if row_seeds is not None:
            arguments = self._seeded_sampler(arguments, row_seeds)
        eos_ids = eos_token_ids(model, tokenizer)
        devices = [model.device] if model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            output = model.generate(**inputs, **arguments)
        new_tokens = output[:, inputs["input_ids"].shape[1] :].cpu()
        is_eos = (
            torch.isin(new_tokens, torch.tensor(eos_ids))
            if eos_ids
            else torch.zeros_like(new_tokens, dtype=torch.bool)
        )
        # Tokens up to and including the first eos; everything after it is padding.
        lengths = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, new_tokens.shape[1])
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return texts, int(inputs["attention_mask"].sum()), int(lengths.sum())

    def _row_seeds(self, request: GenerationRequest, jobs: Sequence[Any]) -> list[int] | None:
        """One sampling seed per job, from (request seed, cycle, target, candidate index), or `None` when
        `model.generate` samples itself (`sampler="transformers"`, greedy decoding, or arguments only it handles)."""
        if self.sampler != "seeded":
            return None
        blocker = seeded_sampler_blocker(self._generate_arguments())
        if blocker is not None:
            logger.info("Sampling with model.generate, not SeededSampler: %s.", blocker)
            return None
        seeds, counts = [], {}
        for job in jobs:
            index = counts[job.target.target_id] = counts.get(job.target.target_id, -1) + 1
            entropy = [request.seed, request.cycle, job.target.target_id, index, _SAMPLING_STREAM]
            seeds.append(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        return seeds

    def generate(self, request: GenerationRequest) -> Dataset:
        """Over-generates `target.num_samples * request.candidates_per_sample` candidates per target.

        Args:
            request (`GenerationRequest`): Targets, label names, seed examples, cycle and seed. Seed examples may be
                plain strings, `(example_id, text)` pairs or `SynthesisTarget`s (their ids go into
                `synth_seed_example_ids`).

        Returns:
            `Dataset`: one row per parsed candidate with `request.input_column` (text), `request.label_column`
            (int), the provenance columns of `generators.base` and `synth_prompt`, in request order whatever the
            batching. Sequences that parse into nothing usable are dropped (counted in `last_stats_.num_empty`), so
            there can be fewer rows than requested.
        """
        check_request(request)
        self._load()
        writer = self._prompt_writer()
        jobs = writer.jobs(request)
        collector = CandidateCollector(request, writer, jobs, self.max_seed_similarity)
        # Every prompt is tokenized here, once: for the sorting, the shared prefixes and `_sample`'s inputs.
        encodings = dict(self.tokenizer_([job.prompt for job in jobs], add_special_tokens=False)) if jobs else {}
        token_ids = encodings.get("input_ids", [])
        order = list(range(len(jobs)))
        if self.sort_prompts:
            # Same label together (its prompts share the instruction: a longer shared prefix), then by length (less
            # padding). Stable: equal keys keep request order.
            order.sort(key=lambda index: (jobs[index].target.label, len(token_ids[index])))
        row_seeds = self._row_seeds(request, jobs)
        blocker = None
        if self.share_prompt_prefix or self.bucket_prefill:
            blocker = prefix_cache_blocker(self.model_, self._generate_arguments())
        if blocker is not None:
            logger.info("Prefilling each batch at once, without a shared prefix or buckets: %s.", blocker)
        prefixes: dict[tuple[int, ...], SharedPrefix] = {}
        request_prefix = shared_prefix_length(token_ids)
        outputs: list[str | None] = [None] * len(jobs)
        prompt_tokens = generated_tokens = prefix_tokens = 0
        seconds = 0.0
        batches = range(0, len(jobs), self.batch_size)
        for batch_index, start in enumerate(tqdm(batches, desc="Generating text", disable=not self.show_progress)):
            batch = order[start : start + self.batch_size]
            seed = int(np.random.SeedSequence([request.seed, request.cycle, batch_index]).generate_state(1)[0])
            started = time.perf_counter()
            prefix = None
            if self.share_prompt_prefix and blocker is None:
                prefix = self._shared_prefix([token_ids[i] for i in batch], request_prefix, prefixes)
            texts, batch_prompt_tokens, batch_generated = self._sample(
                {name: [column[i] for i in batch] for name, column in encodings.items()},
                seed,
                prefix,
                None if row_seeds is None else [row_seeds[i] for i in batch],
                bucketed=self.bucket_prefill and blocker is None and len(batch) > 1,
            )
            seconds += time.perf_counter() - started
            prompt_tokens += batch_prompt_tokens
            generated_tokens += batch_generated
            if prefix is not None:
                # The prefix sits in every row's attention mask but was prefilled once for the whole call.
                prefix_tokens += len(prefix.token_ids) * len(batch)
            for index, text in zip(batch, texts, strict=True):
                outputs[index] = text
        for job, text in zip(jobs, outputs, strict=True):
            collector.add(job, text)
        prefix_tokens -= sum(len(prefix) for prefix in prefixes)  # each distinct prefix was prefilled once
        self.last_stats_ = GenerationStats(
            num_sequences=len(jobs),
            num_prompt_tokens=prompt_tokens,
            num_generated_tokens=generated_tokens,
            seconds=seconds,
            batch_size=self.batch_size,
            num_prefix_tokens_reused=prefix_tokens,
            **collector.counts(),
        )
        return collector.dataset(self.name)

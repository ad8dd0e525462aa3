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
"""

from __future__ import annotations

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
from .text_model import eos_token_ids, load_causal_lm, model_display_name
from .text_model import split_gguf as _split_gguf  # noqa: F401  (importable from here, as before)
from .text_prompts import PromptTemplates, PromptWriter

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["PROMPT_COLUMN", "GenerationStats", "PromptTemplates", "TextGenerationGenerator"]


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
        batch_size (`int`, defaults to 16): Prompts per `model.generate` call (left-padded).
        max_new_tokens (`int`, defaults to 48): New tokens per sequence.
        temperature (`float`, defaults to 0.9): Sampling temperature.
        top_p (`float`, defaults to 0.95): Nucleus sampling mass.
        dtype (`torch.dtype` or `str`, *optional*): Load (or cast) the model in this dtype; `torch.bfloat16` about
            doubles CPU throughput on CPUs with bf16 support. An already-loaded model is cast in place.
        device (`str` or `torch.device`, *optional*): Move the model there; default: leave it where it is (CPU for
            models loaded here).
        use_chat_template (`bool`, *optional*): Default: use the chat template when the tokenizer has one, a plain
            prompt otherwise.
        max_example_chars (`int`, defaults to 400): Seed examples are cut to this many characters in prompts.
        max_seed_similarity (`float`, defaults to 0.9): A candidate whose word-level similarity ratio to any seed
            example its prompt showed is at least this is a copy, not a new sample, and is dropped (small models
            often echo their few-shot examples). 1.0 drops exact copies only (punctuation and case ignored).
        generation_kwargs (`dict`, *optional*): Extra `model.generate` arguments (`repetition_penalty`, `top_k`, ...).
        model_kwargs (`dict`, *optional*): Extra `from_pretrained` arguments when loading `model`.
        name (`str`, *optional*): Goes into `synth_generator`; defaults to `"text_generation:<model name>"`.
        show_progress (`bool`, defaults to True): Show a tqdm bar over batches.

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
        batch_size: int = 16,
        max_new_tokens: int = 48,
        temperature: float = 0.9,
        top_p: float = 0.95,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        use_chat_template: bool | None = None,
        max_example_chars: int = 400,
        max_seed_similarity: float = 0.9,
        generation_kwargs: Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        show_progress: bool = True,
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
        self.dtype = dtype
        self.device = device
        self.use_chat_template = use_chat_template
        self.max_example_chars = max_example_chars
        self.max_seed_similarity = max_seed_similarity
        self.generation_kwargs = generation_kwargs
        self.model_kwargs = model_kwargs
        self.name = name if name is not None else f"text_generation:{model_display_name(model, gguf_file)}"
        self.show_progress = show_progress

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
    @torch.no_grad()
    def _sample(self, prompts: list[str], seed: int) -> tuple[list[str], int, int]:
        """Samples one continuation per prompt. Returns (decoded texts, prompt tokens, generated tokens)."""
        tokenizer, model = self.tokenizer_, self.model_
        encoded = tokenizer(
            prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
        ).to(model.device)
        eos_ids = eos_token_ids(model, tokenizer)
        devices = [model.device] if model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            output = model.generate(
                **encoded,
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                **dict(self.generation_kwargs or {}),
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :].cpu()
        is_eos = (
            torch.isin(new_tokens, torch.tensor(eos_ids))
            if eos_ids
            else torch.zeros_like(new_tokens, dtype=torch.bool)
        )
        # Tokens up to and including the first eos; everything after it is padding.
        lengths = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, new_tokens.shape[1])
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return texts, int(encoded["attention_mask"].sum()), int(lengths.sum())

    def generate(self, request: GenerationRequest) -> Dataset:
        """Over-generates `target.num_samples * request.candidates_per_sample` candidates per target.

        Args:
            request (`GenerationRequest`): Targets, label names, seed examples, cycle and seed. Seed examples may be
                plain strings, `(example_id, text)` pairs or `SynthesisTarget`s (their ids go into
                `synth_seed_example_ids`).

        Returns:
            `Dataset`: one row per parsed candidate with `request.input_column` (text), `request.label_column`
            (int), the provenance columns of `generators.base` and `synth_prompt`. Sequences that parse into
            nothing usable are dropped (counted in `last_stats_.num_empty`), so there can be fewer rows than
            requested.
        """
        check_request(request)
        self._load()
        writer = self._prompt_writer()
        jobs = writer.jobs(request)
        collector = CandidateCollector(request, writer, jobs, self.max_seed_similarity)
        prompt_tokens = generated_tokens = 0
        seconds = 0.0
        batches = range(0, len(jobs), self.batch_size)
        for batch_index, start in enumerate(tqdm(batches, desc="Generating text", disable=not self.show_progress)):
            batch = jobs[start : start + self.batch_size]
            seed = int(np.random.SeedSequence([request.seed, request.cycle, batch_index]).generate_state(1)[0])
            started = time.perf_counter()
            outputs, batch_prompt_tokens, batch_generated = self._sample([job.prompt for job in batch], seed)
            seconds += time.perf_counter() - started
            prompt_tokens += batch_prompt_tokens
            generated_tokens += batch_generated
            for job, output in zip(batch, outputs, strict=True):
                collector.add(job, output)
        self.last_stats_ = GenerationStats(
            num_sequences=len(jobs),
            num_prompt_tokens=prompt_tokens,
            num_generated_tokens=generated_tokens,
            seconds=seconds,
            batch_size=self.batch_size,
            **collector.counts(),
        )
        return collector.dataset(self.name)

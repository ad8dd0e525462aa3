"""LLM synthesis targeted by uncertainty: few-shot prompts seeded with the examples the ensemble is unsure about.

For each `SynthesisTarget`, `TextGenerationGenerator` writes `target.num_samples * request.candidates_per_sample`
prompts asking a causal LM for a new example of the target's label, *close to* the uncertain real examples of that
label (the target's own example plus a few of `request.seed_examples[label]`). It samples one answer per prompt,
parses it into a clean candidate (`generators.parsing`) and returns all candidates with provenance. Over-generating
is deliberate: the loop scores every candidate with the ensemble, filters, and keeps the highest-disagreement
survivors per target (the discrete form of L_G = E[Var(y|x)]).

The untargeted baseline (`request.targeted=False`) uses zero-shot prompts that name only the label: no seed
examples, so nothing the ensemble found uncertain leaks into the prompt. Zero-shot prompts also produce less
realistic text than few-shot ones; to separate "targeting" from "few-shot prompting", run the *targeted* generator
with a random acquisition function (random real examples as shots) as a second baseline.
"""

from __future__ import annotations

import logging
import os
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .base import (
    CYCLE_COLUMN,
    GENERATOR_COLUMN,
    SEED_IDS_COLUMN,
    TARGET_ID_COLUMN,
    TARGET_LABEL_COLUMN,
    GenerationRequest,
    SynthesisTarget,
)
from .parsing import parse_generation

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["PROMPT_COLUMN", "GenerationStats", "PromptTemplates", "TextGenerationGenerator"]

logger = logging.getLogger(__name__)

PROMPT_COLUMN = "synth_prompt"
"""Extra provenance column: the exact prompt string the model was given (after the chat template)."""

_PLACEHOLDERS = frozenset({"label", "domain", "examples", "num_examples"})


@dataclass
class PromptTemplates:
    """The prompts `TextGenerationGenerator` writes, as `str.format` templates.

    Placeholders: `{label}` (the label's name or description), `{domain}` (what kind of text, e.g. "movie review"),
    `{examples}` (the seed examples, each rendered with `example` and joined by newlines) and `{num_examples}`.

    Args:
        targeted (`str`): User prompt for targeted requests; should show `{examples}` and ask for one new text of
            `{label}` close to them.
        untargeted (`str`): User prompt for the untargeted baseline; must not use `{examples}`.
        example (`str`, defaults to `'- "{text}"'`): How one seed example is rendered (placeholder `{text}`).
        system (`str`, *optional*): System message for chat models (and the first paragraph of plain prompts).
            `None` keeps the model's own default system prompt.
        response_prefix (`str`, defaults to `""`): Appended after the generation prompt, so the model continues it
            (e.g. `'"'` or `"Review:"` for base models without a chat template).
        domain (`str`, defaults to `"movie review"`): Fills `{domain}`.
    """

    targeted: str = (
        "Here are {label} {domain}s that are subtle and easy to misread:\n{examples}\n"
        "Write one new {label} {domain} similar to these. Reply with the {domain} only."
    )
    untargeted: str = "Write one new {label} {domain}. Reply with the {domain} only."
    example: str = '- "{text}"'
    system: str | None = None
    response_prefix: str = ""
    domain: str = "movie review"

    def __post_init__(self):
        for name in ("targeted", "untargeted", "system"):
            template = getattr(self, name)
            if template is None:
                continue
            unknown = _fields(template) - _PLACEHOLDERS
            if unknown:
                raise ValueError(
                    f"PromptTemplates.{name} uses unknown placeholder(s) {sorted(unknown)}; the allowed ones are "
                    f"{sorted(_PLACEHOLDERS)}. Escape literal braces as '{{{{' and '}}}}'."
                )
        if "examples" in _fields(self.untargeted):
            raise ValueError(
                "PromptTemplates.untargeted must not use {examples}: the untargeted baseline ignores seed examples."
            )
        if _fields(self.example) != {"text"}:
            raise ValueError("PromptTemplates.example must use exactly the placeholder {text}, e.g. '- \"{text}\"'.")

    def render(self, label: str, examples: Sequence[str], targeted: bool) -> str:
        """The user prompt for one candidate."""
        rendered_examples = "\n".join(self.example.format(text=text) for text in examples)
        template = self.targeted if targeted else self.untargeted
        return template.format(label=label, domain=self.domain, examples=rendered_examples, num_examples=len(examples))


def _fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise ValueError(f"Invalid prompt template {template!r}: {error}.") from error


@dataclass(frozen=True)
class GenerationStats:
    """Throughput and parsing counts of the last `generate` call (`TextGenerationGenerator.last_stats_`).

    Args:
        num_sequences (`int`): Sequences sampled (one per prompt).
        num_prompt_tokens (`int`): Prompt tokens fed to the model (without padding).
        num_generated_tokens (`int`): New tokens sampled, up to and including the first end-of-sequence token.
        seconds (`float`): Wall-clock time spent in `model.generate`.
        num_candidates (`int`): Candidates returned (sequences that parsed into a usable text).
        num_empty (`int`): Sequences that gave no usable text.
        num_junk_lines (`int`): Lines dropped while parsing (preambles, chatter, bare labels, ...).
        batch_size (`int`): Sequences per `generate` call.
    """

    num_sequences: int = 0
    num_prompt_tokens: int = 0
    num_generated_tokens: int = 0
    seconds: float = 0.0
    num_candidates: int = 0
    num_empty: int = 0
    num_junk_lines: int = 0
    batch_size: int = 0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of `generate` time (0 when nothing was generated)."""
        return self.num_generated_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Job:
    target: SynthesisTarget
    prompt: str
    seed_ids: list[int] = field(default_factory=list)


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
        num_shots (`int`, defaults to 3): Seed examples per targeted prompt: the target's example plus
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
        generation_kwargs (`dict`, *optional*): Extra `model.generate` arguments (`repetition_penalty`, `top_k`, ...).
        model_kwargs (`dict`, *optional*): Extra `from_pretrained` arguments when loading `model`.
        name (`str`, *optional*): Goes into `synth_generator`; defaults to `"text_generation:<model name>"`.
        show_progress (`bool`, defaults to True): Show a tqdm bar over batches.

    After `generate`, `last_stats_` (a `GenerationStats`) holds throughput and parsing counts.

    Example:

    ```python
    >>> from hf_active_synth.text_data import smollm2_gguf_path
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
        generation_kwargs: Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        show_progress: bool = True,
    ):
        for argument, value in (
            ("num_shots", num_shots),
            ("batch_size", batch_size),
            ("max_new_tokens", max_new_tokens),
            ("max_example_chars", max_example_chars),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TextGenerationGenerator: {argument} must be a positive integer, got {value!r}.")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (sampling is always on), got {temperature}.")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
        if templates is not None and not isinstance(templates, PromptTemplates):
            raise TypeError(f"templates must be a PromptTemplates, got {type(templates).__name__}.")
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
        self.generation_kwargs = generation_kwargs
        self.model_kwargs = model_kwargs
        self.name = name if name is not None else f"text_generation:{_model_name(model, gguf_file)}"
        self.show_progress = show_progress

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        """Loads (or adopts) model and tokenizer once; sets `model_` and `tokenizer_`."""
        if hasattr(self, "model_"):
            return
        from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

        dtype = getattr(torch, self.dtype) if isinstance(self.dtype, str) else self.dtype
        source, gguf_file = _split_gguf(self.model, self.gguf_file)
        if isinstance(self.model, PreTrainedModel):
            model = self.model
            if dtype is not None:
                model = model.to(dtype)
        elif isinstance(self.model, (str, os.PathLike)):
            kwargs = dict(self.model_kwargs or {})
            if gguf_file is not None:
                kwargs["gguf_file"] = gguf_file
            if dtype is not None:
                kwargs["dtype"] = dtype
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        else:
            raise TypeError(
                "TextGenerationGenerator(model=...) must be a Hub id, a local folder, a .gguf path or a loaded "
                f"transformers PreTrainedModel, got {type(self.model).__name__}."
            )
        if self.tokenizer is None:
            if isinstance(self.model, PreTrainedModel):
                raise ValueError(
                    "TextGenerationGenerator got an already-loaded model but no tokenizer: pass tokenizer=..."
                )
            tokenizer = AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}))
        elif isinstance(self.tokenizer, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
        else:
            tokenizer = self.tokenizer
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token is None:
                raise ValueError("The tokenizer has neither a pad nor an eos token: set tokenizer.pad_token first.")
            logger.info("Tokenizer has no pad token; using its eos token %r for (left) padding.", tokenizer.eos_token)
            tokenizer.pad_token = tokenizer.eos_token
        if self.device is not None:
            model = model.to(self.device)
        self.model_ = model.eval()
        self.tokenizer_ = tokenizer

    # ------------------------------------------------------------------ prompts
    def _label_name(self, label: int, request: GenerationRequest) -> str:
        names = self.label_descriptions if self.label_descriptions is not None else request.label_names
        if names is None:
            raise ValueError(
                "TextGenerationGenerator needs class names for its prompts: set request.label_names (the loop takes "
                "them from the label column's ClassLabel) or pass label_descriptions=[...]."
            )
        if not 0 <= label < len(names):
            raise ValueError(f"Target label {label} has no name: label names are {list(names)}.")
        return str(names[label])

    def _format_prompt(self, user_prompt: str) -> str:
        templates = self.templates or PromptTemplates()
        tokenizer = self.tokenizer_
        use_chat = self.use_chat_template
        has_template = getattr(tokenizer, "chat_template", None) is not None
        if use_chat is None:
            use_chat = has_template
        elif use_chat and not has_template:
            raise ValueError("use_chat_template=True but the tokenizer has no chat template; pass False or None.")
        if use_chat:
            messages = [{"role": "user", "content": user_prompt}]
            if templates.system is not None:
                messages.insert(0, {"role": "system", "content": templates.system})
            prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            prompt = f"{templates.system}\n\n{user_prompt}\n" if templates.system else f"{user_prompt}\n"
        return prompt + templates.response_prefix

    def _shots(self, target: SynthesisTarget, request: GenerationRequest, index: int) -> tuple[list[str], list[int]]:
        """Seed examples for candidate `index` of `target`: drawn extras first, the target's own example last."""
        if not isinstance(target.example, str):
            raise TypeError(
                f"TextGenerationGenerator needs text targets; target {target.target_id} has an example of type "
                f"{type(target.example).__name__}."
            )
        pool = [
            (seed_id, text)
            for seed_id, text in (_seed_entry(entry) for entry in request.seed_examples.get(target.label, []))
            if text.strip() != target.example.strip()
        ]
        extra = min(self.num_shots - 1, len(pool))
        rng = np.random.default_rng([request.seed, request.cycle, target.target_id, index])
        chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=extra, replace=False))] if extra else []
        chosen.append((target.example_id, target.example))
        texts = [text.strip()[: self.max_example_chars] for _, text in chosen]
        return texts, [seed_id for seed_id, _ in chosen if seed_id is not None]

    def _jobs(self, request: GenerationRequest) -> list[_Job]:
        templates = self.templates or PromptTemplates()
        jobs = []
        for target in request.targets:
            label_name = self._label_name(target.label, request)
            for index in range(target.num_samples * request.candidates_per_sample):
                if request.targeted:
                    examples, seed_ids = self._shots(target, request, index)
                else:
                    examples, seed_ids = [], []
                user_prompt = templates.render(label_name, examples, targeted=request.targeted)
                jobs.append(_Job(target=target, prompt=self._format_prompt(user_prompt), seed_ids=seed_ids))
        return jobs

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def _sample(self, prompts: list[str], seed: int) -> tuple[list[str], int, int]:
        """Samples one continuation per prompt. Returns (decoded texts, prompt tokens, generated tokens)."""
        tokenizer, model = self.tokenizer_, self.model_
        encoded = tokenizer(
            prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
        ).to(model.device)
        eos_ids = _eos_ids(model, tokenizer)
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
        from datasets import Dataset, Features, Value

        try:
            from datasets import List
        except ImportError:  # datasets < 4
            from datasets import Sequence as List

        _check_request(request)
        self._load()
        jobs = self._jobs(request)
        columns: dict[str, list] = {
            request.input_column: [],
            request.label_column: [],
            CYCLE_COLUMN: [],
            GENERATOR_COLUMN: [],
            TARGET_ID_COLUMN: [],
            TARGET_LABEL_COLUMN: [],
            SEED_IDS_COLUMN: [],
            PROMPT_COLUMN: [],
        }
        # Words the parser treats as bare labels / label annotations: the prompt's names and the dataset's.
        label_names = [self._label_name(label, request) for label in sorted({job.target.label for job in jobs})]
        label_names += [str(name) for name in request.label_names or []]
        prompt_tokens = generated_tokens = num_empty = num_junk = 0
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
                parsed = parse_generation(output, label_names=label_names, max_texts=1)
                num_junk += parsed.num_junk
                if parsed.is_empty:
                    num_empty += 1
                    continue
                columns[request.input_column].append(parsed.texts[0])
                columns[request.label_column].append(job.target.label)
                columns[CYCLE_COLUMN].append(request.cycle)
                columns[GENERATOR_COLUMN].append(self.name)
                columns[TARGET_ID_COLUMN].append(job.target.target_id)
                columns[TARGET_LABEL_COLUMN].append(job.target.label)
                columns[SEED_IDS_COLUMN].append(job.seed_ids)
                columns[PROMPT_COLUMN].append(job.prompt)
        self.last_stats_ = GenerationStats(
            num_sequences=len(jobs),
            num_prompt_tokens=prompt_tokens,
            num_generated_tokens=generated_tokens,
            seconds=seconds,
            num_candidates=len(columns[request.input_column]),
            num_empty=num_empty,
            num_junk_lines=num_junk,
            batch_size=self.batch_size,
        )
        features = Features(
            {
                request.input_column: Value("string"),
                request.label_column: Value("int64"),
                CYCLE_COLUMN: Value("int64"),
                GENERATOR_COLUMN: Value("string"),
                TARGET_ID_COLUMN: Value("int64"),
                TARGET_LABEL_COLUMN: Value("int64"),
                SEED_IDS_COLUMN: List(Value("int64")),
                PROMPT_COLUMN: Value("string"),
            }
        )
        return Dataset.from_dict(columns, features=features)


def _check_request(request: GenerationRequest) -> None:
    if not isinstance(request, GenerationRequest):
        raise TypeError(f"generate expects a GenerationRequest, got {type(request).__name__}.")
    if not isinstance(request.seed, int) or request.seed < 0:
        raise ValueError(f"request.seed must be a non-negative integer, got {request.seed!r}.")
    if request.candidates_per_sample < 1:
        raise ValueError(f"request.candidates_per_sample must be >= 1, got {request.candidates_per_sample}.")
    if request.input_column == request.label_column:
        raise ValueError(f"input_column and label_column are both {request.input_column!r}; they must differ.")
    for column in (request.input_column, request.label_column):
        if column.startswith("synth_"):
            raise ValueError(f"Column name {column!r} collides with the provenance columns (synth_*); rename it.")
    for target in request.targets:
        if target.num_samples < 0:
            raise ValueError(f"Target {target.target_id} asks for {target.num_samples} samples; use >= 0.")


def _seed_entry(entry: Any) -> tuple[int | None, str]:
    """A seed example as (id or None, text): accepts str, (id, text) pairs and SynthesisTarget-like objects."""
    if isinstance(entry, str):
        return None, entry
    if isinstance(entry, SynthesisTarget) or (hasattr(entry, "example_id") and hasattr(entry, "example")):
        seed_id, text = entry.example_id, entry.example
    elif isinstance(entry, (tuple, list)) and len(entry) == 2:
        seed_id, text = entry
    else:
        raise TypeError(
            "request.seed_examples values must be lists of str, (example_id, text) pairs or SynthesisTargets; "
            f"got an entry of type {type(entry).__name__}."
        )
    if not isinstance(text, str):
        raise TypeError(f"Seed example {seed_id} is a {type(text).__name__}; the text generator needs str inputs.")
    return int(seed_id), text


def _split_gguf(model: Any, gguf_file: str | None) -> tuple[Any, str | None]:
    """`path/to/model.gguf` → (`path/to`, `model.gguf`); anything else is returned unchanged."""
    if isinstance(model, (str, os.PathLike)) and gguf_file is None and str(model).endswith(".gguf"):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist.")
        return str(path.parent), path.name
    return (str(model) if isinstance(model, os.PathLike) else model), gguf_file


def _model_name(model: Any, gguf_file: str | None) -> str:
    if gguf_file is not None:
        return Path(gguf_file).name
    if isinstance(model, (str, os.PathLike)):
        path = str(model).rstrip("/")
        return Path(path).name if os.path.isabs(path) or os.path.exists(path) else path
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", "") or ""
    return Path(name).name if name else type(model).__name__


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(value) for value in (eos if isinstance(eos, (list, tuple)) else [eos])]

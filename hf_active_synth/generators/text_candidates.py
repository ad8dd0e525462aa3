"""What both text generators share after sampling: request checks, parsing outputs into candidates, and stats.

`TextGenerationGenerator` (a causal LM in process) and `EndpointTextGenerator` (a serving engine behind an
OpenAI-compatible or TGI endpoint) write the same prompts (`generators.text_prompts`) and differ only in how they get
one raw output per prompt. Everything after that is here, so that both return exactly the same candidate structure:
`CandidateCollector` parses each output (`generators.parsing`), drops copies of the prompt's seed examples, counts
what it dropped and builds the candidate `Dataset` (`hf_active_synth.columns.build_candidates`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..columns import PROMPT_COLUMN, build_candidates
from .base import GenerationRequest
from .parsing import parse_generation
from .text_prompts import PromptJob, PromptTemplates, PromptWriter, seed_similarity

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["CandidateCollector", "GenerationStats", "check_generator_arguments", "check_request"]


@dataclass(frozen=True)
class GenerationStats:
    """Throughput and parsing counts of the last `generate` call of a text generator (`last_stats_`).

    Args:
        num_sequences (`int`): Sequences sampled (one per prompt).
        num_prompt_tokens (`int`): Prompt tokens fed to the model (without padding).
        num_generated_tokens (`int`): New tokens sampled, up to and including the first end-of-sequence token.
        seconds (`float`): Wall-clock time spent sampling (`model.generate`, or waiting for the endpoint).
        num_candidates (`int`): Candidates returned (sequences that parsed into a usable text).
        num_empty (`int`): Sequences that gave no usable text.
        num_junk_lines (`int`): Lines dropped while parsing (preambles, chatter, bare labels, ...).
        batch_size (`int`): Sequences per `generate` call (1 for an endpoint: one prompt per request).
        num_seed_copies (`int`): Sequences dropped because they (nearly) copied a seed example of their prompt.
        num_prefix_tokens_reused (`int`): Prompt tokens not prefilled again because their batch shared them as a
            prompt prefix (`TextGenerationGenerator(share_prompt_prefix=True)`); counted in `num_prompt_tokens` too.

    `to_dict` adds the rates `tokens_per_second` and `candidates_per_second`: the cycle history records all of it.
    """

    num_sequences: int = 0
    num_prompt_tokens: int = 0
    num_generated_tokens: int = 0
    seconds: float = 0.0
    num_candidates: int = 0
    num_empty: int = 0
    num_junk_lines: int = 0
    batch_size: int = 0
    num_seed_copies: int = 0
    num_prefix_tokens_reused: int = 0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of sampling time (0 when nothing was generated)."""
        return self.num_generated_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def candidates_per_second(self) -> float:
        """Candidates returned per second of sampling time (0 when no time was spent)."""
        return self.num_candidates / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Every field and rate, as the cycle history records it (`CycleResult.generation_stats`)."""
        rates = {"tokens_per_second": self.tokens_per_second, "candidates_per_second": self.candidates_per_second}
        return {**asdict(self), **{name: round(value, 4) for name, value in rates.items()}}


class CandidateCollector:
    """Turns one raw output per prompt job into candidates, counting what it drops.

    Args:
        request (`GenerationRequest`): The request the jobs were written for.
        writer (`PromptWriter`): The writer of the jobs (its label names are the parser's bare-label words).
        jobs (`list[PromptJob]`): The request's prompt jobs.
        max_seed_similarity (`float`): An output at least this similar to a seed example of its prompt is a copy.
    """

    def __init__(
        self, request: GenerationRequest, writer: PromptWriter, jobs: list[PromptJob], max_seed_similarity: float
    ):
        self.request = request
        self.max_seed_similarity = max_seed_similarity
        # Words the parser treats as bare labels / label annotations: the prompt's names and the dataset's.
        self.label_names = [writer.label_name(label, request) for label in sorted({job.target.label for job in jobs})]
        self.label_names += [str(name) for name in request.label_names or []]
        self.kept: list[tuple[PromptJob, str]] = []
        self.num_empty = self.num_junk = self.num_seed_copies = 0

    def add(self, job: PromptJob, output: str) -> None:
        """Parses `output` (the raw answer to `job.prompt`) and keeps its first clean text, unless it copies a seed."""
        parsed = parse_generation(output, label_names=self.label_names, max_texts=1)
        self.num_junk += parsed.num_junk
        if parsed.is_empty:
            self.num_empty += 1
        elif seed_similarity(parsed.texts[0], job.examples) >= self.max_seed_similarity:
            self.num_seed_copies += 1
        else:
            self.kept.append((job, parsed.texts[0]))

    def counts(self) -> dict[str, int]:
        """The parsing counts of `GenerationStats`."""
        return {
            "num_candidates": len(self.kept),
            "num_empty": self.num_empty,
            "num_junk_lines": self.num_junk,
            "num_seed_copies": self.num_seed_copies,
        }

    def dataset(self, generator_name: str) -> Dataset:
        """The kept candidates with provenance: input and label columns, `synth_*` columns and `synth_prompt`."""
        from datasets import Value

        request, kept = self.request, self.kept
        return build_candidates(
            {
                request.input_column: [text for _, text in kept],
                request.label_column: [job.target.label for job, _ in kept],
            },
            features={request.input_column: Value("string"), request.label_column: Value("int64")},
            cycle=request.cycle,
            generator=generator_name,
            target_ids=[job.target.target_id for job, _ in kept],
            target_labels=[job.target.label for job, _ in kept],
            seed_example_ids=[job.seed_ids for job, _ in kept],
            extra={PROMPT_COLUMN: [job.prompt for job, _ in kept]},
        )


def check_request(request: GenerationRequest) -> None:
    """Raises a clear error for a request no text generator can serve."""
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


def check_generator_arguments(
    owner: str,
    *,
    temperature: float,
    top_p: float,
    max_seed_similarity: float,
    templates: PromptTemplates | None,
    **positive_integers: int,
) -> None:
    """Raises a clear error for a text generator argument out of range (`owner` names the generator class)."""
    for argument, value in positive_integers.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {argument} must be a positive integer, got {value!r}.")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (sampling is always on), got {temperature}.")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
    if not 0 < max_seed_similarity <= 1:
        raise ValueError(f"max_seed_similarity must be in (0, 1], got {max_seed_similarity}.")
    if templates is not None and not isinstance(templates, PromptTemplates):
        raise TypeError(f"templates must be a PromptTemplates, got {type(templates).__name__}.")

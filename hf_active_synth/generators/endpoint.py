"""LLM synthesis through a serving engine: the same targeted prompts, sent to an OpenAI-compatible or TGI endpoint.

Users who outgrow one machine run the LLM in a serving engine (vLLM or TGI across GPUs, an Inference Endpoint,
`transformers serve`) rather than inside the training process. `EndpointTextGenerator` writes exactly the prompts of
`TextGenerationGenerator` (`generators.text_prompts`, as chat messages: the server applies its chat template), sends
one chat-completion request per candidate through `huggingface_hub.AsyncInferenceClient`
(`generators.endpoint_client`: bounded concurrency, retries with backoff on 429 / 5xx / timeouts / dropped
connections), and parses the answers into the same candidates (`generators.text_candidates`), so ensemble re-ranking
and the filters work unchanged.

Every request carries a seed derived from (request seed, cycle, request index), so answers are reproducible where the
server honours `seed`, and with `cache_dir` each answer is cached on disk under a hash of (model, messages, sampling
parameters, seed) the moment it arrives: a generation stage killed half-way and run again (`--resume true`) sends
only the requests that were not answered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import GenerationRequest
from .endpoint_client import ChatRequest, RetryPolicy, run_coroutine, send_requests
from .request_cache import RequestCache, request_key
from .text_candidates import CandidateCollector, GenerationStats, check_generator_arguments, check_request
from .text_prompts import PromptJob, PromptTemplates, PromptWriter

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["EndpointGenerationStats", "EndpointTextGenerator"]

# Request fields the generator sets itself; `extra_body` may not override them (the cache key would lie).
_RESERVED_FIELDS = frozenset({"model", "messages", "seed", "stream", "n", "max_tokens", "temperature", "top_p"})


@dataclass(frozen=True)
class EndpointGenerationStats(GenerationStats):
    """`GenerationStats` of an endpoint generator: `seconds` is the wall time of the request phase, token counts
    are the server's `usage` of the requests sent (cached answers cost nothing and count in `num_cached` only).

    Args:
        num_requests (`int`): Requests answered by the server in this call (retries not counted).
        num_cached (`int`): Requests answered from the cache (nothing sent).
        num_retries (`int`): Extra attempts after 429 / 5xx / timeouts / dropped connections.
        concurrency (`int`): Requests in flight at most.
    """

    num_requests: int = 0
    num_cached: int = 0
    num_retries: int = 0
    concurrency: int = 0

    @property
    def requests_per_second(self) -> float:
        """Requests answered by the server per second of the request phase (0 when nothing was sent)."""
        return self.num_requests / self.seconds if self.seconds > 0 and self.num_requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "requests_per_second": round(self.requests_per_second, 4)}


class EndpointTextGenerator:
    """Proposes text candidates with an LLM behind an OpenAI-compatible or TGI chat-completion endpoint.

    Nothing is sent before `generate`: the constructor checks and stores its arguments only.

    Args:
        endpoint (`str`): Base URL of the server, e.g. `http://gpu-box:8000` (vLLM, `transformers serve`),
            `http://gpu-box:8080` (TGI) or an Inference Endpoint URL; `/v1/chat/completions` is appended unless the
            URL already ends with it (or with `/v1`).
        model (`str`): The model name every request carries: vLLM's served model name (its `--served-model-name`,
            by default the model id), the path or id `transformers serve` was started with; TGI and Inference
            Endpoints serve one model and accept any name (e.g. `"tgi"`). Part of the cache key.
        token (`str`, *optional*): Bearer token. Default: huggingface_hub's usual sources (`HF_TOKEN`,
            `hf auth login`), as for every Hub client. It is never logged, cached or written.
        templates (`PromptTemplates`, *optional*): Prompt templates (`response_prefix` must be empty: a chat endpoint
            writes the assistant turn itself).
        label_descriptions (`Sequence[str]`, *optional*): What to call each class in prompts; default
            `request.label_names`.
        num_shots (`int`, defaults to 3): Seed examples per prompt (see `TextGenerationGenerator`).
        max_new_tokens (`int`, defaults to 48): `max_tokens` of each request.
        temperature (`float`, defaults to 0.9): Sampling temperature.
        top_p (`float`, defaults to 0.95): Nucleus sampling mass.
        max_example_chars (`int`, defaults to 400): Seed examples are cut to this many characters in prompts.
        max_seed_similarity (`float`, defaults to 0.9): Answers this similar to a seed example of their prompt are
            dropped as copies (see `TextGenerationGenerator`).
        concurrency (`int`, defaults to 4): Requests in flight at most; the server batches concurrent requests.
        timeout (`float`, *optional*, defaults to 120): Seconds per attempt; `None` waits forever.
        max_retries (`int`, defaults to 5): Retries per request after a retryable error.
        backoff_seconds (`float`, defaults to 1.0): First retry delay, doubled at each further retry (with jitter).
        max_backoff_seconds (`float`, defaults to 30.0): Cap of each delay, the server's `Retry-After` included.
        cache_dir (`str` or `os.PathLike`, *optional*): Cache every answer there (one file per request) and reuse
            cached answers; default: no cache.
        extra_body (`dict`, *optional*): Extra request fields the server understands (`repetition_penalty`,
            `top_k`, `stop`...); part of the cache key.
        headers (`dict`, *optional*): Extra HTTP headers.
        name (`str`, *optional*): Goes into `synth_generator`; defaults to `"endpoint:<model>"`.
        show_progress (`bool`, defaults to True): A tqdm bar over requests.

    After `generate`, `last_stats_` (an `EndpointGenerationStats`) holds token counts, requests/s and candidates/s.

    Example:

    ```python
    >>> generator = EndpointTextGenerator("http://localhost:8000", "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    ...                                   concurrency=16, cache_dir="runs/sst2/generation_cache")
    >>> candidates = generator.generate(request)  # the same columns as TextGenerationGenerator's
    >>> generator.last_stats_.requests_per_second
    ```
    """

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        token: str | None = None,
        templates: PromptTemplates | None = None,
        label_descriptions: Sequence[str] | None = None,
        num_shots: int = 3,
        max_new_tokens: int = 48,
        temperature: float = 0.9,
        top_p: float = 0.95,
        max_example_chars: int = 400,
        max_seed_similarity: float = 0.9,
        concurrency: int = 4,
        timeout: float | None = 120.0,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        cache_dir: str | os.PathLike | None = None,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
        show_progress: bool = True,
    ):
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ValueError(
                f"endpoint must be the http(s):// URL of the server, e.g. 'http://localhost:8000'; got {endpoint!r}."
            )
        if not isinstance(model, str) or not model:
            raise ValueError(
                "model must name the served model (vLLM: its --served-model-name or model id; TGI / Inference "
                f"Endpoints: any name such as 'tgi'); got {model!r}."
            )
        if token is not None and not isinstance(token, str):
            raise TypeError(f"token must be a str or None (huggingface_hub finds one), got {type(token).__name__}.")
        check_generator_arguments(
            "EndpointTextGenerator",
            temperature=temperature,
            top_p=top_p,
            max_seed_similarity=max_seed_similarity,
            templates=templates,
            num_shots=num_shots,
            max_new_tokens=max_new_tokens,
            max_example_chars=max_example_chars,
            concurrency=concurrency,
        )
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds (or None to wait forever), got {timeout}.")
        if templates is not None and templates.response_prefix:
            raise ValueError(
                "PromptTemplates.response_prefix is not supported by a chat-completion endpoint (the server writes "
                "the assistant turn); leave it empty."
            )
        reserved = sorted(set(extra_body or {}) & _RESERVED_FIELDS)
        if reserved:
            raise ValueError(f"extra_body may not set {reserved}: use the generator's own arguments for them.")
        self.endpoint = endpoint
        self.model = model
        self._token = token  # private, and left out of repr: never logged or written
        self.templates = templates
        self.label_descriptions = label_descriptions
        self.num_shots = num_shots
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.max_example_chars = max_example_chars
        self.max_seed_similarity = max_seed_similarity
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry_policy = RetryPolicy(max_retries, backoff_seconds, max_backoff_seconds)
        self.cache_dir = cache_dir
        self.extra_body = dict(extra_body) if extra_body else None
        self.headers = dict(headers) if headers else None
        self.name = name if name is not None else f"endpoint:{model}"
        self.show_progress = show_progress

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, model={self.model!r}, concurrency={self.concurrency})"
        )

    def _parameters(self) -> dict[str, Any]:
        """The sampling parameters of every request (also the cache key's)."""
        parameters: dict[str, Any] = {
            "max_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }
        if self.extra_body:
            parameters["extra_body"] = dict(self.extra_body)
        return parameters

    def _chat_requests(self, request: GenerationRequest, jobs: list[PromptJob]) -> list[ChatRequest]:
        """One chat request per prompt job, with its per-request seed and cache key.

        The seed of request `i` is derived from (request.seed, request.cycle, i): reproducible, and independent of
        concurrency, caching and which requests were answered before a kill.
        """
        parameters = self._parameters()
        chat_requests = []
        for index, job in enumerate(jobs):
            seed = int(np.random.SeedSequence([request.seed, request.cycle, index]).generate_state(1)[0] % 2**31)
            key = request_key(self.model, job.messages, parameters, seed)
            chat_requests.append(ChatRequest(index=index, key=key, messages=job.messages, seed=seed))
        return chat_requests

    def _prompt_writer(self) -> PromptWriter:
        # No tokenizer: the server applies the model's chat template to the messages.
        return PromptWriter(
            templates=self.templates or PromptTemplates(),
            tokenizer=None,
            label_descriptions=self.label_descriptions,
            num_shots=self.num_shots,
            max_example_chars=self.max_example_chars,
            use_chat_template=False,
        )

    def generate(self, request: GenerationRequest) -> Dataset:
        """Over-generates `target.num_samples * request.candidates_per_sample` candidates per target.

        Args:
            request (`GenerationRequest`): Targets, label names, seed examples, cycle and seed (see
                `TextGenerationGenerator.generate`).

        Returns:
            `Dataset`: the columns of `TextGenerationGenerator.generate`; `synth_prompt` holds the prompt as plain
            text (the system message, if any, then the user message).

        Raises:
            `EndpointError`: a request that is not retryable, or still failing after the last retry (the answered
                requests are cached: a rerun sends only the rest).
        """
        check_request(request)
        _check_online(self.endpoint)
        writer = self._prompt_writer()
        jobs = writer.jobs(request)
        chat_requests = self._chat_requests(request, jobs)
        started = time.perf_counter()
        outcomes = run_coroutine(
            send_requests(
                self.endpoint,
                self.model,
                chat_requests,
                self._parameters(),
                token=self._token,
                concurrency=self.concurrency,
                timeout=self.timeout,
                policy=self.retry_policy,
                cache=RequestCache(self.cache_dir) if self.cache_dir is not None else None,
                headers=self.headers,
                show_progress=self.show_progress,
            )
        )
        seconds = time.perf_counter() - started
        collector = CandidateCollector(request, writer, jobs, self.max_seed_similarity)
        for job, outcome in zip(jobs, outcomes, strict=True):
            collector.add(job, outcome.answer.content)
        sent = [outcome for outcome in outcomes if not outcome.cached]
        self.last_stats_ = EndpointGenerationStats(
            num_sequences=len(jobs),
            num_prompt_tokens=sum(outcome.answer.prompt_tokens for outcome in sent),
            num_generated_tokens=sum(outcome.answer.completion_tokens for outcome in sent),
            seconds=seconds,
            batch_size=1,
            num_requests=len(sent),
            num_cached=len(outcomes) - len(sent),
            num_retries=sum(outcome.attempts - 1 for outcome in sent),
            concurrency=self.concurrency,
            **collector.counts(),
        )
        return collector.dataset(self.name)


def _check_online(endpoint: str) -> None:
    """huggingface_hub refuses every request, to any URL, in offline mode: say so before trying."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise RuntimeError(
            f"HF_HUB_OFFLINE=1 makes huggingface_hub refuse every request, so it cannot reach {endpoint}. Unset "
            "HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) for this run: local model folders still load without the Hub."
        )

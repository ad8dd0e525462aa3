"""Sending chat-completion requests to a serving engine: bounded concurrency, retries with backoff, the cache.

`send_requests` posts every request that is not in the `RequestCache` through `huggingface_hub.AsyncInferenceClient`
(OpenAI-compatible servers such as vLLM or `transformers serve`, TGI, Inference Endpoints) with at most `concurrency`
in flight, writes each answer to the cache the moment it arrives, and retries what a retry can fix: HTTP 408, 429
(honouring `Retry-After`) and 5xx, timeouts and dropped connections. Anything else (a 400 for a wrong model name, a
401 for a missing token) fails at once; so does a request still failing after its last retry, with a message that
says what failed and that the answered requests are cached. The token goes to the client and nowhere else: it is
never logged, never part of a cache key, never written.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from tqdm.auto import tqdm

from .request_cache import CachedAnswer, RequestCache

try:  # huggingface_hub >= 2 speaks httpx2; 1.x speaks httpx. Its transport errors are the ones to catch.
    import httpx2 as _httpx
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    import httpx as _httpx

__all__ = ["ChatRequest", "EndpointError", "RequestOutcome", "RetryPolicy", "run_coroutine", "send_requests"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Statuses a retry can fix: request timeout, rate limit, and the server-side errors of a busy or restarting engine.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class EndpointError(RuntimeError):
    """A request the endpoint did not answer: not retryable, or still failing after the last retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failed request.

    Args:
        max_retries (`int`, defaults to 5): Retries after the first attempt (0: fail on the first error).
        backoff_seconds (`float`, defaults to 1.0): Delay before the first retry; doubled at each further one.
        max_backoff_seconds (`float`, defaults to 30.0): Cap of every delay, `Retry-After` included.
    """

    max_retries: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0

    def __post_init__(self):
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {self.max_retries!r}.")
        if self.backoff_seconds < 0 or self.max_backoff_seconds < self.backoff_seconds:
            raise ValueError(
                f"Need 0 <= backoff_seconds <= max_backoff_seconds, got {self.backoff_seconds} and "
                f"{self.max_backoff_seconds}."
            )

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (0-based): exponential with jitter in [0.5, 1] of it, so that
        requests rate-limited together do not come back together; at least the server's `Retry-After`; capped."""
        exponential = self.backoff_seconds * 2**retry * (0.5 + 0.5 * rng.random())
        return min(self.max_backoff_seconds, max(exponential, retry_after or 0.0))


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completion request.

    Args:
        index (`int`): Position of the request among the stage's requests (the order outcomes come back in).
        key (`str`): Its cache key (`request_cache.request_key`).
        messages (`list[dict]`): The chat messages.
        seed (`int`, *optional*): Sampling seed sent to the server.
    """

    index: int
    key: str
    messages: list[dict[str, str]]
    seed: int | None


@dataclass(frozen=True)
class RequestOutcome:
    """The answer to one request, and what it cost.

    Args:
        answer (`CachedAnswer`): Text, finish reason and token counts.
        cached (`bool`): Read from the cache: nothing was sent.
        attempts (`int`): Requests posted for it (0 when cached; more than 1 after retries).
    """

    answer: CachedAnswer
    cached: bool
    attempts: int


def _retry_reason(error: BaseException) -> tuple[str, float | None] | None:
    """(reason, Retry-After seconds) when `error` is worth a retry, `None` when it is not."""
    from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError

    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code
        if status not in RETRYABLE_STATUSES:
            return None
        retry_after = error.response.headers.get("retry-after")
        try:
            seconds = float(retry_after) if retry_after is not None else None
        except ValueError:  # an HTTP date instead of seconds: fall back to the exponential delay
            seconds = None
        return f"HTTP {status}", seconds
    if isinstance(error, InferenceTimeoutError):
        return "timeout", None
    if isinstance(error, (_httpx.TransportError, ConnectionError)):
        return type(error).__name__, None  # dropped or refused connection, read/write error
    return None


async def _send_one(
    client: Any,
    request: ChatRequest,
    model: str,
    parameters: Mapping[str, Any],
    policy: RetryPolicy,
    cache: RequestCache | None,
) -> RequestOutcome:
    rng = random.Random(request.key)  # jitter seeded by the request: reruns wait the same
    for attempt in range(policy.max_retries + 1):
        try:
            output = await client.chat_completion(request.messages, model=model, seed=request.seed, **dict(parameters))
        except Exception as error:
            reason = _retry_reason(error)
            if reason is None:
                raise EndpointError(
                    f"Request {request.index} failed and is not retryable ({type(error).__name__}): {error}"
                ) from error
            if attempt == policy.max_retries:
                raise EndpointError(
                    f"Request {request.index} still failed after {attempt + 1} attempts (last: {reason[0]}). The "
                    "requests answered so far are cached; rerun to send only the rest, or raise max_retries / "
                    "timeout."
                ) from error
            delay = policy.delay(attempt, reason[1], rng)
            logger.info(
                "request %d: %s, retry %d/%d in %.2f s",
                request.index,
                reason[0],
                attempt + 1,
                policy.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
            continue
        choice = output.choices[0]
        usage = getattr(output, "usage", None)
        answer = CachedAnswer(
            content=choice.message.content or "",
            finish_reason=choice.finish_reason,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )
        if cache is not None:
            cache.put(request.key, answer)  # at once: a kill after this line loses nothing
        return RequestOutcome(answer, cached=False, attempts=attempt + 1)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


async def send_requests(
    endpoint: str,
    model: str,
    requests: Sequence[ChatRequest],
    parameters: Mapping[str, Any],
    *,
    token: str | None = None,
    concurrency: int = 4,
    timeout: float | None = 60.0,
    policy: RetryPolicy | None = None,
    cache: RequestCache | None = None,
    headers: Mapping[str, str] | None = None,
    show_progress: bool = False,
) -> list[RequestOutcome]:
    """Answers every request, from the cache or the endpoint, in request order.

    Args:
        endpoint (`str`): Base URL of the server (`/v1/chat/completions` is appended unless already there).
        model (`str`): The model name sent in every request.
        requests (`Sequence[ChatRequest]`): The requests.
        parameters (`Mapping`): Sampling parameters of `AsyncInferenceClient.chat_completion` (`max_tokens`,
            `temperature`, `top_p`, `stop`, `extra_body`).
        token (`str`, *optional*): Bearer token; `None` lets huggingface_hub find one (`HF_TOKEN`, `hf auth login`).
        concurrency (`int`, defaults to 4): Requests in flight at most.
        timeout (`float`, *optional*, defaults to 60): Seconds per attempt; `None` waits forever.
        policy (`RetryPolicy`, *optional*): Retries; defaults to `RetryPolicy()`.
        cache (`RequestCache`, *optional*): Answers are read from and written to it.
        headers (`Mapping`, *optional*): Extra HTTP headers.
        show_progress (`bool`, defaults to False): A tqdm bar over answered requests.

    Returns:
        `list[RequestOutcome]`: one per request, in the order of `requests`.
    """
    from huggingface_hub import AsyncInferenceClient

    policy = policy or RetryPolicy()
    outcomes: list[RequestOutcome | None] = [None] * len(requests)
    pending: deque[tuple[int, ChatRequest]] = deque()
    for position, request in enumerate(requests):
        answer = cache.get(request.key) if cache is not None else None
        if answer is not None:
            outcomes[position] = RequestOutcome(answer, cached=True, attempts=0)
        else:
            pending.append((position, request))
    if pending:
        progress = tqdm(total=len(pending), desc="Requesting", disable=not show_progress)
        async with AsyncInferenceClient(
            base_url=endpoint, token=token, timeout=timeout, headers=dict(headers or {})
        ) as client:

            async def worker() -> None:
                while pending:
                    position, request = pending.popleft()
                    outcomes[position] = await _send_one(client, request, model, parameters, policy, cache)
                    progress.update(1)

            workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(pending)))]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for task in workers:  # one request failed for good: stop the others (their answers are cached)
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
            finally:
                progress.close()
    missing = [position for position, outcome in enumerate(outcomes) if outcome is None]
    if missing:  # every worker ran to completion, so this would be a bug here, not a server problem
        raise RuntimeError(f"Requests {missing[:5]} got no outcome.")
    return outcomes  # type: ignore[return-value]


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs `coroutine` to completion from synchronous code, also when called inside a running event loop
    (a notebook): there it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()

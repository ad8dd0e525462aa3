"""Retrying Hub operations: which errors are transient, and `call_with_retries` (exponential backoff, no jitter)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from .secrets import redact

logger = logging.getLogger(__package__)  # `hf_active_synth.hub`: one logger for the whole package

T = TypeVar("T")

RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)

try:  # The transport errors huggingface_hub itself retries on (timeouts, dropped connections).
    from huggingface_hub.utils._http import _DEFAULT_RETRY_ON_EXCEPTIONS as _TRANSPORT_ERRORS
except ImportError:  # pragma: no cover - private name of huggingface_hub; fall back to the stdlib bases
    _TRANSPORT_ERRORS = ()
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (*_TRANSPORT_ERRORS, ConnectionError, TimeoutError)
# What a failed push may raise; anything else is a bug and propagates.
PUSH_ERRORS: tuple[type[BaseException], ...] = (HfHubHTTPError, OfflineModeIsEnabled, *TRANSPORT_ERRORS)


def is_transient_error(error: BaseException) -> bool:
    """Whether `error` is worth retrying: a 408/429/5xx reply or a dropped/timed-out connection (not offline
    mode)."""
    if isinstance(error, OfflineModeIsEnabled):
        return False
    if isinstance(error, HfHubHTTPError):
        response = getattr(error, "response", None)
        return response is not None and response.status_code in RETRY_STATUS_CODES
    return isinstance(error, TRANSPORT_ERRORS)


def call_with_retries(
    fn: Callable[..., T],
    *args: Any,
    max_retries: int = 4,
    base_wait: float = 1.0,
    max_wait: float = 30.0,
    description: str = "Hub call",
    secrets: Sequence[str | None] = (),
    **kwargs: Any,
) -> T:
    """Calls `fn(*args, **kwargs)`, retrying transient Hub errors with exponential backoff.

    huggingface_hub retries single HTTP requests of its uploads (`http_backoff`), but not whole operations such as
    a commit, a branch or a tag; this wraps those. Waits `base_wait`, `2 * base_wait`, ... (at most `max_wait`)
    seconds between attempts; deterministic (no jitter). Non-transient errors (4xx, offline mode) are raised at once.

    Args:
        fn (`Callable`): The operation.
        max_retries (`int`, defaults to 4): Retries after the first attempt.
        base_wait (`float`, defaults to 1.0): First wait, in seconds.
        max_wait (`float`, defaults to 30.0): Longest wait, in seconds.
        description (`str`, defaults to `"Hub call"`): What is attempted, for the log.
        secrets (`Sequence[str]`, defaults to `()`): Strings redacted from log messages.
    """
    wait = base_wait
    for attempt in range(max_retries + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            if attempt == max_retries or not is_transient_error(error):
                raise
            message = redact(str(error).splitlines()[0] if str(error) else type(error).__name__, secrets)
            logger.warning(
                "%s failed (%s); retrying in %.2fs [%d/%d].", description, message, wait, attempt + 1, max_retries
            )
            time.sleep(wait)
            wait = min(max_wait, wait * 2)
    raise AssertionError("unreachable")  # pragma: no cover

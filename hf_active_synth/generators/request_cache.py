"""A per-request on-disk cache of endpoint answers, so that a killed generation stage resumes where it stopped.

Each answered request is one small JSON file named by the SHA-256 of what determines the answer: the model, the
messages, the sampling parameters and the seed. It is written as soon as the answer arrives, atomically (a temporary
file in the same folder, then `os.replace`), so a process killed at any point leaves only whole entries behind and a
rerun of the same stage (same prompts, same per-request seeds) sends only the requests that had not been answered.

What is *not* in the key, on purpose: the endpoint URL (the same model on another server or after a restart is the
same distribution, so a run may move servers) and the token (credentials are never part of a key nor written
anywhere). An entry holds the answer and its token counts only; the prompt is already in the candidates' provenance.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["CachedAnswer", "RequestCache", "request_key"]

# Bump when the key or the entry format changes: old entries are then ignored, never misread.
_CACHE_VERSION = 1


@dataclass(frozen=True)
class CachedAnswer:
    """One endpoint answer as the cache stores it.

    Args:
        content (`str`): The assistant message's text.
        finish_reason (`str`, *optional*): Why the server stopped (`"stop"`, `"length"`, ...).
        prompt_tokens (`int`): Prompt tokens the server reported (0 if it reported none).
        completion_tokens (`int`): Generated tokens the server reported (0 if it reported none).
    """

    content: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def request_key(
    model: str, messages: Sequence[Mapping[str, str]], parameters: Mapping[str, Any], seed: int | None
) -> str:
    """The cache key of one chat-completion request: a SHA-256 over its canonical JSON.

    Args:
        model (`str`): The model name sent in the request.
        messages (`Sequence[Mapping]`): The chat messages.
        parameters (`Mapping`): The sampling parameters (max tokens, temperature, top-p, extra body fields).
        seed (`int`, *optional*): The request's seed.
    """
    payload = {
        "version": _CACHE_VERSION,
        "model": model,
        "messages": [dict(message) for message in messages],
        "parameters": dict(parameters),
        "seed": seed,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class RequestCache:
    """A folder of answered requests, one JSON file per key (`<key[:2]>/<key>.json`).

    Args:
        directory (`str` or `os.PathLike`): Where entries live; created on the first write.

    Example:

    ```python
    >>> cache = RequestCache("runs/sst2/generation_cache")
    >>> key = request_key("my-model", [{"role": "user", "content": "hi"}], {"max_tokens": 8}, seed=0)
    >>> cache.get(key) is None
    True
    >>> cache.put(key, CachedAnswer("hello there", "stop", 5, 2))
    >>> cache.get(key).content
    'hello there'
    ```
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(char not in "0123456789abcdef" for char in key):
            raise ValueError(f"Cache keys are SHA-256 hex digests (see `request_key`), got {key!r}.")
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedAnswer | None:
        """The cached answer of `key`, or `None` when it was never answered (or by another cache version)."""
        path = self._path(key)
        if not path.is_file():
            return None
        entry = json.loads(path.read_text(encoding="utf-8"))
        if entry.get("version") != _CACHE_VERSION:
            return None
        return CachedAnswer(**entry["answer"])

    def put(self, key: str, answer: CachedAnswer) -> None:
        """Writes the answer of `key` atomically: readers see the whole entry or none."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = json.dumps({"version": _CACHE_VERSION, "key": key, "answer": asdict(answer)}, ensure_ascii=False)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(entry)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)  # cleanup only: the error propagates
            raise

    def __len__(self) -> int:
        """Entries on disk."""
        return sum(1 for _ in self.directory.glob("??/*.json")) if self.directory.is_dir() else 0

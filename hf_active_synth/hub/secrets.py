"""Keeping secrets out of everything a run publishes or logs: cards, run settings, pending-push records, errors."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["HF_TOKEN_PATTERN", "redact", "scrub_settings"]

# Keys of run settings that are never rendered (their values are secrets or hold them).
_SECRET_KEY = re.compile(r"token|secret|password|passwd|credential|api_key|apikey|private_key", re.IGNORECASE)
# Anything shaped like a Hugging Face access token, wherever it appears.
HF_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def redact(text: str, secrets: Sequence[str | None] = ()) -> str:
    """Replaces every secret in `secrets`, and anything shaped like a Hugging Face token, with `***`.

    Args:
        text (`str`): The text to clean.
        secrets (`Sequence[str]`, defaults to `()`): Strings to replace wherever they appear (e.g. the Hub token).
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return HF_TOKEN_PATTERN.sub("hf_***", text)


def scrub_settings(settings: Mapping[str, Any] | None, secrets: Sequence[str | None] = ()) -> dict[str, Any]:
    """Returns a JSON-safe copy of run settings without secret-like keys and with secret values redacted.

    Args:
        settings (`Mapping[str, Any]`, *optional*): Run settings (e.g. a config's `to_dict()`).
        secrets (`Sequence[str]`, defaults to `()`): Strings to redact wherever they appear (e.g. the Hub token).
    """
    clean: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        if _SECRET_KEY.search(str(key)):
            continue
        if isinstance(value, Mapping):
            clean[str(key)] = scrub_settings(value, secrets)
        else:
            # Round-trip through JSON: non-serialisable values become strings, then every string is redacted.
            encoded = json.dumps(value, default=str)
            clean[str(key)] = json.loads(redact(encoded, secrets))
    return clean

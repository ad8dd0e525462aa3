"""Model-agnostic helpers: getting logits out of whatever a model's forward returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def extract_logits(outputs: Any) -> torch.Tensor:
    """Returns the `[B, C]` logits from a model's output.

    Accepts a `ModelOutput`/object with `.logits`, a mapping with a `"logits"` key, or a bare tensor (a plain
    `nn.Module` classifier). Raises `TypeError` for anything else, naming what was returned.
    """
    logits = None
    if isinstance(outputs, torch.Tensor):
        logits = outputs
    elif isinstance(outputs, Mapping):
        logits = outputs.get("logits")
    else:
        logits = getattr(outputs, "logits", None)
    if not isinstance(logits, torch.Tensor):
        keys = list(outputs.keys()) if isinstance(outputs, Mapping) else type(outputs).__name__
        raise TypeError(
            f"The model returned {keys}, with no logits. Active synthesis needs a classifier whose forward returns "
            "a logits tensor [batch, num_labels], an object with `.logits`, or a dict with a 'logits' key."
        )
    if logits.ndim != 2:
        raise TypeError(
            f"Expected classification logits shaped [batch, num_labels], got {tuple(logits.shape)}. "
            "Sequence-to-sequence or token-level heads are not supported."
        )
    return logits

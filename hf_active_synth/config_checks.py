"""Checks and helpers shared by the option dataclasses (`ActiveSynthesisConfig`, the recipes' arguments).

They live apart from `config.py` so that the config module stays the list of options; `config` re-exports them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["accelerator_available", "check_finite_floats", "check_share", "dataclass_values", "one_of"]


def check_finite_floats(values: Mapping[str, Any], option_prefix: str = "") -> None:
    """Raises a `ValueError` naming the first float in `values` that is NaN or infinite.

    `float("nan")` slips through every range check (`nan < 0` is False) and would silently poison a run, so every
    float option goes through this: `ActiveSynthesisConfig` and the recipes' argument dataclasses check their fields,
    and the recipes' parser checks the parsed command line and `--config` file (with `option_prefix="--"`).

    Args:
        values (`Mapping[str, Any]`): Option name -> value (non-float values are ignored).
        option_prefix (`str`, defaults to `""`): Put before the name in the message (`"--"` on the command line).
    """
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"`{option_prefix}{name}` must be a finite number, got {value}.")


def dataclass_values(instance: Any) -> dict[str, Any]:
    """`{field name: value}` of a dataclass instance (shallow, unlike `dataclasses.asdict`)."""
    return {item.name: getattr(instance, item.name) for item in dataclasses.fields(instance)}


def accelerator_available() -> bool:
    """Whether torch sees an accelerator (CUDA, XPU, MPS, ...)."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


def one_of(choices: tuple[str, ...]) -> str:
    """`'a', 'b' or 'c'`: the choices of an option, for its error message."""
    quoted = [f"'{choice}'" for choice in choices]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def check_share(name: str, value: float | None) -> None:
    """Raises a `ValueError` unless `value` is `None` (the option is off) or a share in `[0, 1]`."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` is a share in [0, 1] (or unset to turn it off), got {value}.")

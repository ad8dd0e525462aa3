"""What every corruption shares: severities 1 to 5, seeds or generators, and per-row random streams."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

Modality = Literal["image", "text"]
RandomState = int | np.random.Generator

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


def check_severity(severity: Any) -> None:
    """Raises a `ValueError` unless `severity` is an integer from 1 to 5."""
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise ValueError(f"severity must be an integer from 1 to 5, got {severity!r}.")


def as_generator(rng: RandomState) -> np.random.Generator:
    """`rng` itself if it is a `numpy.random.Generator`, else a generator seeded with it."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be an int seed or a numpy.random.Generator, got {type(rng).__name__}.")


def row_generator(seed: int, index: int) -> np.random.Generator:
    """The random generator of row `index` under `seed`: independent of batching, processes and other rows."""
    return np.random.default_rng([int(seed), int(index)])

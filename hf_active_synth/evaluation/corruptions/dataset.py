"""Corruptions by name (`CORRUPTIONS`, `get_corruption`), and `corrupt_dataset` to corrupt one column of a dataset."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
from PIL import Image

from .base import row_generator
from .image import GaussianBlur, GaussianNoise, ImageCorruption, Occlusion, Rotation
from .text import CharacterSwaps, KeyboardTypos, TextCorruption, WordDropout

Corruption = ImageCorruption | TextCorruption

CORRUPTIONS: dict[str, type[ImageCorruption] | type[TextCorruption]] = {
    cls.name: cls
    for cls in (GaussianNoise, GaussianBlur, Occlusion, Rotation, KeyboardTypos, CharacterSwaps, WordDropout)
}
"""Resolves corruption names used in configs and on the command line."""

IMAGE_CORRUPTIONS: tuple[str, ...] = tuple(name for name, cls in CORRUPTIONS.items() if cls.modality == "image")
TEXT_CORRUPTIONS: tuple[str, ...] = tuple(name for name, cls in CORRUPTIONS.items() if cls.modality == "text")


def get_corruption(name: str, severity: int = 1, **kwargs: Any) -> Corruption:
    """Builds the corruption called `name` (one of `CORRUPTIONS`) at `severity`; `kwargs` go to its constructor."""
    try:
        cls = CORRUPTIONS[name]
    except KeyError:
        raise ValueError(f"Unknown corruption {name!r}; choose one of {sorted(CORRUPTIONS)}.") from None
    return cls(severity=severity, **kwargs)


def _resolve_corruption(corruption: str | Corruption, severity: int | None) -> Corruption:
    if isinstance(corruption, str):
        if severity is None:
            raise ValueError(f"Pass a severity (1 to 5) with the corruption name {corruption!r}.")
        return get_corruption(corruption, severity)
    if isinstance(corruption, (ImageCorruption, TextCorruption)):
        return corruption if severity is None else dataclasses.replace(corruption, severity=severity)
    if isinstance(corruption, type) and issubclass(corruption, (ImageCorruption, TextCorruption)):
        raise TypeError(f"Pass an instance such as {corruption.__name__}(severity=3), or a name, not the class.")
    raise TypeError(
        f"corruption must be a name from {sorted(CORRUPTIONS)} or a corruption object, got {type(corruption).__name__}."
    )


def _corrupt_value(value: Any, corruption: Corruption, rng: np.random.Generator) -> Any:
    if isinstance(corruption, TextCorruption):
        return corruption(value, rng)
    if isinstance(value, Image.Image):
        return corruption(value, rng)
    if isinstance(value, np.ndarray):
        return corruption(value, rng)
    if isinstance(value, (list, tuple)):
        # A nested-list image (e.g. an `Array2D` or `List(List(Value))` column in python format).
        return corruption(np.asarray(value), rng).tolist()
    raise TypeError(
        f"{type(corruption).__name__} cannot corrupt a {type(value).__name__}; the column must hold images (PIL, "
        "numpy arrays or nested lists)."
    )


def corrupt_dataset(
    dataset: datasets.Dataset,
    column: str,
    corruption: str | Corruption,
    severity: int | None = None,
    seed: int = 0,
    batch_size: int = 1000,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """A copy of `dataset` whose `column` is corrupted; every other column (labels included) is left untouched.

    Row `i` draws from `np.random.default_rng([seed, i])`, so the result depends only on `seed`, not on
    `batch_size` or `num_proc`. The features (column types and dtypes) of `dataset` are kept.

    Args:
        dataset (`datasets.Dataset`): The evaluation set.
        column (`str`): The column to corrupt (images: PIL or nested lists/arrays; text: strings).
        corruption (`str` or corruption object): A name from `CORRUPTIONS` or an instance such as
            `GaussianNoise(severity=3, value_range=(0, 16))`.
        severity (`int`, *optional*): Severity 1 to 5; required with a name, overrides an instance's.
        seed (`int`, defaults to 0): The seed of the per-row generators.
        batch_size (`int`, defaults to 1000): `Dataset.map` batch size.
        num_proc (`int`, *optional*): `Dataset.map` processes.

    Returns:
        `datasets.Dataset`: The corrupted dataset.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"corrupt_dataset expects a datasets.Dataset, got {type(dataset).__name__}.")
    if column not in dataset.column_names:
        raise ValueError(f"Column {column!r} is not in the dataset; its columns are {dataset.column_names}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    resolved = _resolve_corruption(corruption, severity)

    def corrupt_batch(batch: dict[str, list], indices: Sequence[int]) -> dict[str, list]:
        return {
            column: [
                _corrupt_value(value, resolved, row_generator(seed, index))
                for value, index in zip(batch[column], indices)
            ]
        }

    return dataset.map(
        corrupt_batch,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        num_proc=num_proc,
        features=dataset.features,
        desc=f"{resolved.name} (severity {resolved.severity})",
    )

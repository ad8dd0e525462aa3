"""Seeded corruptions for robustness evaluation (ImageNet-C style), for images and for text.

Every corruption is a small frozen dataclass holding a `severity` from 1 (mild) to 5 (strong) and called on one
example with a seed or a `numpy.random.Generator`:

```python
>>> noisy = GaussianNoise(severity=3)(image, rng=0)
>>> typo = KeyboardTypos(severity=2)("a fine film", rng=0)
>>> corrupted = corrupt_dataset(test_set, "image", "gaussian_blur", severity=4, seed=0)
```

Images are numpy arrays shaped `HxW` or `HxWxC`, or PIL images; the output has the input's shape and dtype (PIL
in, PIL of the same mode out). Pixel values are interpreted on `value_range`, which defaults to `(0, 255)` for
`uint8` and `(0.0, 1.0)` for floating-point images; pass it for anything else (e.g. `(0, 16)` for scikit-learn's
digits). Nothing is guessed from the data: values outside the range raise a `ValueError`.

The random draws of one example do not depend on its severity (only the thresholds and magnitudes do), so for a
fixed seed a stronger severity corrupts the same places, more: the corrupted pixels or characters at severity `s`
are mostly a subset of those at `s + 1`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import datasets
import numpy as np
from PIL import Image
from scipy import ndimage

Modality = Literal["image", "text"]
RandomState = int | np.random.Generator
ImageLike = np.ndarray | Image.Image

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
_PIL_MODES = ("L", "LA", "RGB", "RGBA", "I", "I;16", "F")


def _check_severity(severity: Any) -> None:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise ValueError(f"severity must be an integer from 1 to 5, got {severity!r}.")


def _as_generator(rng: RandomState) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be an int seed or a numpy.random.Generator, got {type(rng).__name__}.")


def row_generator(seed: int, index: int) -> np.random.Generator:
    """The random generator of row `index` under `seed`: independent of batching, processes and other rows."""
    return np.random.default_rng([int(seed), int(index)])


# ----------------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCorruption:
    """Base class of image corruptions: converts the input to float, corrupts it, and restores shape and dtype.

    Args:
        severity (`int`, defaults to 1): Strength, from 1 to 5.
        value_range (`tuple[float, float]`, *optional*): The `(low, high)` range of pixel values. Defaults to
            `(0, 255)` for `uint8` images and `(0.0, 1.0)` for floating-point images; required for other dtypes.
    """

    severity: int = 1
    value_range: tuple[float, float] | None = None

    name: ClassVar[str] = ""
    modality: ClassVar[Modality] = "image"

    def __post_init__(self) -> None:
        _check_severity(self.severity)
        if self.value_range is not None:
            if len(self.value_range) != 2 or not float(self.value_range[0]) < float(self.value_range[1]):
                raise ValueError(f"value_range must be (low, high) with low < high, got {self.value_range!r}.")

    def _resolve_range(self, image: np.ndarray) -> tuple[float, float]:
        if self.value_range is not None:
            low, high = float(self.value_range[0]), float(self.value_range[1])
        elif image.dtype == np.uint8:
            low, high = 0.0, 255.0
        elif np.issubdtype(image.dtype, np.floating):
            low, high = 0.0, 1.0
        else:
            raise ValueError(
                f"Cannot tell the pixel range of a {image.dtype} image: pass value_range=(low, high) to "
                f"{type(self).__name__} (e.g. (0, 16) for scikit-learn's digits)."
            )
        if image.size and (image.min() < low or image.max() > high):
            raise ValueError(
                f"Pixel values span [{image.min()}, {image.max()}], outside value_range ({low}, {high}); pass the "
                f"right value_range to {type(self).__name__}."
            )
        return low, high

    def __call__(self, image: ImageLike, rng: RandomState = 0) -> ImageLike:
        """Corrupts one image.

        Args:
            image (`np.ndarray` or `PIL.Image.Image`): An `HxW` or `HxWxC` image.
            rng (`int` or `np.random.Generator`, defaults to 0): The seed or generator of the random draws.

        Returns:
            The corrupted image, with the input's type, shape, dtype (and PIL mode).
        """
        generator = _as_generator(rng)
        if isinstance(image, Image.Image):
            if image.mode not in _PIL_MODES:
                raise ValueError(
                    f"Cannot corrupt a PIL image in mode {image.mode!r}; convert it first, e.g. image.convert('RGB'). "
                    f"Supported modes: {_PIL_MODES}."
                )
            return Image.fromarray(self._apply_array(np.asarray(image), generator))
        if not isinstance(image, np.ndarray):
            raise TypeError(
                f"{type(self).__name__} expects a numpy array or a PIL image, got {type(image).__name__}; convert "
                "lists with np.asarray first."
            )
        return self._apply_array(image, generator)

    def _apply_array(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if image.ndim not in (2, 3) or 0 in image.shape:
            raise ValueError(f"Expected a non-empty image shaped HxW or HxWxC, got shape {image.shape}.")
        if not (np.issubdtype(image.dtype, np.number) and not np.issubdtype(image.dtype, np.complexfloating)):
            raise TypeError(f"Expected a real-valued numeric image, got dtype {image.dtype}.")
        low, high = self._resolve_range(image)
        corrupted = self._corrupt(image.astype(np.float64), low, high, rng)
        corrupted = np.clip(corrupted, low, high)
        if not np.issubdtype(image.dtype, np.floating):
            corrupted = np.rint(corrupted)
        return corrupted.astype(image.dtype)

    def _corrupt(self, image: np.ndarray, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class GaussianNoise(ImageCorruption):
    """Additive Gaussian noise with standard deviation `SIGMAS[severity]` times the pixel range (ImageNet-C's)."""

    name: ClassVar[str] = "gaussian_noise"
    SIGMAS: ClassVar[tuple[float, ...]] = (0.08, 0.12, 0.18, 0.26, 0.38)

    def _corrupt(self, image, low, high, rng):
        sigma = self.SIGMAS[self.severity - 1] * (high - low)
        return image + sigma * rng.standard_normal(image.shape)


@dataclass(frozen=True)
class GaussianBlur(ImageCorruption):
    """Gaussian blur over the spatial axes.

    The standard deviation is CIFAR-10-C's `SIGMAS[severity]` pixels for images up to 32 pixels on a side, scaled
    up with the shorter side for larger ones. Deterministic (it draws nothing).
    """

    name: ClassVar[str] = "gaussian_blur"
    SIGMAS: ClassVar[tuple[float, ...]] = (0.4, 0.6, 0.7, 0.8, 1.0)

    def _corrupt(self, image, low, high, rng):
        sigma = self.SIGMAS[self.severity - 1] * max(1.0, min(image.shape[:2]) / 32)
        sigmas = (sigma, sigma) + ((0.0,) if image.ndim == 3 else ())
        return ndimage.gaussian_filter(image, sigma=sigmas, mode="reflect")


@dataclass(frozen=True)
class Occlusion(ImageCorruption):
    """A square patch, `SIDES[severity]` of the shorter side wide, at a random place, filled with `fill`.

    Args:
        fill (`float`, *optional*): The patch's value; defaults to the low end of the value range (black).
    """

    fill: float | None = None

    name: ClassVar[str] = "occlusion"
    SIDES: ClassVar[tuple[float, ...]] = (0.15, 0.25, 0.35, 0.5, 0.65)

    def _corrupt(self, image, low, high, rng):
        height, width = image.shape[:2]
        side = max(1, round(self.SIDES[self.severity - 1] * min(height, width)))
        # Uniform draws scaled to the free space: the patch centre moves little between severities.
        top = int(rng.random() * (height - side + 1))
        left = int(rng.random() * (width - side + 1))
        fill = low if self.fill is None else float(self.fill)
        if not low <= fill <= high:
            raise ValueError(f"fill={fill} lies outside the value range ({low}, {high}).")
        corrupted = image.copy()
        corrupted[top : top + side, left : left + side] = fill
        return corrupted


@dataclass(frozen=True)
class Rotation(ImageCorruption):
    """Rotation by `ANGLES[severity]` degrees in a random direction, bilinear, corners filled with `fill`.

    Args:
        fill (`float`, *optional*): The value of pixels rotated in from outside; defaults to the low end of the
            value range (black).
    """

    fill: float | None = None

    name: ClassVar[str] = "rotation"
    ANGLES: ClassVar[tuple[float, ...]] = (6.0, 12.0, 18.0, 24.0, 30.0)

    def _corrupt(self, image, low, high, rng):
        direction = 1.0 if rng.random() < 0.5 else -1.0
        fill = low if self.fill is None else float(self.fill)
        if not low <= fill <= high:
            raise ValueError(f"fill={fill} lies outside the value range ({low}, {high}).")
        angle = direction * self.ANGLES[self.severity - 1]
        return ndimage.rotate(image, angle, axes=(1, 0), reshape=False, order=1, mode="constant", cval=fill)


# ----------------------------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------------------------

_QWERTY_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    positions = {char: (row, column) for row, keys in enumerate(_QWERTY_ROWS) for column, char in enumerate(keys)}
    neighbours = {}
    for char, (row, column) in positions.items():
        near = [
            other
            for other, (other_row, other_column) in positions.items()
            if other != char and abs(other_row - row) <= 1 and abs(other_column - column) <= 1
        ]
        neighbours[char] = "".join(sorted(near))
    return neighbours


KEYBOARD_NEIGHBOURS: dict[str, str] = _keyboard_neighbours()
"""QWERTY neighbours of each lower-case letter and digit (keys at most one row and one column away)."""


@dataclass(frozen=True)
class TextCorruption:
    """Base class of text corruptions.

    Args:
        severity (`int`, defaults to 1): Strength, from 1 to 5.
    """

    severity: int = 1

    name: ClassVar[str] = ""
    modality: ClassVar[Modality] = "text"
    RATES: ClassVar[tuple[float, ...]] = ()

    def __post_init__(self) -> None:
        _check_severity(self.severity)

    @property
    def rate(self) -> float:
        """The per-character (or per-word) probability of a change at this severity."""
        return self.RATES[self.severity - 1]

    def __call__(self, text: str, rng: RandomState = 0) -> str:
        """Corrupts one string.

        Args:
            text (`str`): The text.
            rng (`int` or `np.random.Generator`, defaults to 0): The seed or generator of the random draws.

        Returns:
            `str`: The corrupted text.
        """
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__} expects a string, got {type(text).__name__}.")
        return self._corrupt(text, _as_generator(rng))

    def _corrupt(self, text: str, rng: np.random.Generator) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class KeyboardTypos(TextCorruption):
    """Replaces each letter or digit, with probability `RATES[severity]`, by a neighbouring QWERTY key (same case)."""

    name: ClassVar[str] = "keyboard_typos"
    RATES: ClassVar[tuple[float, ...]] = (0.02, 0.04, 0.07, 0.10, 0.15)

    def _corrupt(self, text, rng):
        draws = rng.random(len(text))
        picks = rng.random(len(text))
        characters = list(text)
        for position, char in enumerate(characters):
            neighbours = KEYBOARD_NEIGHBOURS.get(char.lower())
            if neighbours and draws[position] < self.rate:
                typo = neighbours[int(picks[position] * len(neighbours))]
                characters[position] = typo.upper() if char.isupper() else typo
        return "".join(characters)


@dataclass(frozen=True)
class CharacterSwaps(TextCorruption):
    """Swaps adjacent characters inside words, each position starting a swap with probability `RATES[severity]`."""

    name: ClassVar[str] = "character_swaps"
    RATES: ClassVar[tuple[float, ...]] = (0.02, 0.04, 0.07, 0.10, 0.15)

    def _corrupt(self, text, rng):
        draws = rng.random(len(text))
        characters = list(text)
        position = 0
        while position < len(characters) - 1:
            left, right = characters[position], characters[position + 1]
            if draws[position] < self.rate and not left.isspace() and not right.isspace() and left != right:
                characters[position], characters[position + 1] = right, left
                position += 2
            else:
                position += 1
        return "".join(characters)


@dataclass(frozen=True)
class WordDropout(TextCorruption):
    """Drops each whitespace-separated word with probability `RATES[severity]`.

    Words are re-joined with single spaces. A non-empty text keeps at least one word (the one with the highest
    draw), so no example becomes empty.
    """

    name: ClassVar[str] = "word_dropout"
    RATES: ClassVar[tuple[float, ...]] = (0.05, 0.10, 0.15, 0.20, 0.30)

    def _corrupt(self, text, rng):
        words = text.split()
        if not words:
            return text
        draws = rng.random(len(words))
        kept = [word for word, draw in zip(words, draws) if draw >= self.rate]
        if not kept:
            kept = [words[int(np.argmax(draws))]]
        return " ".join(kept)


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


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings (insertions, deletions and substitutions cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]

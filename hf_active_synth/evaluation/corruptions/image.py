"""Image corruptions (ImageNet-C style): Gaussian noise, Gaussian blur, occlusion, rotation.

Images are numpy arrays shaped `HxW` or `HxWxC`, or PIL images; the output has the input's shape and dtype (PIL
in, PIL of the same mode out). Pixel values are interpreted on `value_range` (see [`ImageCorruption`]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image
from scipy import ndimage

from .base import Modality, RandomState, as_generator, check_severity

ImageLike = np.ndarray | Image.Image

_PIL_MODES = ("L", "LA", "RGB", "RGBA", "I", "I;16", "F")


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
        check_severity(self.severity)
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
        generator = as_generator(rng)
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

"""Conversions between the image forms the library meets: PIL images, arrays, and `[C, H, W]` tensors in `[0, 1]`."""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch


def to_pil_image(image: Any) -> PIL.Image.Image:
    """A PIL image from a PIL image, a `datasets` image dict, a `[H, W(, C)]` array or a `[C, H, W]` tensor.

    Float arrays and tensors are taken to be in `[0, 1]`; integer ones in `[0, 255]`.
    """
    if isinstance(image, PIL.Image.Image):
        return image
    if isinstance(image, dict) and ("bytes" in image or "path" in image):
        from datasets import Image

        return Image().decode_example(image)
    if isinstance(image, torch.Tensor):
        if image.ndim != 3:
            raise ValueError(f"Expected an image tensor shaped [C, H, W], got {tuple(image.shape)}.")
        return tensor_to_pil(image)
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype.kind == "f":
            array = np.rint(np.clip(array, 0.0, 1.0) * 255.0)
        array = array.astype(np.uint8)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return PIL.Image.fromarray(array)
    raise TypeError(
        f"Cannot read an image from {type(image).__name__}: pass a PIL image, a numpy array or a [C, H, W] tensor."
    )


def tensor_to_pil(image: torch.Tensor) -> PIL.Image.Image:
    """A `[C, H, W]` tensor in `[0, 1]` (C = 1 or 3) as an 8-bit PIL image (mode `"L"` or `"RGB"`). Not differentiable."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"Expected an image tensor shaped [1 or 3, H, W], got {tuple(image.shape)}.")
    array = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
    if array.shape[0] == 1:
        return PIL.Image.fromarray(array[0], mode="L")
    return PIL.Image.fromarray(array.transpose(1, 2, 0), mode="RGB")


def pil_to_tensor(image: Any, channels: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """An image as a float `[channels, H, W]` tensor in `[0, 1]`, converted to `"L"`/`"RGB"` and resized if asked.

    Args:
        image: Anything `to_pil_image` reads.
        channels (`int`): 1 (grayscale) or 3 (RGB).
        size (`tuple[int, int]`, *optional*): `(height, width)` to resize to (bicubic).
    """
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3, got {channels}.")
    pil = to_pil_image(image).convert("L" if channels == 1 else "RGB")
    if size is not None and (pil.height, pil.width) != tuple(size):
        pil = pil.resize((size[1], size[0]), PIL.Image.Resampling.BICUBIC)
    array = np.asarray(pil, dtype=np.float32) / 255.0
    if channels == 1:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def images_to_array(images: list[Any]) -> np.ndarray:
    """Images (same size) as a float `[N, D]` array of flattened pixels in `[0, 1]`; grayscale kept 1-channel.

    Mixed modes are all converted to RGB when any image is RGB. Raises `ValueError` on mixed sizes.
    """
    pils = [to_pil_image(image) for image in images]
    if not pils:
        return np.zeros((0, 0), dtype=np.float32)
    channels = 1 if all(pil.mode in ("L", "1", "I", "F") for pil in pils) else 3
    sizes = {pil.size for pil in pils}
    if len(sizes) > 1:
        raise ValueError(f"Images have different sizes {sorted(sizes)}: resize them to one size first.")
    return np.stack([pil_to_tensor(pil, channels).numpy().reshape(-1) for pil in pils])

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

from .base import SEVERITIES, Modality, RandomState, row_generator
from .dataset import CORRUPTIONS, IMAGE_CORRUPTIONS, TEXT_CORRUPTIONS, Corruption, corrupt_dataset, get_corruption
from .image import GaussianBlur, GaussianNoise, ImageCorruption, ImageLike, Occlusion, Rotation
from .text import KEYBOARD_NEIGHBOURS, CharacterSwaps, KeyboardTypos, TextCorruption, WordDropout, edit_distance

__all__ = [
    "CORRUPTIONS",
    "IMAGE_CORRUPTIONS",
    "KEYBOARD_NEIGHBOURS",
    "SEVERITIES",
    "TEXT_CORRUPTIONS",
    "CharacterSwaps",
    "Corruption",
    "GaussianBlur",
    "GaussianNoise",
    "ImageCorruption",
    "ImageLike",
    "KeyboardTypos",
    "Modality",
    "Occlusion",
    "RandomState",
    "Rotation",
    "TextCorruption",
    "WordDropout",
    "corrupt_dataset",
    "edit_distance",
    "get_corruption",
    "row_generator",
]

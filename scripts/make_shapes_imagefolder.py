"""Writes `shapes/`, a small image classification data set the project was never tuned on, as an `imagefolder`.

Three classes of 28x28 RGB pictures — a filled square, a cross, a ring — in a random colour at a random place and
size on dark noise; 150 training and 40 test images per class, seeded (the same files every time). The image recipe
reads it offline through `--dataset_name` with the default config (`recipes/results/shapes/`):

    python scripts/make_shapes_imagefolder.py /tmp/shapes
    python recipes/image_classification.py --config recipes/configs/digits.yaml --dataset_name /tmp/shapes \
        --compare true --compare_preset quick --compare_methods real_only random_synthetic active_synthesis \
        --output_dir runs/shapes-compare
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = ("square", "cross", "ring")
SPLIT_SIZES = (("train", 150), ("test", 40))


def draw(rng: np.random.Generator, label: int) -> np.ndarray:
    image = rng.integers(0, 60, (28, 28, 3)).astype(np.uint8)
    colour = rng.integers(120, 256, 3)
    cx, cy, r = rng.integers(9, 19), rng.integers(9, 19), rng.integers(5, 9)
    yy, xx = np.mgrid[:28, :28]
    if label == 0:
        mask = (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    elif label == 1:
        mask = ((abs(xx - cx) <= 1) | (abs(yy - cy) <= 1)) & (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    else:
        distance = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        mask = (distance <= r) & (distance >= r - 2)
    image[mask] = colour
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for split, count in SPLIT_SIZES:
        for label, name in enumerate(CLASS_NAMES):
            folder = args.output_dir / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                Image.fromarray(draw(rng, label)).save(folder / f"{index}.png")


if __name__ == "__main__":
    main()

"""The embedded image task: scikit-learn's bundled 8x8 digits, a tiny classifier for them, and a cached DDPM.

What the image recipe and tests need around the digits (the library core never imports this module):

* `load_digits_dataset` / `split_digits`: the 1,797 real digits (no download) and seeded stratified
  train (a per-class budget) / pool / test splits.
* `preprocess_digits` and `digits_to_model_inputs`: the classifier's input pipeline, the second one differentiable
  (it maps `[0, 1]` images from a diffusion pipeline onto the same inputs, for guidance).
* `make_digits_classifier`: a tiny `AutoModelForImageClassification` that trains in about a second on CPU.
* `train_class_conditional_ddpm`: trains (or loads from its cache) a class-conditional `UNet2DModel` on real
  training digits and returns a `ClassConditionalImagePipeline`.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from filelock import FileLock

from ..generators.diffusion_pipeline import ClassConditionalImagePipeline
from ..image_utils import pil_to_tensor

__all__ = [
    "DIGITS_IMAGE_SIZE",
    "DIGITS_LABEL_NAMES",
    "DIGITS_NUM_LABELS",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "build_class_conditional_unet",
    "digits_to_model_inputs",
    "images_to_tensor",
    "load_digits_dataset",
    "make_digits_classifier",
    "preprocess_digits",
    "split_digits",
    "train_class_conditional_ddpm",
]

DIGITS_IMAGE_SIZE = 8
DIGITS_NUM_LABELS = 10
DIGITS_LABEL_NAMES = [str(digit) for digit in range(DIGITS_NUM_LABELS)]
PIXEL_MEAN = 0.5
PIXEL_STD = 0.5


# ---------------------------------------------------------------------------------------------------------- data
def load_digits_dataset() -> Any:
    """The 1,797 digits of `sklearn.datasets.load_digits` as a `datasets.Dataset`.

    Returns:
        `datasets.Dataset`: `image` (8x8 grayscale PIL via `datasets.Image()`, the 0-16 intensities scaled to
        0-255) and `label` (`ClassLabel` with names `"0"` ... `"9"`).
    """
    from datasets import ClassLabel, Dataset, Features, Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    features = Features({"image": Image(), "label": ClassLabel(names=DIGITS_LABEL_NAMES)})
    return Dataset.from_dict({"image": list(pixels), "label": digits.target.tolist()}, features=features)


def split_digits(
    dataset: Any | None = None,
    train_per_class: int = 10,
    test_fraction: float = 0.25,
    seed: int = 0,
    label_column: str = "label",
) -> Any:
    """Seeded stratified splits: a small labelled train budget, an unlabelled-style pool, and a test set.

    Per class, a `test_fraction` share (rounded) goes to `test`, then `train_per_class` examples to `train`, and the
    rest to `pool`. The same seed always gives the same rows.

    Args:
        dataset (`datasets.Dataset`, *optional*): Defaults to `load_digits_dataset()`.
        train_per_class (`int`, defaults to 10): Training examples per class.
        test_fraction (`float`, defaults to 0.25): Share of each class held out for testing.
        seed (`int`, defaults to 0): Seed of the shuffle.
        label_column (`str`, defaults to `"label"`): The label column.

    Returns:
        `datasets.DatasetDict` with `train`, `pool` and `test`.
    """
    from datasets import DatasetDict

    dataset = load_digits_dataset() if dataset is None else dataset
    if train_per_class < 1:
        raise ValueError(f"train_per_class must be >= 1, got {train_per_class}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    labels = np.asarray(dataset[label_column])
    rng = np.random.default_rng(seed)
    splits: dict[str, list[int]] = {"train": [], "pool": [], "test": []}
    for label in np.unique(labels):
        indices = rng.permutation(np.flatnonzero(labels == label))
        num_test = int(round(len(indices) * test_fraction))
        if len(indices) - num_test < train_per_class:
            raise ValueError(
                f"Class {label} has {len(indices)} examples: too few for {num_test} test + {train_per_class} train. "
                "Lower train_per_class or test_fraction."
            )
        splits["test"].extend(indices[:num_test].tolist())
        splits["train"].extend(indices[num_test : num_test + train_per_class].tolist())
        splits["pool"].extend(indices[num_test + train_per_class :].tolist())
    return DatasetDict({name: dataset.select(sorted(rows)) for name, rows in splits.items()})


# ---------------------------------------------------------------------------------------------- model inputs
def digits_to_model_inputs(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Differentiable map from images in `[0, 1]` (`[B, 1 or 3, 8, 8]`) to the classifier's `pixel_values`.

    RGB images are averaged to grayscale. `preprocess_digits` applies the same normalization to real images.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"Expected images shaped [B, 1 or 3, H, W] in [0, 1], got {tuple(images.shape)}.")
    if images.shape[1] == 3:
        images = images.mean(dim=1, keepdim=True)
    if images.shape[-2:] != (DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE):
        images = torch.nn.functional.interpolate(
            images, size=(DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE), mode="bilinear", antialias=True, align_corners=False
        )
    return {"pixel_values": (images - PIXEL_MEAN) / PIXEL_STD}


def preprocess_digits(batch: Mapping[str, Sequence[Any]], image_column: str = "image") -> dict[str, torch.Tensor]:
    """Batch transform for the classifier: `{"pixel_values": float tensor [B, 1, 8, 8]}`.

    Use with `dataset.with_transform` or `set_transform`. Images of another size or mode (synthetic RGB, say) are
    converted to 8x8 grayscale first. Other columns (labels) are not returned: add them in your transform if needed.
    """
    if image_column not in batch:
        raise KeyError(f"The batch has no {image_column!r} column (columns: {sorted(batch)}).")
    size = (DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE)
    images = torch.stack([pil_to_tensor(image, channels=1, size=size) for image in batch[image_column]])
    return digits_to_model_inputs(images)


def images_to_tensor(images: Sequence[Any]) -> torch.Tensor:
    """8x8 grayscale images (PIL or arrays) as a float tensor `[N, 1, 8, 8]` in `[0, 1]`."""
    size = (DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE)
    return torch.stack([pil_to_tensor(image, channels=1, size=size) for image in images])


# ------------------------------------------------------------------------------------------------ classifier
def make_digits_classifier(
    architecture: Literal["resnet", "convnext"] = "resnet", seed: int = 0, label_names: Sequence[str] | None = None
) -> Any:
    """A tiny image classifier for 8x8 digits, randomly initialised from a config (seeded).

    Args:
        architecture (`str`, defaults to `"resnet"`):
            * `"resnet"`: `ResNetForImageClassification`, 20k parameters, ~97% test accuracy after 15 epochs on 500
              digits (about a second on one CPU core). It has **no dropout** (and BatchNorm), so use it with deep
              ensembles, not MC dropout.
            * `"convnext"`: `ConvNextForImageClassification` (patch 2, two stages), 16k parameters, ~95% on the same
              budget. Its stochastic depth (`drop_path_rate=0.1`, `ConvNextDropPath` modules) is active in train
              mode and it uses LayerNorm, so MC dropout over it samples something.
        seed (`int`, defaults to 0): Seed of the initialisation.
        label_names (`Sequence[str]`, *optional*): The classes (another image data set through the image recipe's
            `--dataset_name`); defaults to the ten digits.
    """
    from transformers import AutoModelForImageClassification, ConvNextConfig, ResNetConfig

    id2label = dict(enumerate(DIGITS_LABEL_NAMES if label_names is None else [str(name) for name in label_names]))
    label2id = {name: index for index, name in id2label.items()}
    common = {"num_channels": 1, "num_labels": len(id2label), "id2label": id2label, "label2id": label2id}
    if architecture == "resnet":
        config = ResNetConfig(
            embedding_size=16,
            hidden_sizes=[16, 32],
            depths=[1, 1],
            layer_type="basic",
            downsample_in_first_stage=False,
            **common,
        )
    elif architecture == "convnext":
        config = ConvNextConfig(
            patch_size=2,
            num_stages=2,
            hidden_sizes=[16, 32],
            depths=[1, 1],
            drop_path_rate=0.1,
            layer_scale_init_value=1.0,  # the default 1e-6 makes dropped paths invisible until trained
            **common,
        )
    else:
        raise ValueError(f"Unknown architecture {architecture!r}: choose 'resnet' or 'convnext'.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForImageClassification.from_config(config)


# ------------------------------------------------------------------------------------------------------ DDPM
def _training_tensors(dataset: Any, image_column: str, label_column: str) -> tuple[torch.Tensor, torch.Tensor]:
    if image_column not in dataset.column_names or label_column not in dataset.column_names:
        raise ValueError(
            f"The dataset needs {image_column!r} and {label_column!r} columns; it has {dataset.column_names}."
        )
    if len(dataset) == 0:
        raise ValueError("Cannot train a diffusion model on an empty dataset.")
    images = images_to_tensor(dataset[image_column])
    labels = torch.as_tensor(dataset[label_column], dtype=torch.long)
    return images, labels


def _cache_key(images: torch.Tensor, labels: torch.Tensor, hyperparameters: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray((images * 255).round().to(torch.uint8).numpy()).tobytes())
    digest.update(labels.numpy().astype(np.int64).tobytes())
    digest.update(json.dumps(hyperparameters, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def build_class_conditional_unet(
    num_labels: int = DIGITS_NUM_LABELS,
    sample_size: int = DIGITS_IMAGE_SIZE,
    channels: int = 1,
    block_out_channels: Sequence[int] = (32, 64),
    layers_per_block: int = 1,
) -> Any:
    """A class-conditional `UNet2DModel` without attention (~650k parameters with the defaults)."""
    from diffusers import UNet2DModel

    num_blocks = len(block_out_channels)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(block_out_channels),
        down_block_types=("DownBlock2D",) * num_blocks,
        up_block_types=("UpBlock2D",) * num_blocks,
        layers_per_block=layers_per_block,
        norm_num_groups=min(32, min(block_out_channels)),
        num_class_embeds=num_labels,
    )


def train_class_conditional_ddpm(
    dataset: Any,
    output_dir: str | Path,
    *,
    image_column: str = "image",
    label_column: str = "label",
    num_labels: int = DIGITS_NUM_LABELS,
    num_train_steps: int = 600,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    block_out_channels: Sequence[int] = (32, 64),
    layers_per_block: int = 1,
    num_train_timesteps: int = 1000,
    beta_schedule: str = "squaredcos_cap_v2",
    seed: int = 0,
    device: str | torch.device | None = None,
) -> ClassConditionalImagePipeline:
    """Trains a class-conditional DDPM on `dataset` (use the *real training split only*), or loads it from cache.

    The model is saved with `save_pretrained` under `output_dir/ddpm-<key>`, where the key hashes the training
    pixels, labels and every hyper-parameter here (not `device`), so a changed split or setting retrains and an
    identical call loads. A `training_info.json` next to it records the loss and the training time.

    Args:
        dataset (`datasets.Dataset`): Real training images (8x8 grayscale or anything `pil_to_tensor` reads) and
            labels.
        output_dir (`str` or `Path`): Cache directory.
        image_column (`str`, defaults to `"image"`), label_column (`str`, defaults to `"label"`): Columns.
        num_labels (`int`, defaults to 10): Size of the class embedding.
        num_train_steps (`int`, defaults to 600): Optimiser steps (the ~60 s budget on two CPU cores).
        batch_size (`int`, defaults to 64): Images per step (sampled with replacement, seeded).
        learning_rate (`float`, defaults to 2e-3): AdamW learning rate, cosine-decayed to 0 after 5% warm-up.
        block_out_channels (`Sequence[int]`, defaults to `(32, 64)`), layers_per_block (`int`, defaults to 1): UNet
            size.
        num_train_timesteps (`int`, defaults to 1000), beta_schedule (`str`, defaults to `"squaredcos_cap_v2"`):
            The DDPM noise schedule; sampling uses a `DDIMScheduler` with the same configuration.
        seed (`int`, defaults to 0): Seeds initialisation, batches, noise and timesteps.
        device (`str` or `torch.device`, *optional*): Defaults to CUDA when available, else CPU.

    Returns:
        `ClassConditionalImagePipeline` (in eval mode, on CPU) with a `DDIMScheduler`.
    """
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

    if num_train_steps < 1 or batch_size < 1:
        raise ValueError("num_train_steps and batch_size must be >= 1.")
    images, labels = _training_tensors(dataset, image_column, label_column)
    if labels.min() < 0 or labels.max() >= num_labels:
        raise ValueError(f"Labels must lie in [0, {num_labels}); got {labels.min().item()}..{labels.max().item()}.")
    hyperparameters = {
        "num_labels": num_labels,
        "num_train_steps": num_train_steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "block_out_channels": list(block_out_channels),
        "layers_per_block": layers_per_block,
        "num_train_timesteps": num_train_timesteps,
        "beta_schedule": beta_schedule,
        "seed": seed,
        "shape": list(images.shape[1:]),
    }
    path = Path(output_dir) / f"ddpm-{_cache_key(images, labels, hyperparameters)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Processes sharing the cache (parallel comparison runs) wait while one trains this key, then load its model.
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        if (path / "model_index.json").is_file():
            unet = UNet2DModel.from_pretrained(path / "unet")
            scheduler = DDIMScheduler.from_pretrained(path / "scheduler")
            return ClassConditionalImagePipeline(unet=unet.eval(), scheduler=scheduler)

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        noise_scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet = build_class_conditional_unet(
                num_labels, images.shape[-1], images.shape[1], block_out_channels, layers_per_block
            )
        unet.to(device).train()
        optimizer = torch.optim.AdamW(unet.parameters(), lr=learning_rate, weight_decay=1e-4)
        warmup = max(1, num_train_steps // 20)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, num_train_steps - warmup)))

        lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        generator = torch.Generator().manual_seed(seed)
        clean_all = images * 2.0 - 1.0
        alphas_cumprod = noise_scheduler.alphas_cumprod.to(device)
        losses: list[float] = []
        start = time.perf_counter()
        for _ in range(num_train_steps):
            rows = torch.randint(len(clean_all), (batch_size,), generator=generator)
            clean = clean_all[rows].to(device)
            noise = torch.randn(clean.shape, generator=generator).to(device)
            timesteps = torch.randint(num_train_timesteps, (batch_size,), generator=generator).to(device)
            alpha = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
            noisy = alpha.sqrt() * clean + (1 - alpha).sqrt() * noise
            prediction = unet(noisy, timesteps, class_labels=labels[rows].to(device)).sample
            loss = torch.nn.functional.mse_loss(prediction, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr_scheduler.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - start

        pipeline = ClassConditionalImagePipeline(
            unet=unet.to("cpu").eval(), scheduler=DDIMScheduler.from_config(noise_scheduler.config)
        )
        staging = path.with_name(path.name + ".partial")
        for stale in (staging, path):  # leftovers of an interrupted run
            if stale.exists():
                shutil.rmtree(stale)
        pipeline.save_pretrained(staging)
        tail = losses[-max(1, len(losses) // 10) :]
        info = {
            "hyperparameters": hyperparameters,
            "num_examples": len(labels),
            "train_seconds": round(seconds, 2),
            "final_loss": float(np.mean(tail)),
            "device": str(device),
        }
        (staging / "training_info.json").write_text(json.dumps(info, indent=2))
        staging.replace(path)  # atomic: a half-written model is never taken for a cached one
        return pipeline

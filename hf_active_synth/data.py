"""Validating user datasets and turning raw rows (text, images) into model inputs.

The loop keeps two views of every dataset: the *raw* one (the input column a generator produces, the label,
provenance) and the *model-input* one (token ids or pixel values, `labels`, `is_synthetic`) that training and
scoring consume. `preprocess` is the single bridge between them, so real and synthetic rows are encoded the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from datasets import ClassLabel, Dataset, Value, concatenate_datasets
from transformers import PreTrainedTokenizerBase
from transformers.image_processing_utils import BaseImageProcessor

Preprocess = Callable[[dict[str, list[Any]]], dict[str, Any]]
"""A batched function from raw columns to model-input columns (what `Dataset.map(batched=True)` takes)."""

LABELS_COLUMN = "labels"
IS_SYNTHETIC_COLUMN = "is_synthetic"


def make_preprocess(processing_class: Any, input_column: str, max_length: int = 128) -> Preprocess:
    """The default raw -> model-input function for a processing class.

    * a tokenizer: tokenizes `input_column` with truncation at `max_length` (padding happens in the collator);
    * an image processor: turns the images in `input_column` into `pixel_values`;
    * `None`: passes `input_column` through unchanged, as the model's keyword argument of the same name (for a plain
      `nn.Module` whose `forward` takes that column).
    """
    if isinstance(processing_class, PreTrainedTokenizerBase):

        def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
            return processing_class(batch[input_column], truncation=True, max_length=max_length)

        return tokenize
    if isinstance(processing_class, BaseImageProcessor):

        def process_images(batch: dict[str, list[Any]]) -> dict[str, Any]:
            images = [image.convert("RGB") if hasattr(image, "convert") else image for image in batch[input_column]]
            return {"pixel_values": processing_class(images, return_tensors="np")["pixel_values"]}

        return process_images
    if processing_class is None:

        def passthrough(batch: dict[str, list[Any]]) -> dict[str, Any]:
            return {input_column: batch[input_column]}

        return passthrough
    raise TypeError(
        f"Cannot build a default preprocess for a processing class of type {type(processing_class).__name__}. "
        "Pass `preprocess=` (a batched function from raw columns to model inputs) to the trainer."
    )


def validate_dataset(
    dataset: Any,
    *,
    name: str,
    input_column: str,
    label_column: str,
    num_labels: int | None,
) -> None:
    """Checks a raw classification dataset before any expensive work, raising an error that names the fix."""
    if not isinstance(dataset, Dataset):
        raise TypeError(
            f"`{name}` must be a `datasets.Dataset`, got {type(dataset).__name__}. Wrap in-memory data with "
            "`Dataset.from_dict(...)`; for a `DatasetDict`, pass one split, e.g. `dataset['train']`."
        )
    if len(dataset) == 0:
        raise ValueError(f"`{name}` is empty: it needs at least one labelled example.")
    columns = dataset.column_names
    for column, option in ((label_column, "label_column"), (input_column, "input_column")):
        if column not in columns:
            raise ValueError(
                f"`{name}` has no column {column!r} (its columns: {columns}). Set `{option}` in "
                f"ActiveSynthesisConfig to the right column, or rename it with `dataset.rename_column(old, {column!r})`."
            )
    labels = dataset[label_column]
    bad = [label for label in labels if not isinstance(label, int) or isinstance(label, bool)]
    if bad:
        raise ValueError(
            f"`{name}` column {label_column!r} must hold integer class ids, found {bad[0]!r} "
            f"({type(bad[0]).__name__}). Encode string labels with `dataset.class_encode_column({label_column!r})`."
        )
    if num_labels is not None:
        out_of_range = sorted({label for label in labels if not 0 <= label < num_labels})
        if out_of_range:
            raise ValueError(
                f"`{name}` has labels {out_of_range[:10]} outside [0, {num_labels}) (the model's num_labels). "
                "Build the model with the right `num_labels`, or remap the labels."
            )


def infer_num_labels(model: torch.nn.Module | None, dataset: Dataset, label_column: str) -> int:
    """The number of classes: the model config's `num_labels`, else the dataset's `ClassLabel`."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "num_labels", None):
        return int(config.num_labels)
    feature = dataset.features.get(label_column)
    if isinstance(feature, ClassLabel):
        return feature.num_classes
    raise ValueError(
        "Cannot tell how many classes there are: the model has no `config.num_labels` and the label column is not a "
        f"`ClassLabel`. Cast it with `dataset.cast_column({label_column!r}, ClassLabel(names=[...]))`."
    )


def label_names(dataset: Dataset, label_column: str, num_labels: int) -> list[str]:
    """Class names from a `ClassLabel` feature, else the class ids as strings."""
    feature = dataset.features.get(label_column)
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    return [str(label) for label in range(num_labels)]


def to_model_inputs(
    dataset: Dataset,
    preprocess: Preprocess,
    *,
    label_column: str | None,
    is_synthetic: bool,
) -> Dataset:
    """Encodes raw rows with `preprocess` and adds `labels` and `is_synthetic` (all other columns are dropped)."""
    encoded = dataset.map(preprocess, batched=True, remove_columns=dataset.column_names, desc="Preprocessing")
    clashes = {LABELS_COLUMN, IS_SYNTHETIC_COLUMN} & set(encoded.column_names)
    if clashes:
        raise ValueError(f"`preprocess` must not return the reserved column(s) {sorted(clashes)}.")
    if label_column is not None:
        encoded = encoded.add_column(LABELS_COLUMN, [int(label) for label in dataset[label_column]])
        encoded = encoded.cast_column(LABELS_COLUMN, Value("int64"))
    encoded = encoded.add_column(IS_SYNTHETIC_COLUMN, [is_synthetic] * len(encoded))
    return encoded.with_format("torch")


def merge_model_inputs(real: Dataset, synthetic: Dataset | None) -> Dataset:
    """Real ∪ synthetic model inputs, real rows first (the order only matters for reproducibility)."""
    if synthetic is None or len(synthetic) == 0:
        return real
    # Generators may produce other dtypes (float64 vs float32 pixels, say): encode synthetic rows like real ones.
    synthetic = synthetic.with_format(None).cast(real.features)
    return concatenate_datasets([real.with_format(None), synthetic]).with_format("torch")

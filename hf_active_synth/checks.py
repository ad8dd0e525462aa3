"""Checks of what users hand the trainer, run before any expensive work; every error names the problem and the fix.

The checks of a dataset's columns and labels live in `data.validate_dataset`; these call it for every dataset and
add the checks that need the model or the generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from datasets import Dataset
from torch import nn

from .config import ActiveSynthesisConfig
from .data import infer_num_labels, validate_dataset
from .modeling import extract_logits


def check_trainer_inputs(
    args: Any,
    model: nn.Module | None,
    model_init: Callable[[], nn.Module] | None,
    train_dataset: Dataset | None,
    eval_dataset: Dataset | None = None,
    pool_dataset: Dataset | None = None,
) -> int:
    """Checks the trainer's arguments and returns the number of classes.

    Args:
        args: Must be an [`ActiveSynthesisConfig`].
        model (`nn.Module`, *optional*), model_init (`Callable`, *optional*): One of them is needed; without a model,
            `model_init()` is called once to read `num_labels`.
        train_dataset (`datasets.Dataset`): The real labelled rows (required).
        eval_dataset (`datasets.Dataset`, *optional*), pool_dataset (`datasets.Dataset`, *optional*): Checked too.

    Raises:
        `TypeError` or `ValueError`: Naming what is wrong and how to fix it.
    """
    if not isinstance(args, ActiveSynthesisConfig):
        raise TypeError(
            f"`args` must be an ActiveSynthesisConfig, got {type(args).__name__}. Build one with "
            "`ActiveSynthesisConfig(output_dir=..., ...)` (it accepts every TrainingArguments field)."
        )
    if model is None and model_init is None:
        raise ValueError("Pass a `model` (or a `model_init`) to ActiveSynthesisTrainer.")
    probe_model = model if model is not None else model_init()
    if train_dataset is None:
        raise ValueError("ActiveSynthesisTrainer needs `train_dataset`: the real labelled examples.")
    num_labels = infer_num_labels(probe_model, train_dataset, args.label_column)
    for name, dataset in (
        ("train_dataset", train_dataset),
        ("eval_dataset", eval_dataset),
        ("pool_dataset", pool_dataset),
    ):
        if dataset is not None:
            validate_dataset(
                dataset,
                name=name,
                input_column=args.input_column,
                label_column=args.label_column,
                num_labels=num_labels,
            )
    return num_labels


def check_model_returns_logits(
    model: nn.Module, batch: Mapping[str, Any], num_labels: int, device: torch.device | str
) -> None:
    """Runs `model` once on `batch` (in eval mode, restored after) and checks it returns `[batch, num_labels]` logits.

    Raises:
        `TypeError`: The model returns no logits (see `modeling.extract_logits`).
        `ValueError`: It returns a different number of logits than there are classes.
    """
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = extract_logits(model(**batch))
    finally:
        model.train(was_training)
    if logits.shape[-1] != num_labels:
        raise ValueError(
            f"The model returns {logits.shape[-1]} logits per example but the data has {num_labels} "
            "classes. Build the model with `num_labels` matching the label column."
        )


def check_generator(generator: Any) -> None:
    """Checks a synthesizing run has a generator with a `generate(request)` method."""
    if generator is None:
        raise ValueError("`run_cycles` needs a generator: pass `generator=` to ActiveSynthesisTrainer.")
    if not callable(getattr(generator, "generate", None)):
        raise TypeError(f"The generator {type(generator).__name__} has no `generate(request)` method.")

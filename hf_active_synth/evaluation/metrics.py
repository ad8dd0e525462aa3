"""Classification metrics through the `evaluate` library, loaded offline from modules shipped in this package.

`evaluate.load("accuracy")` fetches the metric script from the Hugging Face Hub. A training loop must not depend
on the network, so `hf_active_synth` ships its own `evaluate.Metric` modules (`metric_modules/<name>/<name>.py`,
computed with scikit-learn) and `load_metric` loads those by local path; `evaluate` then copies them into its
modules cache and never calls the Hub, also under `HF_HUB_OFFLINE=1`.

Example:

```python
>>> from hf_active_synth.evaluation.metrics import make_compute_metrics
>>> trainer = Trainer(..., compute_metrics=make_compute_metrics(n_bins=15))
>>> trainer.evaluate()  # {"eval_accuracy": ..., "eval_f1_macro": ..., "eval_ece": ..., ...}
```
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import evaluate
import numpy as np
from transformers import EvalPrediction

METRIC_MODULES_DIR = Path(__file__).resolve().parent / "metric_modules"
"""Folder of the `evaluate` metric modules shipped with the package, one sub-folder per metric."""

SHIPPED_METRICS: tuple[str, ...] = ("accuracy", "f1", "expected_calibration_error")
"""Names `load_metric` resolves to a shipped module (no network)."""

ComputeMetrics = Callable[[EvalPrediction], dict[str, float]]


def metric_module_path(name: str) -> Path:
    """Path of the shipped `evaluate` module folder for the metric `name` (one of `SHIPPED_METRICS`).

    Args:
        name (`str`): The metric name, e.g. `"accuracy"`.

    Returns:
        `Path`: A folder holding `<name>.py`, suitable for `evaluate.load(str(path))`.
    """
    if name not in SHIPPED_METRICS:
        raise ValueError(
            f"No metric module named {name!r} ships with hf_active_synth; choose one of {SHIPPED_METRICS}."
        )
    path = METRIC_MODULES_DIR / name
    if not (path / f"{name}.py").is_file():
        raise FileNotFoundError(
            f"The shipped metric module {path / f'{name}.py'} is missing: the package was installed without its "
            "package data. Reinstall hf-active-synth (its wheel includes evaluation/metric_modules/*/*.py)."
        )
    return path


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """Loads an `evaluate` metric, preferring the module shipped with this package over the Hub.

    Shipped metrics (`SHIPPED_METRICS`) load from their local path and never touch the network. Any other name is
    passed to `evaluate.load(name)`, which needs the Hugging Face Hub (or its cache).

    Args:
        name (`str`): A shipped metric name, or any name/path `evaluate.load` accepts.
        **kwargs: Forwarded to `evaluate.load`. `keep_in_memory` defaults to `True` so that computing a metric
            writes no cache files (pass `keep_in_memory=False` for distributed evaluation with `num_process > 1`).

    Returns:
        `evaluate.EvaluationModule`: The loaded metric.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"The metric name must be a non-empty string, got {name!r}.")
    if kwargs.get("num_process", 1) == 1:
        kwargs.setdefault("keep_in_memory", True)
    if name in SHIPPED_METRICS:
        return evaluate.load(str(metric_module_path(name)), **kwargs)
    try:
        return evaluate.load(name, **kwargs)
    except (FileNotFoundError, ConnectionError) as error:
        raise FileNotFoundError(
            f"Could not load the metric {name!r}: it does not ship with hf_active_synth ({SHIPPED_METRICS}) and "
            "the Hugging Face Hub is unreachable or does not have it. Use a shipped metric or pass a local path to "
            "an evaluate module."
        ) from error


def logits_to_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over the class axis of logits shaped `[N, C]`, or `[N, C, K]` for an ensemble of `K` members.

    Ensemble logits are turned into each member's probabilities and then averaged over members (the ensemble's
    predictive distribution).

    Args:
        logits (`np.ndarray`): Logits `[N, C]` or `[N, C, K]`.

    Returns:
        `np.ndarray`: Probabilities `[N, C]` (float64), each row summing to 1.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim not in (2, 3) or logits.shape[0] == 0 or logits.shape[1] < 2:
        raise ValueError(
            f"Expected logits shaped [N, C] or [N, C, K] with N >= 1 and C >= 2, got shape {logits.shape}."
        )
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits contain NaN or infinite values; check the model's outputs.")
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities.mean(axis=2) if probabilities.ndim == 3 else probabilities


class ClassificationMetrics:
    """Accuracy, macro-F1 and expected calibration error from logits, computed by `evaluate` metrics.

    The three metrics are loaded once, at construction, from the modules shipped with the package.

    Args:
        n_bins (`int`, defaults to 15): Number of equal-width confidence bins for the ECE.
        num_labels (`int`, *optional*): If given, macro-F1 averages over all `num_labels` classes (a class absent
            from both predictions and references scores 0); otherwise over the classes present (scikit-learn's
            default).
    """

    def __init__(self, n_bins: int = 15, num_labels: int | None = None):
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
        if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int)):
            raise TypeError(f"num_labels must be an int or None, got {num_labels!r}.")
        if num_labels is not None and num_labels < 2:
            raise ValueError(f"num_labels must be at least 2, got {num_labels}.")
        self.n_bins = n_bins
        self.num_labels = num_labels
        self.accuracy = load_metric("accuracy")
        self.f1 = load_metric("f1")
        self.ece = load_metric("expected_calibration_error")

    def compute(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Metrics for `logits` (`[N, C]` or ensemble `[N, C, K]`) against integer `labels` (`[N]`).

        Returns:
            `dict[str, float]`: `{"accuracy", "f1_macro", "ece"}`.
        """
        probabilities = logits_to_probabilities(logits)
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != probabilities.shape[0]:
            raise ValueError(
                f"Expected one integer label per example, shape ({probabilities.shape[0]},), got {labels.shape}."
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be integer class ids, got dtype {labels.dtype}.")
        if labels.min() < 0 or labels.max() >= probabilities.shape[1]:
            raise ValueError(
                f"labels must be class ids in [0, {probabilities.shape[1]}) (the number of logit columns), got values "
                f"in [{labels.min()}, {labels.max()}]. Padding labels such as -100 must be removed first."
            )
        if self.num_labels is not None and probabilities.shape[1] != self.num_labels:
            raise ValueError(f"num_labels is {self.num_labels} but the logits have {probabilities.shape[1]} classes.")
        predictions = probabilities.argmax(axis=1)
        f1_labels = list(range(self.num_labels)) if self.num_labels is not None else None
        return {
            "accuracy": self.accuracy.compute(predictions=predictions, references=labels)["accuracy"],
            "f1_macro": self.f1.compute(
                predictions=predictions, references=labels, average="macro", labels=f1_labels, zero_division=0.0
            )["f1"],
            "ece": self.ece.compute(predictions=probabilities, references=labels, n_bins=self.n_bins)[
                "expected_calibration_error"
            ],
        }

    def __call__(self, eval_pred: EvalPrediction) -> dict[str, float]:
        """The `transformers.Trainer` `compute_metrics` hook: `EvalPrediction` -> `{"accuracy", "f1_macro", "ece"}`."""
        logits = eval_pred.predictions
        if isinstance(logits, (tuple, list)):
            # Models returning extra outputs (hidden states, ...) put the logits first.
            logits = logits[0]
        if eval_pred.label_ids is None:
            raise ValueError(
                "EvalPrediction has no label_ids: the evaluation dataset needs a `labels` column (or set "
                "`label_names` in the training arguments)."
            )
        return self.compute(logits, eval_pred.label_ids)


def compute_classification_metrics(
    logits: np.ndarray, labels: np.ndarray, n_bins: int = 15, num_labels: int | None = None
) -> dict[str, float]:
    """Accuracy, macro-F1 and ECE of `logits` (`[N, C]` or `[N, C, K]`) against integer `labels`, in one call.

    Loads the metrics on every call; inside a loop build `make_compute_metrics()` once instead.

    Returns:
        `dict[str, float]`: `{"accuracy", "f1_macro", "ece"}`.
    """
    return ClassificationMetrics(n_bins=n_bins, num_labels=num_labels).compute(logits, labels)


def make_compute_metrics(n_bins: int = 15, num_labels: int | None = None) -> ComputeMetrics:
    """A `transformers.Trainer`-compatible `compute_metrics(eval_pred) -> {"accuracy", "f1_macro", "ece"}`.

    Logits are turned into probabilities inside (ensemble logits `[N, C, K]` are averaged over members); the
    metrics are loaded once, offline, from the modules shipped with the package. The `Trainer` prefixes the keys
    with `eval_`.

    Args:
        n_bins (`int`, defaults to 15): Number of equal-width bins for the expected calibration error.
        num_labels (`int`, *optional*): Average macro-F1 over all these classes instead of the classes present.

    Returns:
        A callable taking a `transformers.EvalPrediction`.
    """
    return ClassificationMetrics(n_bins=n_bins, num_labels=num_labels)

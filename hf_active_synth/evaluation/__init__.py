"""Evaluation building blocks: offline `evaluate` metrics, seeded corruptions for robustness, comparison reports.

- `metrics`: `load_metric`, `make_compute_metrics` (a `Trainer` `compute_metrics` giving accuracy, macro-F1, ECE).
- `corruptions`: image and text corruptions with severities 1-5, and `corrupt_dataset`.
- `analysis`, `summary`, `tables`, `plots`, `report`: per-run numbers, the comparison summary computed once from them,
  its markdown tables, figures, and `report.md` + `summary.json` (`build_report`).
"""

from .analysis import load_history, load_results, samples_to_reach
from .corruptions import (
    CORRUPTIONS,
    IMAGE_CORRUPTIONS,
    TEXT_CORRUPTIONS,
    CharacterSwaps,
    GaussianBlur,
    GaussianNoise,
    KeyboardTypos,
    Occlusion,
    Rotation,
    WordDropout,
    corrupt_dataset,
    get_corruption,
)
from .metrics import (
    SHIPPED_METRICS,
    ClassificationMetrics,
    compute_classification_metrics,
    load_metric,
    make_compute_metrics,
)
from .report import build_report
from .tables import render_results_table

__all__ = [
    "CORRUPTIONS",
    "IMAGE_CORRUPTIONS",
    "SHIPPED_METRICS",
    "TEXT_CORRUPTIONS",
    "CharacterSwaps",
    "ClassificationMetrics",
    "GaussianBlur",
    "GaussianNoise",
    "KeyboardTypos",
    "Occlusion",
    "Rotation",
    "WordDropout",
    "build_report",
    "compute_classification_metrics",
    "corrupt_dataset",
    "get_corruption",
    "load_history",
    "load_metric",
    "load_results",
    "make_compute_metrics",
    "render_results_table",
    "samples_to_reach",
]

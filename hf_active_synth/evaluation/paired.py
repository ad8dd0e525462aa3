"""Paired statistics for comparisons: every method against a baseline on the same (seed, split), never pooled.

Two runs of a comparison are a *pair* when they share a seed and a data split: they saw the same labelled rows, the
same test rows and the same data order, so their difference removes the seed-to-seed spread that dwarfs method
effects on small benchmarks. This module turns per-run final metrics into:

* `paired_differences`: per method and baseline, the mean paired difference of test accuracy and macro-F1, its 95 %
  Student-t interval, the number of pairs and the method's wins (`summary.json["paired_differences"]`);
* `gap_closure`: how much of the gap from `random_synthetic` to `bald_active_learning` a method closes;

Data efficiency per pair lives in `evaluation.efficiency`.

**Run entries.** `runs` maps a method name to a list of *run entries*, one dict per run: the `extras` block of
`summary.json` (`compare.evaluate_final_model`'s output) with the run's `seed` and `split` added, e.g.

```python
{"seed": 0, "split": 0, "clean_accuracy": 0.912, "clean_f1_macro": 0.905, "ece": 0.031, "robustness": {...}}
```

Entries are paired exactly as `shared/tools/paired.py` (the independent checker) pairs them: by
`(entry.get("seed"), entry.get("split"))` when the entry has a `"seed"` key (a missing `split` pairs as `None`),
otherwise by position in the list. Accuracy is read from the first of `clean_accuracy`, `test_accuracy`, `accuracy`
present (the checker's order), macro-F1 from the first of `clean_f1_macro`, `test_f1_macro`, `f1_macro`, `test_f1`,
`f1`. The interval is the checker's too: mean ± t(0.975, n - 1) · s / √n with the sample standard deviation `s`,
except that the t quantile here is exact (`scipy.stats.t`) where the checker uses a two-decimal table.

```python
>>> entry = lambda seed, accuracy: {"seed": seed, "split": 0, "clean_accuracy": accuracy}
>>> runs = {
...     "active_synthesis": [entry(0, 0.81), entry(1, 0.82), entry(2, 0.83)],
...     "random_synthetic": [entry(0, 0.80), entry(1, 0.80), entry(2, 0.80)],
... }
>>> paired_differences(runs, ["active_synthesis"], baselines=("random_synthetic",), metrics=("accuracy",))
{'active_synthesis': {'random_synthetic': {'accuracy': {'mean': 0.02, 'ci95': [-0.0048..., 0.0448...], 'n': 3,
'wins': 3}}}}
```
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import analysis

logger = logging.getLogger(__name__)

__all__ = [
    "METRIC_KEYS",
    "PairedDifference",
    "RunPair",
    "gap_closure",
    "mean_metric_by_method",
    "metric_of",
    "pair_runs",
    "paired_difference",
    "paired_differences",
    "run_key",
    "runs_from_summary",
    "t_quantile",
]

PairKey = Hashable
"""`(seed, split)` for entries that carry a `"seed"`, else the entry's position (an `int`)."""

RunEntries = Mapping[str, Sequence[Mapping[str, Any]]]
"""`method -> run entries` (one dict of final test metrics per run, with `seed` and `split`)."""

METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "accuracy": ("clean_accuracy", "test_accuracy", "accuracy"),
    "f1": ("clean_f1_macro", "test_f1_macro", "f1_macro", "test_f1", "f1"),
}
"""Where each metric is read from in a run entry: the first key present wins (accuracy: the checker's order)."""
METRIC_KEYS["f1_macro"] = METRIC_KEYS["f1"]

SUMMARY_RUN_BLOCKS: tuple[str, ...] = ("extras", "final_metrics", "runs")
"""`summary.json` blocks searched for a method's run entries, in the checker's order."""


# ---------------------------------------------------------------------------------------------------- pairing
def run_key(entry: Mapping[str, Any], position: int) -> PairKey:
    """The pairing key of a run entry: `(seed, split)` when it has a `"seed"` key, else its `position`."""
    return (entry.get("seed"), entry.get("split")) if "seed" in entry else position


def metric_of(entry: Mapping[str, Any], metric: str) -> float | None:
    """The value of `metric` (`"accuracy"`, `"f1"` or a literal key) in a run entry; `None` if it is null.

    Raises:
        `KeyError`: when the entry has none of the keys `metric` is read from (see `METRIC_KEYS`).
    """
    for key in METRIC_KEYS.get(metric, (metric,)):
        if key in entry:
            value = entry[key]
            return None if value is None else float(value)
    raise KeyError(
        f"Run entry has no {metric!r} (looked for {list(METRIC_KEYS.get(metric, (metric,)))}); "
        f"its keys are {sorted(entry)}."
    )


@dataclass(frozen=True)
class RunPair:
    """One pair of runs sharing a key: the method's and the baseline's value of a metric.

    Args:
        key: `(seed, split)` or a position (see `run_key`).
        method (`float`): The method's value.
        baseline (`float`): The baseline's value.
    """

    key: PairKey
    method: float
    baseline: float

    @property
    def difference(self) -> float:
        """`method - baseline`."""
        return self.method - self.baseline


def _values_by_key(entries: Sequence[Mapping[str, Any]], metric: str, who: str) -> dict[PairKey, float | None]:
    values: dict[PairKey, float | None] = {}
    for position, entry in enumerate(entries):
        key = run_key(entry, position)
        if key in values:
            raise ValueError(f"{who} has two runs with the pairing key {key!r}; every (seed, split) must be unique.")
        values[key] = metric_of(entry, metric)
    return values


def pair_runs(runs: RunEntries, method: str, baseline: str, metric: str = "accuracy") -> list[RunPair]:
    """The runs of `method` and `baseline` that share a pairing key, ordered like the checker (by `str(key)`).

    Keys present in only one of the two methods are left out. A pair whose value is null or not finite on either
    side (a failed run) is left out too, with a warning.

    Args:
        runs (`Mapping[str, Sequence[dict]]`): `method -> run entries` (see the module docstring).
        method (`str`): The method.
        baseline (`str`): The baseline it is compared with.
        metric (`str`, defaults to `"accuracy"`): `"accuracy"`, `"f1"` (macro-F1) or a literal entry key.

    Returns:
        `list[RunPair]`

    Raises:
        `KeyError` when a method has no runs or an entry lacks the metric; `ValueError` on duplicate keys.
    """
    for name in (method, baseline):
        if name not in runs:
            raise KeyError(f"No runs of {name!r}; methods with runs: {sorted(runs)}.")
    a = _values_by_key(runs[method], metric, method)
    b = _values_by_key(runs[baseline], metric, baseline)
    pairs = []
    for key in sorted(set(a) & set(b), key=str):
        x, y = a[key], b[key]
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            logger.warning("Leaving out the pair %r of %s vs %s: %s is %r vs %r.", key, method, baseline, metric, x, y)
            continue
        pairs.append(RunPair(key, x, y))
    return pairs


def runs_from_summary(summary: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """`method -> run entries` from a `summary.json` dict, reading each method from the first block of
    `SUMMARY_RUN_BLOCKS` that lists it (the checker's lookup)."""
    runs: dict[str, list[Mapping[str, Any]]] = {}
    for block_name in SUMMARY_RUN_BLOCKS:
        block = summary.get(block_name)
        if isinstance(block, Mapping):
            for method, entries in block.items():
                if isinstance(entries, list) and method not in runs:
                    runs[method] = entries
    return runs


# ---------------------------------------------------------------------------------------------- differences
def t_quantile(probability: float, df: int) -> float:
    """The `probability` quantile of Student's t with `df` degrees of freedom (exact, via `scipy.stats.t`)."""
    from scipy import stats  # scipy is a dependency of scikit-learn, which the package requires

    if df < 1:
        raise ValueError(f"Student's t needs df >= 1, got {df}.")
    return float(stats.t.ppf(probability, df))


@dataclass(frozen=True)
class PairedDifference:
    """The paired difference `method - baseline` of one metric.

    Args:
        mean (`float`): Mean of the per-pair differences (NaN without pairs).
        ci95 (`tuple[float, float]`): 95 % Student-t interval of that mean, `mean ± t(0.975, n-1) · s / √n`.
            `(nan, nan)` when `n < 2`: one pair has no spread, so no interval exists (not "infinitely wide", just
            undefined); `to_dict` writes it as `[null, null]`.
        n (`int`): Number of pairs.
        wins (`int`): Pairs where the method is strictly better (difference > 0); ties are not wins.
    """

    mean: float
    ci95: tuple[float, float]
    n: int
    wins: int

    def to_dict(self) -> dict[str, Any]:
        """`{"mean", "ci95": [lo, hi], "n", "wins"}`, with undefined values (NaN) as `None` (JSON `null`)."""
        finite = lambda x: float(x) if math.isfinite(x) else None  # noqa: E731
        return {
            "mean": finite(self.mean),
            "ci95": [finite(self.ci95[0]), finite(self.ci95[1])],
            "n": self.n,
            "wins": self.wins,
        }

    def format_cell(self) -> str:
        """`"+0.0120 [+0.0057, +0.0183] (9/10)"`: the mean, its interval (left out below 2 pairs) and the wins."""
        low, high = self.ci95
        interval = "" if self.n < 2 else f" [{low:+.4f}, {high:+.4f}]"
        return f"{self.mean:+.4f}{interval} ({self.wins}/{self.n})"


def paired_difference(method_values: Sequence[float], baseline_values: Sequence[float]) -> PairedDifference:
    """Mean paired difference `method - baseline`, its 95 % t interval, the number of pairs and the wins.

    Args:
        method_values (`Sequence[float]`): The method's value in each pair.
        baseline_values (`Sequence[float]`): The baseline's value in the same pairs, in the same order.

    Returns:
        [`PairedDifference`]: `n = 0` gives a NaN mean; `n < 2` a `(nan, nan)` interval; identical differences
        a zero-width interval.

    Example: differences `[0.01, 0.02, 0.03]` give mean `0.02`, `s = 0.01` and
    `0.02 ± 4.3027 · 0.01 / √3 = [-0.00484, 0.04484]`.
    """
    if len(method_values) != len(baseline_values):
        raise ValueError(f"Got {len(method_values)} method values but {len(baseline_values)} baseline values.")
    differences = [float(a) - float(b) for a, b in zip(method_values, baseline_values)]
    n = len(differences)
    wins = sum(d > 0 for d in differences)
    if n == 0:
        return PairedDifference(math.nan, (math.nan, math.nan), 0, 0)
    mean = sum(differences) / n
    if n < 2:
        return PairedDifference(mean, (math.nan, math.nan), n, wins)
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    half = t_quantile(0.975, n - 1) * sd / math.sqrt(n)
    return PairedDifference(mean, (mean - half, mean + half), n, wins)


def paired_differences(
    runs: RunEntries,
    methods: Sequence[str],
    baselines: Sequence[str] = ("random_synthetic", "real_only"),
    metrics: Sequence[str] = ("accuracy", "f1"),
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """`paired_differences[method][baseline][metric] = {"mean", "ci95": [lo, hi], "n", "wins"}`, JSON-ready.

    Args:
        runs (`Mapping[str, Sequence[dict]]`): `method -> run entries` (see the module docstring).
        methods (`Sequence[str]`): Methods to compare; each must have runs. A method is not compared with itself.
        baselines (`Sequence[str]`, defaults to `("random_synthetic", "real_only")`): Baselines without runs
            are left out.
        metrics (`Sequence[str]`, defaults to `("accuracy", "f1")`): Metric names as they appear in the output
            (see `METRIC_KEYS` for where each is read from).

    Returns:
        `dict`: Undefined numbers (no pairs, or one pair's interval) are `None`.
    """
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for method in methods:
        if method not in runs:
            raise KeyError(f"No runs of {method!r}; methods with runs: {sorted(runs)}.")
        per_baseline: dict[str, dict[str, dict[str, Any]]] = {}
        for baseline in baselines:
            if baseline == method or baseline not in runs:
                continue
            per_metric = {}
            for metric in metrics:
                pairs = pair_runs(runs, method, baseline, metric)
                result = paired_difference([p.method for p in pairs], [p.baseline for p in pairs])
                per_metric[metric] = result.to_dict()
            per_baseline[baseline] = per_metric
        out[method] = per_baseline
    return out


# ----------------------------------------------------------------------------------------------- gap closure
def mean_metric_by_method(runs: RunEntries, metric: str = "accuracy") -> dict[str, float]:
    """Mean of `metric` over each method's runs (null or non-finite values left out; NaN when none is left)."""
    means = {}
    for method, entries in runs.items():
        values = [metric_of(entry, metric) for entry in entries]
        means[method] = analysis.mean_std(values)[0]
    return means


def gap_closure(
    mean_acc_by_method: Mapping[str, float],
    random_baseline: str = "random_synthetic",
    reference: str = "bald_active_learning",
    tolerance: float = 1e-9,
) -> dict[str, float | None]:
    """Share of the random-to-BALD gap each method closes: `(m - random) / (bald - random)` on mean test accuracy.

    `0` is no better than random synthetic data, `1` as good as labelling real rows by BALD, above `1` better; it
    can be negative. The ratio is a ratio of noisy means: read it with the paired intervals.

    Args:
        mean_acc_by_method (`Mapping[str, float]`): Mean test accuracy per method (e.g. `mean_metric_by_method`).
        random_baseline (`str`, defaults to `"random_synthetic"`): The 0 of the scale.
        reference (`str`, defaults to `"bald_active_learning"`): The 1 of the scale.
        tolerance (`float`, defaults to 1e-9): Gaps `|reference - random|` at or below it count as zero.

    Returns:
        `dict[str, float | None]`: One entry per method of `mean_acc_by_method`; `None` for every method when the
        gap is (about) zero, when either end of the scale is missing or not finite, and for a method whose own mean
        is not finite.
    """
    low, high = mean_acc_by_method.get(random_baseline), mean_acc_by_method.get(reference)
    defined = low is not None and high is not None and math.isfinite(low) and math.isfinite(high)
    if not defined or abs(high - low) <= tolerance:
        return {method: None for method in mean_acc_by_method}
    return {
        method: (float(value) - low) / (high - low) if value is not None and math.isfinite(value) else None
        for method, value in mean_acc_by_method.items()
    }

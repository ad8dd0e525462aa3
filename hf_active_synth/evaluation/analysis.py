"""Numbers for comparison reports: pure functions of run histories (the trainer's `history.json`).

A *history* is the dict the trainer writes to `history.json`: `{"cycles": [...], "stop_reason": ..., "config": ...}`
with one entry per cycle (cycle 0 is the real-only model). *Results* map a method name to one history per seed.
*Extras* map a method name to one dict per seed of final metrics measured outside the loop, e.g.
`{"ece": 0.04, "clean_accuracy": 0.91, "robustness": {"gaussian_noise": {"1": 0.88, ..., "5": 0.41}}}`.

Spreads are sample standard deviations over seeds (`ddof=1`; 0 for a single seed). Missing values are NaN and are
left out of means.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

History = Mapping[str, Any]
Results = Mapping[str, Sequence[History]]
Extras = Mapping[str, Sequence[Mapping[str, Any]]]

UNCERTAINTY_MEASURES: tuple[str, ...] = ("entropy", "variance", "bald")
STAGES: tuple[str, ...] = ("train", "estimate", "generate", "filter", "evaluate")


def validate_results(results: Results) -> None:
    """Checks that `results` maps method names to non-empty lists of histories with the fields reports need.

    Raises:
        `TypeError` or `ValueError` naming the method, seed and cycle at fault.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty mapping `method name -> list over seeds of histories`.")
    for method, runs in results.items():
        if not isinstance(method, str) or not method:
            raise TypeError(f"Method names must be non-empty strings, got {method!r}.")
        if isinstance(runs, Mapping) or not isinstance(runs, Sequence) or len(runs) == 0:
            raise ValueError(
                f"results[{method!r}] must be a non-empty list of histories (one per seed); wrap a single history "
                "in a list."
            )
        for seed_index, history in enumerate(runs):
            where = f"results[{method!r}][{seed_index}]"
            if not isinstance(history, Mapping) or not isinstance(history.get("cycles"), Sequence):
                raise ValueError(f"{where} must be a history dict with a 'cycles' list (the trainer's history.json).")
            if len(history["cycles"]) == 0:
                raise ValueError(f"{where} has no cycles.")
            for position, cycle in enumerate(history["cycles"]):
                if not isinstance(cycle, Mapping) or "cycle" not in cycle or "eval_metrics" not in cycle:
                    raise ValueError(f"{where}['cycles'][{position}] needs 'cycle' and 'eval_metrics'.")
                if metric_value(cycle, "accuracy") is None:
                    raise ValueError(
                        f"{where}['cycles'][{position}]['eval_metrics'] has no accuracy (expected 'eval_accuracy'); "
                        f"found {sorted(cycle['eval_metrics'])}. Evaluate with make_compute_metrics()."
                    )


def load_history(path: str | Path) -> dict[str, Any]:
    """Reads a history from a `history.json` file, or from a run folder holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"No history at {path}; pass a history.json file or the run's output folder.")
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def load_results(paths: Mapping[str, Sequence[str | Path]]) -> dict[str, list[dict[str, Any]]]:
    """Reads `method -> [history.json path or run folder, one per seed]` into results for `build_report`."""
    return {method: [load_history(path) for path in method_paths] for method, method_paths in paths.items()}


def metric_value(cycle: Mapping[str, Any], name: str) -> float | None:
    """The metric `name` of a cycle's `eval_metrics`, with or without the `eval_` prefix; `None` if absent."""
    metrics = cycle.get("eval_metrics") or {}
    bare = name.removeprefix("eval_")
    for key in (f"eval_{bare}", bare):
        if key in metrics and metrics[key] is not None:
            return float(metrics[key])
    return None


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (`ddof=1`, 0 for one value) and count of the finite values.

    Returns `(nan, nan, 0)` when there is none.
    """
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return math.nan, math.nan, 0
    std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return float(finite.mean()), std, int(finite.size)


def sorted_cycles(history: History) -> list[Mapping[str, Any]]:
    """The cycles of a history ordered by cycle number."""
    return sorted(history["cycles"], key=lambda cycle: int(cycle["cycle"]))


def final_metric(history: History, name: str = "accuracy") -> float | None:
    """The metric `name` of the last cycle (`None` if that cycle lacks it)."""
    return metric_value(sorted_cycles(history)[-1], name)


def final_num_synthetic(history: History) -> int:
    """Synthetic samples in the training data after the last cycle."""
    return int(sorted_cycles(history)[-1].get("num_synthetic_total", 0) or 0)


def learning_curve(history: History, name: str = "accuracy") -> tuple[np.ndarray, np.ndarray]:
    """`(num_synthetic_total, metric)` per cycle, in cycle order (cycles lacking the metric are skipped)."""
    points = [
        (float(cycle.get("num_synthetic_total", 0) or 0), metric_value(cycle, name))
        for cycle in sorted_cycles(history)
    ]
    points = [(x, y) for x, y in points if y is not None]
    return np.asarray([x for x, _ in points]), np.asarray([y for _, y in points])


def samples_to_reach(num_synthetic: Sequence[float], metric: Sequence[float], target: float) -> float | None:
    """Synthetic samples a run needs to reach `target`, interpolated linearly along its cycle curve.

    The curve is walked in cycle order; at the first point at or above `target` the sample count is interpolated
    between it and the previous point. Returns `None` if the curve never reaches the target.

    Args:
        num_synthetic (`Sequence[float]`): Synthetic samples in the training data after each cycle.
        metric (`Sequence[float]`): The metric after each cycle.
        target (`float`): The metric value to reach.

    Example: points `(0, 0.70), (100, 0.76), (200, 0.80)` reach `0.78` at `150` samples.
    """
    xs = np.asarray(num_synthetic, dtype=np.float64)
    ys = np.asarray(metric, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"num_synthetic and metric must be 1-D of equal length, got {xs.shape} and {ys.shape}.")
    for k in range(len(xs)):
        if ys[k] >= target:
            if k == 0 or ys[k] == ys[k - 1]:
                return float(xs[k])
            fraction = (target - ys[k - 1]) / (ys[k] - ys[k - 1])
            return float(xs[k - 1] + fraction * (xs[k] - xs[k - 1]))
    return None


def uncertainty_reduction(
    history: History, before_cycle: int = 1, after_cycle: int = 2
) -> tuple[dict[str, dict[str, float]], int | None]:
    """Mean uncertainty on the targeted set before `before_cycle` and after `after_cycle`, and the % reduction.

    "Before" is `uncertainty_before` of cycle `before_cycle` (the targets chosen by the model before any
    synthesis); "after" is `uncertainty_after` of cycle `after_cycle`, or of the last cycle with uncertainty if the
    run stopped earlier. Reduction is `100 * (before - after) / before`.

    Returns:
        `({measure: {"before", "after", "reduction_pct"}}, cycle used as "after")`; an empty dict and `None` when the
        run has no uncertainty measurements (e.g. a real-only baseline).
    """
    cycles = {int(cycle["cycle"]): cycle for cycle in history["cycles"]}
    before = (cycles.get(before_cycle) or {}).get("uncertainty_before") or {}
    with_after = sorted(c for c, cycle in cycles.items() if c >= before_cycle and cycle.get("uncertainty_after"))
    if not before or not with_after:
        return {}, None
    if after_cycle in with_after:
        used = after_cycle
    else:
        earlier = [c for c in with_after if c <= after_cycle]
        used = earlier[-1] if earlier else with_after[0]
    after = cycles[used]["uncertainty_after"]
    out = {}
    for measure in UNCERTAINTY_MEASURES:
        b, a = before.get(measure), after.get(measure)
        if b is None or a is None:
            continue
        b, a = float(b), float(a)
        reduction = 100.0 * (b - a) / b if b > 0 and math.isfinite(b) and math.isfinite(a) else math.nan
        out[measure] = {"before": b, "after": a, "reduction_pct": reduction}
    return out, used


def stage_seconds(history: History) -> dict[str, float]:
    """Wall time per stage summed over all cycles, plus `"total"`."""
    totals: dict[str, float] = {}
    for cycle in history["cycles"]:
        for stage, seconds in (cycle.get("stage_seconds") or {}).items():
            totals[stage] = totals.get(stage, 0.0) + float(seconds)
    totals["total"] = sum(totals.values())
    return totals


def peak_memory_mb(history: History) -> float:
    """Highest `peak_memory_mb` over the cycles (NaN if never recorded)."""
    values = [float(c["peak_memory_mb"]) for c in history["cycles"] if c.get("peak_memory_mb") is not None]
    return max(values) if values else math.nan


def accepted_per_class(history: History) -> dict[str, int]:
    """Accepted synthetic samples per class, summed over cycles."""
    totals: dict[str, int] = {}
    for cycle in history["cycles"]:
        for label, count in (cycle.get("accepted_per_class") or {}).items():
            totals[str(label)] = totals.get(str(label), 0) + int(count)
    return totals


def funnel(history: History) -> dict[str, int]:
    """Candidates generated, rows left after each filter (in order), and rows accepted, summed over cycles."""
    totals: dict[str, int] = {"candidates_generated": 0}
    for cycle in sorted_cycles(history):
        totals["candidates_generated"] += int(cycle.get("candidates_generated", 0) or 0)
        for name, remaining in (cycle.get("filter_counts") or {}).items():
            key = f"after {name}"
            totals[key] = totals.get(key, 0) + int(remaining)
    totals["accepted"] = sum(int(cycle.get("num_accepted", 0) or 0) for cycle in history["cycles"])
    return totals


def robustness_scores(extra: Mapping[str, Any]) -> dict[str, dict[int, float]]:
    """The `robustness` entry of one extras dict as `{corruption: {severity (int): accuracy}}`."""
    robustness = extra.get("robustness") or {}
    if not isinstance(robustness, Mapping):
        raise TypeError(f"extras 'robustness' must map corruption -> {{severity: accuracy}}, got {robustness!r}.")
    scores: dict[str, dict[int, float]] = {}
    for corruption, by_severity in robustness.items():
        if not isinstance(by_severity, Mapping):
            raise TypeError(f"robustness[{corruption!r}] must map severity -> accuracy, got {by_severity!r}.")
        scores[str(corruption)] = {int(severity): float(value) for severity, value in by_severity.items()}
    return scores


def is_real_only(runs: Sequence[History]) -> bool:
    """Whether no run of a method ever had synthetic data."""
    return all(int(cycle.get("num_synthetic_total", 0) or 0) == 0 for history in runs for cycle in history["cycles"])


def cycle_aligned(runs: Sequence[History], value: Any) -> dict[int, list[float]]:
    """`{cycle: [value(cycle) for each run having that cycle]}`; `value` maps a cycle dict to a float or None."""
    aligned: dict[int, list[float]] = {}
    for history in runs:
        for cycle in history["cycles"]:
            number = int(cycle["cycle"])
            result = value(cycle)
            aligned.setdefault(number, [])
            if result is not None and math.isfinite(result):
                aligned[number].append(float(result))
    return dict(sorted(aligned.items()))

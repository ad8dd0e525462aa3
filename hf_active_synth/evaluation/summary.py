"""The numbers of a comparison report, computed once: [`ComparisonSummary`] and the per-section summaries.

`report.md` (through `tables`) and `summary.json` are both rendered from one `ComparisonSummary`, so the two can
never disagree. Values keep NaN for "missing" here; `ComparisonSummary.to_json` turns them into `null`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import analysis
from .analysis import Extras, Results, mean_std
from .paired_summary import PairedSummary

FINAL_METRICS: tuple[str, ...] = ("accuracy", "f1_macro", "ece")
"""Validation metrics of the final-performance table (those no run logged are left out)."""

SUMMARY_FINAL_METRICS: tuple[str, ...] = ("accuracy", "f1_macro")
"""Validation metrics written per seed under `summary.json`'s `final`."""


def as_float(value: Any) -> float | None:
    """`value` as a float when it is a number (not a bool), else `None`."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def json_safe(value: Any) -> Any:
    """`value` with non-finite floats as `None` and mapping keys as strings, for `json.dumps`."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


RUN_KEY_FIELDS = frozenset({"seed", "split", "cycle"})
"""Entry fields that identify a run (or its cycle) rather than measure it."""


def scalar_extra_keys(extras: Extras | None) -> list[str]:
    """The scalar (numeric, non-bool) keys of the extras, in first-seen order, `robustness` and run keys aside."""
    keys: list[str] = []
    for per_seed in (extras or {}).values():
        for extra in per_seed:
            for key, value in extra.items():
                if (
                    key != "robustness"
                    and key not in RUN_KEY_FIELDS
                    and isinstance(value, (int, float))
                    and not isinstance(value, bool)
                ):
                    if key not in keys:
                        keys.append(key)
    return keys


@dataclass(frozen=True)
class FinalScores:
    """Per method, per seed: the final cycle's validation metrics, synthetic samples and scalar extras.

    Args:
        metrics (`dict[str, dict[str, list]]`): `method -> metric -> value per seed` (`None` where a run lacks it).
        num_synthetic (`dict[str, list[int]]`): `method -> synthetic samples after the last cycle, per seed`.
        extras (`dict[str, dict[str, list]]`): `method -> scalar extra key -> value per seed`.
        shown (`list[str]`): The requested metrics that at least one run logged, in the requested order.
        extra_keys (`list[str]`): The scalar extra keys, in first-seen order.
    """

    metrics: dict[str, dict[str, list[float | None]]]
    num_synthetic: dict[str, list[int]]
    extras: dict[str, dict[str, list[float | None]]]
    shown: list[str]
    extra_keys: list[str]


def final_scores(
    results: Results, extras: Extras | None = None, metrics: Sequence[str] = FINAL_METRICS
) -> FinalScores:
    """The [`FinalScores`] of `results` for `metrics` (plus accuracy and macro-F1, which `summary.json` needs)."""
    analysis.validate_results(results)
    names = list(dict.fromkeys((*SUMMARY_FINAL_METRICS, *metrics)))
    values = {
        method: {name: [analysis.final_metric(h, name) for h in runs] for name in names}
        for method, runs in results.items()
    }
    shown = [m for m in metrics if any(v is not None for per_metric in values.values() for v in per_metric[m])]
    extra_keys = scalar_extra_keys(extras)
    per_method_extras = {
        method: {key: [as_float(extra.get(key)) for extra in (extras or {}).get(method, [])] for key in extra_keys}
        for method in results
    }
    synthetic = {method: [analysis.final_num_synthetic(h) for h in runs] for method, runs in results.items()}
    return FinalScores(values, synthetic, per_method_extras, shown, extra_keys)


def robustness_summary(extras: Extras) -> dict[str, dict[str, Any]]:
    """Per method: `{"corruptions": {name: {severity: [accuracy per seed]}}, "clean": [...]}` (seeds in order)."""
    summary: dict[str, dict[str, Any]] = {}
    for method, per_seed in extras.items():
        corruptions: dict[str, dict[int, list[float]]] = {}
        for extra in per_seed:
            for name, by_severity in analysis.robustness_scores(extra).items():
                for severity, accuracy in by_severity.items():
                    corruptions.setdefault(name, {}).setdefault(severity, []).append(accuracy)
        if corruptions:
            clean = [as_float(extra.get("clean_accuracy")) for extra in per_seed]
            summary[method] = {"corruptions": corruptions, "clean": clean}
    return summary


def per_seed_corruption_means(extras_for_method: Sequence[Mapping[str, Any]], corruption: str | None) -> list[float]:
    """Per seed, the mean accuracy over the severities of `corruption` (of every corruption when `None`)."""
    means = []
    for extra in extras_for_method:
        scores = analysis.robustness_scores(extra)
        values = [
            accuracy
            for name, by_severity in scores.items()
            if corruption is None or name == corruption
            for accuracy in by_severity.values()
        ]
        if values:
            means.append(sum(values) / len(values))
    return means


def robustness_means(extras: Extras, robustness: Mapping[str, Any]) -> dict[str, dict[str | None, list[float]]]:
    """`method -> corruption (None: all of them) -> per-seed mean over severities`, for the methods in `robustness`."""
    names = sorted({name for entry in robustness.values() for name in entry["corruptions"]})
    return {
        method: {name: per_seed_corruption_means(extras[method], name) for name in [*names, None]}
        for method in robustness
    }


def uncertainty_summary(results: Results, before_cycle: int = 1, after_cycle: int = 2) -> dict[str, dict[str, Any]]:
    """Per method with uncertainty measurements: per measure, the per-seed before/after/reduction lists."""
    summary: dict[str, dict[str, Any]] = {}
    for method, runs in results.items():
        per_measure: dict[str, dict[str, list[float]]] = {}
        used_cycles = []
        for history in runs:
            reduction, used = analysis.uncertainty_reduction(history, before_cycle, after_cycle)
            if used is None:
                continue
            used_cycles.append(used)
            for measure, values in reduction.items():
                entry = per_measure.setdefault(measure, {"before": [], "after": [], "reduction_pct": []})
                for key in entry:
                    entry[key].append(values[key])
        if per_measure:
            summary[method] = {"measures": per_measure, "after_cycles": used_cycles}
    return summary


def data_efficiency_summary(
    results: Results, real_only: str | None = "real_only", random_baseline: str | None = "random_synthetic"
) -> dict[str, Any]:
    """Accuracy gain per synthetic sample against real-only, and samples needed to reach the random baseline.

    The real-only reference is the mean final accuracy of the `real_only` method when it is in `results`,
    otherwise each run's own cycle-0 accuracy (its model before any synthetic data). The target for "samples to
    reach" is the mean final accuracy of `random_baseline`, if present.
    """
    reference_from = "real_only" if real_only in results else "cycle_0"
    reference = (
        mean_std([analysis.final_metric(h, "accuracy") for h in results[real_only]])[0]
        if reference_from == "real_only"
        else None
    )
    target = None
    target_samples = None
    if random_baseline in results:
        target = mean_std([analysis.final_metric(h, "accuracy") for h in results[random_baseline]])[0]
        target_samples = mean_std([analysis.final_num_synthetic(h) for h in results[random_baseline]])[0]
    methods: dict[str, Any] = {}
    for method, runs in results.items():
        if method == real_only or analysis.is_real_only(runs):
            continue
        gains, per_thousand, reach = [], [], []
        for history in runs:
            cycles = analysis.sorted_cycles(history)
            base = reference if reference is not None else analysis.metric_value(cycles[0], "accuracy")
            final = analysis.final_metric(history, "accuracy")
            samples = analysis.final_num_synthetic(history)
            gain = final - base if final is not None and base is not None else math.nan
            gains.append(gain)
            per_thousand.append(1000.0 * gain / samples if samples > 0 else math.nan)
            if target is not None and method != random_baseline:
                reach.append(analysis.samples_to_reach(*analysis.learning_curve(history, "accuracy"), target))
        methods[method] = {
            "final_synthetic": [analysis.final_num_synthetic(h) for h in runs],
            "gain": gains,
            "gain_per_1k": per_thousand,
            "samples_to_reach_random": reach if target is not None and method != random_baseline else None,
        }
    return {
        "reference": reference_from,
        "reference_accuracy": reference,
        "random_baseline": random_baseline if target is not None else None,
        "random_baseline_accuracy": target,
        "random_baseline_samples": target_samples,
        "methods": methods,
    }


def compute_summary(results: Results) -> dict[str, dict[str, list[Any]]]:
    """Per method, per seed: wall time per stage (summed over cycles, with `total`) and peak memory."""
    return {
        method: {
            "stage_seconds": [analysis.stage_seconds(h) for h in runs],
            "peak_memory_mb": [analysis.peak_memory_mb(h) for h in runs],
        }
        for method, runs in results.items()
    }


def funnel_summary(results: Results) -> dict[str, list[dict[str, int]]]:
    """Per method that ever had synthetic data, per seed: the candidate funnel (`analysis.funnel`)."""
    return {m: [analysis.funnel(h) for h in runs] for m, runs in results.items() if not analysis.is_real_only(runs)}


def runs_summary(results: Results) -> list[tuple[str, Any, int, Any]]:
    """`(method, seed, cycles, stop reason)` of every run (the seed from its config, else its position)."""
    rows = []
    for method, runs in results.items():
        for seed_index, history in enumerate(runs):
            seed = (history.get("config") or {}).get("seed", seed_index)
            rows.append((method, seed, len(history["cycles"]), history.get("stop_reason", "n/a")))
    return rows


@dataclass(frozen=True)
class ComparisonSummary:
    """Every number of a comparison report, computed once from the runs; `report.md` and `summary.json` read it.

    Build it with [`ComparisonSummary.from_runs`]. The fields are the report's sections; `to_json` gives the
    `summary.json` dict.
    """

    final: FinalScores
    uncertainty: dict[str, dict[str, Any]]
    data_efficiency: dict[str, Any]
    robustness: dict[str, dict[str, Any]]
    robustness_means: dict[str, dict[str | None, list[float]]]
    compute: dict[str, dict[str, list[Any]]]
    funnels: dict[str, list[dict[str, int]]]
    runs: list[tuple[str, Any, int, Any]]
    extras: Extras
    paired: PairedSummary

    @classmethod
    def from_runs(
        cls,
        results: Results,
        extras: Extras | None = None,
        real_only: str | None = "real_only",
        random_baseline: str | None = "random_synthetic",
    ) -> ComparisonSummary:
        """Summarizes `results` (`method -> histories`, one per seed) and `extras` (`method -> final metrics`).

        Args:
            results (`Mapping[str, Sequence[dict]]`): `method -> histories` (the trainer's `history.json`).
            extras (`Mapping[str, Sequence[dict]]`, *optional*): `method -> final-metric dicts`, one per seed.
            real_only (`str`, *optional*): The method trained on real data only (reference for accuracy gains).
            random_baseline (`str`, *optional*): The method adding random (untargeted) synthetic data.
        """
        analysis.validate_results(results)
        extras = extras or {}
        robustness = robustness_summary(extras)
        return cls(
            final=final_scores(results, extras),
            uncertainty=uncertainty_summary(results),
            data_efficiency=data_efficiency_summary(results, real_only, random_baseline),
            robustness=robustness,
            robustness_means=robustness_means(extras, robustness),
            compute=compute_summary(results),
            funnels=funnel_summary(results),
            runs=runs_summary(results),
            extras=extras,
            paired=PairedSummary.from_runs(results, extras),
        )

    @property
    def num_methods(self) -> int:
        """How many methods were compared."""
        return len(self.final.num_synthetic)

    @property
    def num_runs(self) -> int:
        """How many runs (methods × seeds) there are."""
        return sum(len(per_seed) for per_seed in self.final.num_synthetic.values())

    def to_json(self) -> dict[str, Any]:
        """Every number of the report, per seed, as a JSON-friendly dict (written to `summary.json`)."""
        final = {
            method: {
                **{name: self.final.metrics[method][name] for name in SUMMARY_FINAL_METRICS},
                "num_synthetic": synthetic,
            }
            for method, synthetic in self.final.num_synthetic.items()
        }
        return json_safe(
            {
                "final": final,
                "uncertainty": self.uncertainty,
                "data_efficiency": self.data_efficiency,
                "robustness": self.robustness,
                "compute": self.compute,
                "extras": self.extras,
                **self.paired.to_json(),
            }
        )

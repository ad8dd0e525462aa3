"""Comparison reports: `report.md`, `summary.json` and PNG plots from the histories of several methods and seeds.

```python
>>> from hf_active_synth.evaluation.report import build_report
>>> from hf_active_synth.evaluation.analysis import load_results
>>> results = load_results({"active": ["runs/active-s0", "runs/active-s1"], "random_synthetic": [...], ...})
>>> build_report(results, "reports/digits", real_only="real_only", random_baseline="random_synthetic")
```

Everything here is a pure function of the data passed in (`analysis` holds the numbers, `plots` the figures);
`render_results_table` is reusable on its own, e.g. by model cards.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import analysis
from .analysis import Extras, Results, mean_std
from .plots import plot_accuracy_vs_synthetic, plot_entropy_per_cycle, plot_synthetic_per_class

UNCERTAINTY_TARGET_PCT = 20.0
"""The proposal's expected entropy reduction on the targeted set after two synthesis cycles."""

METRIC_LABELS: dict[str, str] = {"accuracy": "Accuracy", "f1_macro": "Macro-F1", "ece": "ECE", "loss": "Loss"}

PLOT_FILES: tuple[str, ...] = ("accuracy_vs_synthetic.png", "entropy_per_cycle.png", "synthetic_per_class.png")


# ----------------------------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------------------------


def format_mean_std(values: Sequence[float | None], digits: int = 4, scale: float = 1.0, suffix: str = "") -> str:
    """`"mean ± std"` of the finite values (`"mean"` alone for one value, `"n/a"` for none)."""
    mean, std, count = mean_std(values)
    if count == 0:
        return "n/a"
    if count == 1:
        return f"{mean * scale:.{digits}f}{suffix}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}{suffix}"


_NUMERIC_CELL = re.compile(r"^(-?\d|n/a$|—|not reached)")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; columns of numbers are right-aligned, the others left-aligned."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError("Every row needs one cell per header.")
    escape = lambda cell: str(cell).replace("|", "\\|")  # noqa: E731
    numeric = [
        index > 0 and bool(rows) and all(_NUMERIC_CELL.match(str(row[index])) or str(row[index]) == "" for row in rows)
        for index in range(len(headers))
    ]
    lines = [
        "| " + " | ".join(escape(h) for h in headers) + " |",
        "|" + "|".join("---:" if right else ":---" for right in numeric) + "|",
    ]
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _metric_label(name: str) -> str:
    bare = name.removeprefix("eval_")
    return METRIC_LABELS.get(bare, bare.replace("_", " "))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ----------------------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------------------


def _scalar_extra_keys(extras: Extras | None) -> list[str]:
    keys: list[str] = []
    for per_seed in (extras or {}).values():
        for extra in per_seed:
            for key, value in extra.items():
                if key != "robustness" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    if key not in keys:
                        keys.append(key)
    return keys


def render_results_table(
    results: Results,
    extras: Extras | None = None,
    metrics: Sequence[str] = ("accuracy", "f1_macro", "ece"),
    digits: int = 4,
) -> str:
    """Markdown table of final metrics per method: mean ± std over seeds.

    Columns: method, seeds, synthetic samples after the last cycle, then each of `metrics` read from the last
    cycle's `eval_metrics` (with or without the `eval_` prefix; a metric no run has is left out), then any scalar
    entry of `extras` (e.g. a test-set `ece`), named `<key> (final)`.

    Args:
        results (`Mapping[str, Sequence[dict]]`): `method -> histories`, one per seed.
        extras (`Mapping[str, Sequence[dict]]`, *optional*): `method -> final-metric dicts`, one per seed.
        metrics (`Sequence[str]`): Validation metrics to show.
        digits (`int`, defaults to 4): Decimals.

    Returns:
        `str`: The markdown table.
    """
    analysis.validate_results(results)
    shown = [m for m in metrics if any(analysis.final_metric(h, m) is not None for r in results.values() for h in r)]
    extra_keys = _scalar_extra_keys(extras)
    headers = ["Method", "Seeds", "Synthetic samples"] + [_metric_label(m) for m in shown]
    headers += [f"{key} (final)" for key in extra_keys]
    rows = []
    for method, runs in results.items():
        row = [method, len(runs), format_mean_std([analysis.final_num_synthetic(h) for h in runs], digits=0)]
        row += [format_mean_std([analysis.final_metric(h, m) for h in runs], digits) for m in shown]
        per_seed = (extras or {}).get(method, [])
        row += [format_mean_std([_as_float(extra.get(key)) for extra in per_seed], digits) for key in extra_keys]
        rows.append(row)
    return markdown_table(headers, rows)


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
            clean = [_as_float(extra.get("clean_accuracy")) for extra in per_seed]
            summary[method] = {"corruptions": corruptions, "clean": clean}
    return summary


def _per_seed_corruption_means(extras_for_method: Sequence[Mapping[str, Any]], corruption: str | None) -> list[float]:
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


def render_robustness_tables(extras: Extras, digits: int = 4) -> str:
    """Markdown: accuracy under each corruption (mean over severities), and per severity, mean ± std over seeds.

    Returns an empty string when no method has robustness results.
    """
    summary = robustness_summary(extras)
    if not summary:
        return ""
    corruptions = sorted({name for entry in summary.values() for name in entry["corruptions"]})
    show_clean = any(_finite(v) is not None for entry in summary.values() for v in entry["clean"])
    headers = ["Method"] + (["Clean"] if show_clean else []) + corruptions + ["Mean over corruptions"]
    rows = []
    for method in summary:
        row: list[Any] = [method]
        if show_clean:
            row.append(format_mean_std(summary[method]["clean"], digits))
        row += [format_mean_std(_per_seed_corruption_means(extras[method], name), digits) for name in corruptions]
        row.append(format_mean_std(_per_seed_corruption_means(extras[method], None), digits))
        rows.append(row)
    severities = sorted({s for entry in summary.values() for by in entry["corruptions"].values() for s in by})
    detail_rows = []
    for method, entry in summary.items():
        for name in corruptions:
            by_severity = entry["corruptions"].get(name, {})
            detail_rows.append([method, name] + [format_mean_std(by_severity.get(s, []), digits) for s in severities])
    detail = markdown_table(["Method", "Corruption"] + [f"Severity {s}" for s in severities], detail_rows)
    return (
        "Accuracy on corrupted copies of the evaluation set, averaged over severities:\n\n"
        + markdown_table(headers, rows)
        + "\n\nPer severity:\n\n"
        + detail
    )


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


def render_uncertainty_table(
    results: Results, before_cycle: int = 1, after_cycle: int = 2, target_pct: float = UNCERTAINTY_TARGET_PCT
) -> str:
    """Markdown table of mean entropy / variance / BALD on the targeted set, before vs after, and the % reduction.

    Returns an empty string when no method measured uncertainty.
    """
    summary = uncertainty_summary(results, before_cycle, after_cycle)
    if not summary:
        return ""
    rows = []
    for method, entry in summary.items():
        cycles = sorted(set(entry["after_cycles"]))
        after_label = ", ".join(str(c) for c in cycles)
        for measure in analysis.UNCERTAINTY_MEASURES:
            if measure not in entry["measures"]:
                continue
            values = entry["measures"][measure]
            mean_reduction = mean_std(values["reduction_pct"])[0]
            meets = "n/a" if math.isnan(mean_reduction) else ("yes" if mean_reduction >= target_pct else "no")
            rows.append(
                [
                    method,
                    measure,
                    format_mean_std(values["before"]),
                    format_mean_std(values["after"]),
                    after_label,
                    format_mean_std(values["reduction_pct"], digits=1, suffix=" %"),
                    meets if measure == "entropy" else "",
                ]
            )
    headers = [
        "Method",
        "Measure",
        f"Before cycle {before_cycle}",
        "After",
        "After cycle",
        "Reduction",
        f"Entropy ≥ {target_pct:g} %",
    ]
    return markdown_table(headers, rows)


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


def _format_reach(values: Sequence[float | None]) -> str:
    reached = [v for v in values if v is not None]
    if not reached:
        return f"not reached (0/{len(values)} seeds)"
    text = format_mean_std(reached, digits=0)
    return text if len(reached) == len(values) else f"{text} ({len(reached)}/{len(values)} seeds; others not reached)"


def render_data_efficiency(summary: Mapping[str, Any]) -> str:
    """Markdown table (and a note on the references) from `data_efficiency_summary`."""
    if not summary["methods"]:
        return ""
    if summary["reference"] == "real_only":
        note = f"Gains are against the real-only method's mean final accuracy ({summary['reference_accuracy']:.4f})."
    else:
        note = "No real-only method given: gains are against each run's own cycle-0 (real data only) accuracy."
    headers = ["Method", "Synthetic samples", "Accuracy gain vs real-only", "Gain per 1k synthetic samples"]
    if summary["random_baseline"] is not None:
        headers.append("Samples to reach random-synthetic accuracy")
        note += (
            f" Samples to reach: synthetic samples needed to match `{summary['random_baseline']}`'s mean final "
            f"accuracy ({summary['random_baseline_accuracy']:.4f}, reached with "
            f"{summary['random_baseline_samples']:.0f} samples), interpolated along each run's cycle curve."
        )
    rows = []
    for method, entry in summary["methods"].items():
        row = [
            method,
            format_mean_std(entry["final_synthetic"], digits=0),
            format_mean_std(entry["gain"], digits=4),
            format_mean_std(entry["gain_per_1k"], digits=4),
        ]
        if summary["random_baseline"] is not None:
            reach = entry["samples_to_reach_random"]
            row.append("— (baseline)" if reach is None else _format_reach(reach))
        rows.append(row)
    return note + "\n\n" + markdown_table(headers, rows)


def render_funnel_table(results: Results) -> str:
    """Markdown table: candidates generated, rows after each filter and accepted, summed over cycles (mean ± std)."""
    per_method = {
        m: [analysis.funnel(h) for h in runs] for m, runs in results.items() if not analysis.is_real_only(runs)
    }
    if not per_method:
        return ""
    columns: list[str] = []
    for funnels in per_method.values():
        for counts in funnels:
            columns += [key for key in counts if key not in columns]
    columns = ["candidates_generated"] + [c for c in columns if c not in ("candidates_generated", "accepted")]
    columns.append("accepted")
    rows = []
    for method, funnels in per_method.items():
        row = [method] + [format_mean_std([f.get(column) for f in funnels], digits=0) for column in columns]
        rates = [f["accepted"] / f["candidates_generated"] if f["candidates_generated"] else None for f in funnels]
        rows.append(row + [format_mean_std(rates, digits=1, scale=100, suffix=" %")])
    headers = ["Method"] + [c.replace("_", " ") for c in columns] + ["Acceptance rate"]
    return markdown_table(headers, rows)


def render_compute_table(results: Results) -> str:
    """Markdown table of wall time per stage (summed over cycles) and peak memory, mean ± std over seeds."""
    per_method = {m: [analysis.stage_seconds(h) for h in runs] for m, runs in results.items()}
    stages = [s for s in analysis.STAGES if any(s in t for times in per_method.values() for t in times)]
    others = sorted({s for times in per_method.values() for t in times for s in t} - set(stages) - {"total"})
    columns = stages + others + ["total"]
    rows = []
    for method, times in per_method.items():
        row = [method] + [format_mean_std([t.get(c) for t in times], digits=1) for c in columns]
        row.append(format_mean_std([analysis.peak_memory_mb(h) for h in results[method]], digits=0))
        rows.append(row)
    headers = ["Method"] + [f"{c} (s)" for c in columns] + ["Peak memory (MB)"]
    return markdown_table(headers, rows)


def render_runs_table(results: Results) -> str:
    """Markdown table of each run's cycles and stop reason."""
    rows = []
    for method, runs in results.items():
        for seed_index, history in enumerate(runs):
            seed = (history.get("config") or {}).get("seed", seed_index)
            rows.append([method, seed, len(history["cycles"]), history.get("stop_reason", "n/a")])
    return markdown_table(["Method", "Seed", "Cycles", "Stop reason"], rows)


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def summarize(
    results: Results,
    extras: Extras | None = None,
    real_only: str | None = "real_only",
    random_baseline: str | None = "random_synthetic",
) -> dict[str, Any]:
    """Every number of the report, per seed, as a JSON-friendly dict (written to `summary.json`)."""
    analysis.validate_results(results)
    return _json_safe(
        {
            "final": {
                method: {
                    "accuracy": [analysis.final_metric(h, "accuracy") for h in runs],
                    "f1_macro": [analysis.final_metric(h, "f1_macro") for h in runs],
                    "num_synthetic": [analysis.final_num_synthetic(h) for h in runs],
                }
                for method, runs in results.items()
            },
            "uncertainty": uncertainty_summary(results),
            "data_efficiency": data_efficiency_summary(results, real_only, random_baseline),
            "robustness": robustness_summary(extras or {}),
            "compute": {
                method: {
                    "stage_seconds": [analysis.stage_seconds(h) for h in runs],
                    "peak_memory_mb": [analysis.peak_memory_mb(h) for h in runs],
                }
                for method, runs in results.items()
            },
            "extras": extras or {},
        }
    )


def build_report(
    results: Results,
    output_dir: str | Path,
    extras: Extras | None = None,
    real_only: str | None = "real_only",
    random_baseline: str | None = "random_synthetic",
    title: str = "Active synthesis: comparison report",
    label_names: Mapping[str, str] | Sequence[str] | None = None,
) -> Path:
    """Writes `report.md`, `summary.json` and the PNG plots into `output_dir`.

    Args:
        results (`Mapping[str, Sequence[dict]]`): `method -> histories` (the trainer's `history.json`), one per seed.
        output_dir (`str` or `Path`): Folder to write into (created if needed; existing files are overwritten).
        extras (`Mapping[str, Sequence[dict]]`, *optional*): `method -> final metrics`, one dict per seed, e.g.
            `{"ece": ..., "clean_accuracy": ..., "robustness": {corruption: {severity: accuracy}}}`.
        real_only (`str`, *optional*): The method trained on real data only (reference for accuracy gains).
        random_baseline (`str`, *optional*): The method adding random (untargeted) synthetic data.
        title (`str`): The report's heading.
        label_names (*optional*): Class names for the per-class plot.

    Returns:
        `Path`: The path of `report.md`.
    """
    analysis.validate_results(results)
    if extras is not None:
        unknown = sorted(set(extras) - set(results))
        if unknown:
            raise ValueError(f"extras has methods {unknown} that are not in results ({sorted(results)}).")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    plot_accuracy_vs_synthetic(results, output_dir / PLOT_FILES[0])
    plot_entropy_per_cycle(results, output_dir / PLOT_FILES[1])
    plot_synthetic_per_class(results, output_dir / PLOT_FILES[2], label_names=label_names)

    summary = summarize(results, extras, real_only, random_baseline)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    efficiency = data_efficiency_summary(results, real_only, random_baseline)
    sections = [
        f"# {title}",
        f"{len(results)} methods, {sum(len(r) for r in results.values())} runs. Values are mean ± sample standard "
        "deviation over seeds (a single seed shows its value). Accuracy and macro-F1 are the validation metrics of "
        "each run's last cycle.",
        "## Final performance",
        render_results_table(results, extras),
    ]
    optional_sections = [
        ("Robustness", render_robustness_tables(extras or {})),
        (
            "Uncertainty reduction",
            "Mean uncertainty of the targeted examples before synthesis cycle 1 and after cycle 2 (or the last "
            "cycle the run reached); the proposal expects at least a 20 % entropy reduction.\n\n"
            + render_uncertainty_table(results)
            if uncertainty_summary(results)
            else "",
        ),
        ("Data efficiency", render_data_efficiency(efficiency)),
        ("Synthetic data funnel", render_funnel_table(results)),
    ]
    for heading, body in optional_sections:
        if body:
            sections += [f"## {heading}", body]
    sections += [
        "## Compute cost",
        "Wall time per stage summed over all cycles, and the highest peak memory of a run.\n\n"
        + render_compute_table(results),
        "## Plots",
        "![Accuracy vs synthetic samples](accuracy_vs_synthetic.png)\n\n"
        "![Targeted-set entropy per cycle](entropy_per_cycle.png)\n\n"
        "![Accepted synthetic samples per class](synthetic_per_class.png)",
        "## Runs",
        render_runs_table(results),
    ]
    report_path = output_dir / "report.md"
    report_path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return report_path

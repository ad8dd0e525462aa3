"""Markdown tables of a comparison report, each formatted from its section of the summary (see `summary`).

Every table has a `format_*` function taking the computed numbers and a `render_*` one taking run histories (or
extras) directly; `render_results_table` is reusable on its own, e.g. by the `hf-active-synth report` command.
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
from .summary import (
    FINAL_METRICS,
    FinalScores,
    compute_summary,
    final_scores,
    funnel_summary,
    robustness_means,
    robustness_summary,
    runs_summary,
    uncertainty_summary,
)

UNCERTAINTY_TARGET_PCT = 20.0
"""The proposal's expected entropy reduction on the targeted set after two synthesis cycles."""

METRIC_LABELS: dict[str, str] = {"accuracy": "Accuracy", "f1_macro": "Macro-F1", "ece": "ECE", "loss": "Loss"}

_NUMERIC_CELL = re.compile(r"^(-?\d|n/a$|—|not reached)")


def format_mean_std(values: Sequence[float | None], digits: int = 4, scale: float = 1.0, suffix: str = "") -> str:
    """`"mean ± std"` of the finite values (`"mean"` alone for one value, `"n/a"` for none)."""
    mean, std, count = mean_std(values)
    if count == 0:
        return "n/a"
    if count == 1:
        return f"{mean * scale:.{digits}f}{suffix}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}{suffix}"


def write_table_files(output: str | Path, markdown: str, data: Any) -> None:
    """Writes a table as `output` (markdown) and its data beside it as `output` with a `.json` suffix, making the
    folder; the sweep scripts commit both, so every figure in the markdown can be recomputed from the JSON."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown)
    output.with_suffix(".json").write_text(json.dumps(data, indent=2))


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


# ---------------------------------------------------------------------------------------------- final performance
def format_results_table(scores: FinalScores, digits: int = 4) -> str:
    """Markdown table of final metrics per method (mean ± std over seeds) from [`FinalScores`]."""
    headers = ["Method", "Seeds", "Synthetic samples"] + [_metric_label(m) for m in scores.shown]
    headers += [f"{key} (final)" for key in scores.extra_keys]
    rows = []
    for method, synthetic in scores.num_synthetic.items():
        row = [method, len(synthetic), format_mean_std(synthetic, digits=0)]
        row += [format_mean_std(scores.metrics[method][m], digits) for m in scores.shown]
        row += [format_mean_std(scores.extras[method][key], digits) for key in scores.extra_keys]
        rows.append(row)
    return markdown_table(headers, rows)


def render_results_table(
    results: Results,
    extras: Extras | None = None,
    metrics: Sequence[str] = FINAL_METRICS,
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
    return format_results_table(final_scores(results, extras, metrics), digits)


# ---------------------------------------------------------------------------------------------------- robustness
def format_robustness_tables(
    robustness: Mapping[str, Any], means: Mapping[str, Mapping[str | None, Sequence[float]]], digits: int = 4
) -> str:
    """Markdown from `summary.robustness_summary` and `summary.robustness_means` ("" when there is none)."""
    if not robustness:
        return ""
    corruptions = sorted({name for entry in robustness.values() for name in entry["corruptions"]})
    show_clean = any(_finite(v) is not None for entry in robustness.values() for v in entry["clean"])
    headers = ["Method"] + (["Clean"] if show_clean else []) + corruptions + ["Mean over corruptions"]
    rows = []
    for method in robustness:
        row: list[Any] = [method]
        if show_clean:
            row.append(format_mean_std(robustness[method]["clean"], digits))
        row += [format_mean_std(means[method][name], digits) for name in corruptions]
        row.append(format_mean_std(means[method][None], digits))
        rows.append(row)
    severities = sorted({s for entry in robustness.values() for by in entry["corruptions"].values() for s in by})
    detail_rows = []
    for method, entry in robustness.items():
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


def render_robustness_tables(extras: Extras, digits: int = 4) -> str:
    """Markdown: accuracy under each corruption (mean over severities), and per severity, mean ± std over seeds.

    Returns an empty string when no method has robustness results.
    """
    robustness = robustness_summary(extras)
    return format_robustness_tables(robustness, robustness_means(extras, robustness), digits)


# --------------------------------------------------------------------------------------------------- uncertainty
def format_uncertainty_table(
    summary: Mapping[str, Any], before_cycle: int = 1, target_pct: float = UNCERTAINTY_TARGET_PCT
) -> str:
    """Markdown table from `summary.uncertainty_summary` ("" when no method measured uncertainty)."""
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


def render_uncertainty_table(
    results: Results, before_cycle: int = 1, after_cycle: int = 2, target_pct: float = UNCERTAINTY_TARGET_PCT
) -> str:
    """Markdown table of mean entropy / variance / BALD on the targeted set, before vs after, and the % reduction.

    Returns an empty string when no method measured uncertainty.
    """
    return format_uncertainty_table(uncertainty_summary(results, before_cycle, after_cycle), before_cycle, target_pct)


# ----------------------------------------------------------------------------------------------- data efficiency
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


# ------------------------------------------------------------------------------------------ funnel, compute, runs
def format_funnel_table(funnels: Mapping[str, Sequence[Mapping[str, int]]]) -> str:
    """Markdown table from `summary.funnel_summary` ("" when no method had synthetic data)."""
    if not funnels:
        return ""
    columns: list[str] = []
    for per_seed in funnels.values():
        for counts in per_seed:
            columns += [key for key in counts if key not in columns]
    columns = ["candidates_generated"] + [c for c in columns if c not in ("candidates_generated", "accepted")]
    columns.append("accepted")
    rows = []
    for method, per_seed in funnels.items():
        row = [method] + [format_mean_std([f.get(column) for f in per_seed], digits=0) for column in columns]
        rates = [f["accepted"] / f["candidates_generated"] if f["candidates_generated"] else None for f in per_seed]
        rows.append(row + [format_mean_std(rates, digits=1, scale=100, suffix=" %")])
    headers = ["Method"] + [c.replace("_", " ") for c in columns] + ["Acceptance rate"]
    return markdown_table(headers, rows)


def render_funnel_table(results: Results) -> str:
    """Markdown table: candidates generated, rows after each filter and accepted, summed over cycles (mean ± std)."""
    return format_funnel_table(funnel_summary(results))


def format_compute_table(compute: Mapping[str, Mapping[str, Sequence[Any]]]) -> str:
    """Markdown table from `summary.compute_summary`."""
    per_method = {method: entry["stage_seconds"] for method, entry in compute.items()}
    stages = [s for s in analysis.STAGES if any(s in t for times in per_method.values() for t in times)]
    others = sorted({s for times in per_method.values() for t in times for s in t} - set(stages) - {"total"})
    columns = stages + others + ["total"]
    rows = []
    for method, times in per_method.items():
        row = [method] + [format_mean_std([t.get(c) for t in times], digits=1) for c in columns]
        row.append(format_mean_std(compute[method]["peak_memory_mb"], digits=0))
        rows.append(row)
    headers = ["Method"] + [f"{c} (s)" for c in columns] + ["Peak memory (MB)"]
    return markdown_table(headers, rows)


def render_compute_table(results: Results) -> str:
    """Markdown table of wall time per stage (summed over cycles) and peak memory, mean ± std over seeds."""
    return format_compute_table(compute_summary(results))


def render_runs_table(results: Results) -> str:
    """Markdown table of each run's cycles and stop reason."""
    return markdown_table(["Method", "Seed", "Cycles", "Stop reason"], runs_summary(results))

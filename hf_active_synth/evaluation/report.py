"""Comparison reports: `report.md`, `summary.json` and PNG plots from the histories of several methods and seeds.

```python
>>> from hf_active_synth.evaluation.report import build_report
>>> from hf_active_synth.evaluation.analysis import load_results
>>> results = load_results({"active": ["runs/active-s0", "runs/active-s1"], "random_synthetic": [...], ...})
>>> build_report(results, "reports/digits", real_only="real_only", random_baseline="random_synthetic")
```

Everything here is a pure function of the data passed in: `analysis` holds the per-run numbers, `summary` the
[`ComparisonSummary`] computed once from all runs, `tables` the markdown formatted from it, `plots` the figures.
`render_results_table` is reusable on its own, e.g. by model cards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import analysis
from .analysis import Extras, Results
from .paired_tables import format_paired_sections
from .plots import plot_accuracy_vs_synthetic, plot_entropy_per_cycle, plot_synthetic_per_class
from .privacy_report import PrivacySummary, format_privacy_sections
from .summary import ComparisonSummary, json_safe
from .tables import (
    format_compute_table,
    format_funnel_table,
    format_results_table,
    format_robustness_tables,
    format_uncertainty_table,
    markdown_table,
    render_data_efficiency,
    render_results_table,
)

__all__ = ["PLOT_FILES", "ComparisonSummary", "build_report", "render_markdown", "render_results_table", "summarize"]

PLOT_FILES: tuple[str, ...] = ("accuracy_vs_synthetic.png", "entropy_per_cycle.png", "synthetic_per_class.png")


def summarize(
    results: Results,
    extras: Extras | None = None,
    real_only: str | None = "real_only",
    random_baseline: str | None = "random_synthetic",
) -> dict[str, Any]:
    """Every number of the report, per seed, as a JSON-friendly dict (written to `summary.json`)."""
    return ComparisonSummary.from_runs(results, extras, real_only, random_baseline).to_json()


def render_markdown(
    summary: ComparisonSummary,
    title: str = "Active synthesis: comparison report",
    samples: str | None = None,
    privacy: PrivacySummary | None = None,
) -> str:
    """The text of `report.md`: every table formatted from `summary` (and `privacy`, the synthetic-only and privacy
    sections, after the paired ones), then the plots, the samples' preview (`samples`, a markdown section body, see
    `evaluation.previews.Preview.markdown`) and the runs."""
    sections = [f"# {title}"]
    for heading, body in format_paired_sections(summary.paired):
        sections += [f"## {heading}", body]
    for heading, body in format_privacy_sections(privacy) if privacy is not None else ():
        sections += [f"## {heading}", body]
    sections += [
        "## Means over runs",
        f"{summary.num_methods} methods, {summary.num_runs} runs. Values are mean ± sample standard "
        "deviation over seeds (a single seed shows its value). Accuracy and macro-F1 are the validation metrics of "
        "each run's last cycle.",
        "## Final performance",
        format_results_table(summary.final),
    ]
    optional_sections = [
        ("Robustness", format_robustness_tables(summary.robustness, summary.robustness_means)),
        (
            "Uncertainty reduction",
            "Mean uncertainty of the targeted examples before synthesis cycle 1 and after cycle 2 (or the last "
            "cycle the run reached); the proposal expects at least a 20 % entropy reduction.\n\n"
            + format_uncertainty_table(summary.uncertainty)
            if summary.uncertainty
            else "",
        ),
        ("Data efficiency", render_data_efficiency(summary.data_efficiency)),
        ("Synthetic data funnel", format_funnel_table(summary.funnels)),
    ]
    for heading, body in optional_sections:
        if body:
            sections += [f"## {heading}", body]
    sections += [
        "## Compute cost",
        "Wall time per stage summed over all cycles, and the highest peak memory of a run.\n\n"
        + format_compute_table(summary.compute),
        "## Plots",
        "![Accuracy vs synthetic samples](accuracy_vs_synthetic.png)\n\n"
        "![Targeted-set entropy per cycle](entropy_per_cycle.png)\n\n"
        "![Accepted synthetic samples per class](synthetic_per_class.png)",
    ]
    if samples:
        sections += ["## Synthetic samples", samples]
    sections += [
        "## Runs",
        markdown_table(["Method", "Seed", "Cycles", "Stop reason"], summary.runs),
    ]
    return "\n\n".join(sections) + "\n"


def build_report(
    results: Results,
    output_dir: str | Path,
    extras: Extras | None = None,
    real_only: str | None = "real_only",
    random_baseline: str | None = "random_synthetic",
    title: str = "Active synthesis: comparison report",
    label_names: Mapping[str, str] | Sequence[str] | None = None,
    run_dir: str | Path | None = None,
    derived: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Path:
    """Writes `report.md`, `summary.json` and the PNG plots into `output_dir`, and with `run_dir` a preview of that
    run's accepted samples (`preview.png` for images, a table of sentences for text).

    Args:
        results (`Mapping[str, Sequence[dict]]`): `method -> histories` (the trainer's `history.json`), one per seed.
        output_dir (`str` or `Path`): Folder to write into (created if needed; existing files are overwritten).
        extras (`Mapping[str, Sequence[dict]]`, *optional*): `method -> final metrics`, one dict per seed, e.g.
            `{"ece": ..., "clean_accuracy": ..., "robustness": {corruption: {severity: accuracy}}}`.
        real_only (`str`, *optional*): The method trained on real data only (reference for accuracy gains).
        random_baseline (`str`, *optional*): The method adding random (untargeted) synthetic data.
        title (`str`): The report's heading.
        label_names (*optional*): Class names for the per-class plot.
        run_dir (`str` or `Path`, *optional*): A run folder (`cycle-k/synthetic/`, and `real_examples/` when the
            run saved some) whose samples the report shows; runs without accepted samples show none.
        derived (`Mapping[str, Sequence[dict]]`, *optional*): `method -> entries` of the synthetic-only runs
            (`compare.collect_derived_runs`), for the synthetic-only, privacy-audit and membership sections.

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

    samples = _preview(run_dir, output_dir)
    summary = ComparisonSummary.from_runs(results, extras, real_only, random_baseline)
    privacy = PrivacySummary.from_entries(derived, extras or {}) if derived else None
    payload = {**summary.to_json(), **(json_safe(privacy.to_json()) if privacy else {})}
    (output_dir / "summary.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    report_path = output_dir / "report.md"
    report_path.write_text(render_markdown(summary, title, samples=samples, privacy=privacy), encoding="utf-8")
    return report_path


def _preview(run_dir: str | Path | None, output_dir: Path) -> str | None:
    """Writes the preview of `run_dir`'s samples into `output_dir`; returns its markdown (`None`: nothing to show)."""
    from .previews import PREVIEW_FILE, Preview, load_run_samples

    (output_dir / PREVIEW_FILE).unlink(missing_ok=True)  # a stale picture of an earlier run
    samples = None if run_dir is None else load_run_samples(run_dir)
    # A local report may show the real data the run kept next to its samples: nothing here is published.
    return None if samples is None else Preview.write(samples, output_dir, include_real=True).markdown()

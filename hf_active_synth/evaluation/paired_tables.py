"""Markdown for the paired sections of a comparison report (formatted from `paired_summary.PairedSummary`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .paired_summary import BASELINES, ENTROPY_REDUCTION_TARGET, REAL_ONLY, PairedSummary
from .tables import format_mean_std, markdown_table

METRIC_NAMES = {"accuracy": "accuracy", "f1": "macro-F1", "mean_corrupted_accuracy": "accuracy, mean over corruptions"}


def _signed(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _interval(difference: Mapping[str, Any]) -> str:
    low, high = difference.get("ci95") or (None, None)
    if low is None or high is None:
        return "n/a"
    verdict = "above 0" if low > 0 else "below 0" if high < 0 else "contains 0"
    return f"[{low:+.4f}, {high:+.4f}] ({verdict})"


def format_paired_table(differences: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> str:
    """One row per method × baseline × metric: mean paired difference, its 95 % interval, pairs and wins
    (`real_only`'s own rows are left out of the table, not of `summary.json`: they negate the others')."""
    rows = []
    for method, per_baseline in differences.items():
        if method == REAL_ONLY:  # its rows are the negation of the others' rows against it
            continue
        for baseline in BASELINES:
            for metric, difference in per_baseline.get(baseline, {}).items():
                n = difference.get("n", 0)
                rows.append(
                    [
                        method,
                        f"{baseline}",
                        f"test {METRIC_NAMES.get(metric, metric)}",
                        _signed(difference.get("mean")),
                        _interval(difference),
                        f"{difference.get('wins', 0)}/{n}",
                    ]
                )
    if not rows:
        return ""
    return markdown_table(["Method", "minus", "Metric", "Mean difference", "95 % interval", "Wins"], rows)


def format_gap_closure(closure: Mapping[str, float | None]) -> str:
    if not closure:
        return ""
    rows = [[method, "n/a" if value is None else f"{value:.2f}"] for method, value in closure.items()]
    return markdown_table(["Method", "Gap closure (random synthetic = 0, BALD active learning = 1)"], rows)


def format_pair_efficiency(efficiency: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for method, result in efficiency.items():
        median = result.get("median_samples")
        rows.append(
            [
                method,
                "n/a" if median is None else f"{median:.0f}",
                f"{result.get('num_reached', 0)}/{result.get('n', 0)}",
                f"{result.get('cap', 0):.0f}",
            ]
        )
    if not rows:
        return ""
    return markdown_table(
        ["Method", "Median synthetic samples to reach random's final validation accuracy", "Pairs reaching it", "Cap"],
        rows,
    )


def format_label_audit(audit: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    rows = []
    for method, runs in audit.items():
        agreement = [run.get("oracle_label_agreement") for run in runs]
        bald = [run.get("heldout_bald") for run in runs]
        rows.append([method, format_mean_std(agreement, 3), format_mean_std(bald, 4), str(len(runs))])
    if not rows:
        return ""
    return markdown_table(
        ["Method", "Oracle label agreement of accepted samples", "Held-out members' BALD on them", "Runs"], rows
    )


def format_heldout_uncertainty(heldout: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    rows = []
    for method, runs in heldout.items():
        before = [run["before"].get("entropy") for run in runs]
        after = [run["after"].get("entropy") for run in runs]
        reduction = [run.get("entropy_reduction_pct") for run in runs]
        met = sum(bool(run.get("meets_target")) for run in runs)
        rows.append(
            [
                method,
                format_mean_std(before, 4),
                format_mean_std(after, 4),
                format_mean_std(reduction, 1, suffix=" %"),
                f"{met}/{len(runs)}",
            ]
        )
    if not rows:
        return ""
    return markdown_table(
        [
            "Method",
            "Validation entropy after cycle 0",
            "after the last cycle",
            "Reduction",
            f"Runs with ≥ {ENTROPY_REDUCTION_TARGET:.0f} %",
        ],
        rows,
    )


def format_paired_sections(paired: PairedSummary) -> list[tuple[str, str]]:
    """`(heading, body)` of every paired section that has content, in report order."""
    num_pairs = max(
        (d.get("n", 0) for per_b in paired.differences.values() for per_m in per_b.values() for d in per_m.values()),
        default=0,
    )
    intro = (
        f"Each method minus a baseline on the same (seed, data split) pairs (up to {num_pairs} pairs), test metrics "
        "of the model each run hands back (its best validation cycle); 95 % Student-t intervals over the pairs. A "
        "difference whose interval contains 0 is no result."
    )
    table = format_paired_table(paired.differences)
    sections = [("Paired differences", f"{intro}\n\n{table}" if table else "")]
    last = format_paired_table(paired.differences_last_cycle)
    if last:
        sections.append(("Paired differences of the last cycle's model", last))
    sections += [
        ("Gap closure", format_gap_closure(paired.gap_closure)),
        ("Data efficiency per pair", format_pair_efficiency(paired.data_efficiency)),
        (
            "Independent label audit",
            "An oracle of another model family, fitted on real labelled data outside the test split, that neither "
            "guided nor selected, checks every accepted sample's label; held-out ensemble members (seeded apart, "
            "same data) measure how much they disagree on them.\n\n" + table
            if (table := format_label_audit(paired.label_audit))
            else "",
        ),
        (
            "Uncertainty on held-out real rows",
            "Mean predictive entropy of each run's estimator on the real validation rows (never trained on).\n\n"
            + table
            if (table := format_heldout_uncertainty(paired.heldout_uncertainty))
            else "",
        ),
    ]
    return [(heading, body) for heading, body in sections if body]

"""The synthetic-only, privacy-audit and membership-inference sections of a comparison report.

Built from the entries of the derived runs (`evaluation.synthetic_only`) and of `real_only`:

* `synthetic_only`: each synthetic-only method's test accuracy, its per-pair ratio to `real_only`'s and the paired
  difference, each mean with its 95 % Student-t interval over the (seed, split) pairs;
* `privacy_audit`: per source method and pair, the audit of every sample the run accepted (the published dataset),
  and per cycle;
* `membership_inference`: per attacked model and pair, the loss-threshold and offline likelihood-ratio AUCs, with the
  paired difference of each model's likelihood-ratio AUC to `real_only`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .paired import pair_runs, paired_difference
from .tables import format_mean_std, markdown_table

__all__ = ["PrivacySummary", "format_privacy_sections"]

REAL_ONLY = "real_only"
ATTACKS = ("loss_threshold", "lira_offline")
SIZE_LABELS = {"real_size": "as many as the real training rows", "full": "every accepted sample"}
NOT_PROVEN = (
    "DCR and membership inference are empirical checks against specific "
    "attacks: a distance in one feature space, a loss threshold, a likelihood ratio with few reference models. They "
    "are not differential-privacy guarantees: a sample can still reveal a training record in ways these do not see "
    "(a paraphrase, a distinctive detail, an attribute), a stronger attack may succeed where these fail, and an AUC "
    "near 0.5 on average can hide a few exposed records (see the flagged counts in `summary.json`)."
)


def _interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean of `values` with its 95 % t interval (`paired_difference` against zeros), JSON-ready."""
    return paired_difference(list(values), [0.0] * len(values)).to_dict()


def _by_pair(entries: Sequence[Mapping[str, Any]]) -> dict[tuple, Mapping[str, Any]]:
    return {(entry.get("split"), entry.get("seed")): entry for entry in entries}


@dataclass(frozen=True)
class PrivacySummary:
    """The three sections (see the module docstring); `to_json` gives their `summary.json` keys."""

    synthetic_only: dict[str, dict[str, Any]]
    privacy_audit: dict[str, list[dict[str, Any]]]
    membership: dict[str, list[dict[str, Any]]]

    @classmethod
    def from_entries(
        cls, derived: Mapping[str, Sequence[Mapping[str, Any]]], entries: Mapping[str, Sequence[Mapping[str, Any]]]
    ) -> PrivacySummary:
        """`derived`: `method -> entries` of the synthetic-only runs; `entries`: those of the loop methods."""
        synthetic_only = {}
        for method, runs in derived.items():
            row: dict[str, Any] = {
                "source": runs[0].get("derived_from"),
                "size": runs[0].get("size"),
                "num_train_rows": [run.get("num_train_rows") for run in runs],
                "accuracy": [run.get("clean_accuracy") for run in runs],
            }
            if REAL_ONLY in entries:
                pairs = pair_runs({method: runs, REAL_ONLY: entries[REAL_ONLY]}, method, REAL_ONLY)
                row["real_only_accuracy"] = [pair.baseline for pair in pairs]
                row["ratio_to_real_only"] = _interval([p.method / p.baseline for p in pairs if p.baseline])
                row["difference_to_real_only"] = paired_difference(
                    [p.method for p in pairs], [p.baseline for p in pairs]
                ).to_dict()
            synthetic_only[method] = row
        audits: dict[str, dict[tuple, dict[str, Any]]] = {}
        attacked: dict[str, dict[tuple, dict[str, Any]]] = {}
        for method, runs in derived.items():
            for run in runs:
                key, source = (run.get("split"), run.get("seed")), str(run.get("derived_from"))
                if run.get("privacy_audit"):
                    audits.setdefault(source, {})[key] = {"split": key[0], "seed": key[1], **run["privacy_audit"]}
                membership = run.get("membership") or {}
                models = {REAL_ONLY: membership.get(REAL_ONLY), source: membership.get("source")}
                models[method] = membership.get("synthetic_only")
                for model, result in models.items():
                    if result:
                        attacked.setdefault(model, {})[key] = {"split": key[0], "seed": key[1], **result}
        order = [REAL_ONLY] + sorted(set(attacked) - set(derived) - {REAL_ONLY}) + list(derived)
        return cls(
            synthetic_only=synthetic_only,
            privacy_audit={source: list(by_pair.values()) for source, by_pair in audits.items()},
            membership={model: list(attacked[model].values()) for model in order if model in attacked},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "synthetic_only": self.synthetic_only,
            "privacy_audit": self.privacy_audit,
            "membership_inference": self.membership,
        }


def _ci(summary: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not summary or summary.get("mean") is None:
        return "n/a"
    low, high = summary.get("ci95") or (None, None)
    interval = "" if low is None else f" [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{summary['mean']:.{digits}f}{interval}"


def _signed_ci(summary: Mapping[str, Any] | None) -> str:
    if not summary or summary.get("mean") is None:
        return "n/a"
    low, high = summary.get("ci95") or (None, None)
    interval = "" if low is None else f" [{low:+.4f}, {high:+.4f}]"
    return f"{summary['mean']:+.4f}{interval} ({summary.get('wins', 0)}/{summary.get('n', 0)} above)"


def _synthetic_only_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    table = []
    for method, row in rows.items():
        table.append(
            [
                method,
                f"`{row['source']}`, {SIZE_LABELS.get(row['size'], row['size'])}",
                format_mean_std(row["num_train_rows"], 0),
                str(len(row["accuracy"])),
                format_mean_std(row["accuracy"], 4),
                format_mean_std(row.get("real_only_accuracy", []), 4),
                _ci(row.get("ratio_to_real_only")),
                _signed_ci(row.get("difference_to_real_only")),
            ]
        )
    headers = ["Method", "Trained on", "Rows", "Pairs", "Test accuracy", "real_only", "Ratio to real_only [95 %]"]
    return markdown_table([*headers, "Minus real_only [95 %]"], table)


def _audit_table(audits: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    table = []
    for source, runs in audits.items():
        published = [run["published"] for run in runs]
        near = [p.get("num_near_copies") for p in published]
        counted = [n for n in near if n is not None]
        table.append(
            [
                source,
                str(len(runs)),
                format_mean_std([p["num_samples"] for p in published], 0),
                format_mean_std([p.get("median_ratio") for p in published], 3),
                format_mean_std([p["dcr_p5"] for p in published], 4),
                format_mean_std([p["heldout_dcr_p5"] for p in published], 4),
                format_mean_std([100 * p["share_closer_than_heldout_p5"] for p in published], 1, suffix=" %"),
                f"{sum(counted)} of {sum(p['num_samples'] for p in published)}" if counted else "not counted",
            ]
        )
    headers = ["Source", "Pairs", "Samples", "Median DCR ratio (synthetic / held-out)", "Synthetic DCR, 5th pct"]
    return markdown_table(
        [*headers, "Held-out DCR, 5th pct", "Closer than held-out 5th pct", "Near-copies (all pairs)"], table
    )


def _cycle_audit_table(audits: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    table = []
    for source, runs in audits.items():
        cycles = sorted({int(c) for run in runs for c in run.get("cycles", {})})
        for cycle in cycles:
            per_pair = [run["cycles"][str(cycle)] for run in runs if str(cycle) in run.get("cycles", {})]
            table.append(
                [
                    source,
                    str(cycle),
                    format_mean_std([a.get("median_ratio") for a in per_pair], 3),
                    format_mean_std([100 * a["share_closer_than_heldout_p5"] for a in per_pair], 1, suffix=" %"),
                ]
            )
    return markdown_table(["Source", "Cycle", "Median DCR ratio", "Closer than held-out 5th pct"], table)


def _membership_table(membership: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    reference = _by_pair(membership.get(REAL_ONLY, []))
    table = []
    for model, runs in membership.items():
        cells = [model, str(len(runs))]
        for attack in ATTACKS:
            cells.append(format_mean_std([(run.get(attack) or {}).get("auc") for run in runs], 3))
        tpr = [100 * (run.get("lira_offline") or {}).get("tpr_at_low_fpr", math.nan) for run in runs]
        cells.append(format_mean_std(tpr, 1, suffix=" %"))
        if model == REAL_ONLY or not reference:
            cells.append("—")
        else:
            pairs = [(run, reference[key]) for run in runs if (key := (run["split"], run["seed"])) in reference]
            auc = lambda run: (run.get("lira_offline") or run["loss_threshold"])["auc"]  # noqa: E731
            difference = paired_difference([auc(a) for a, _ in pairs], [auc(b) for _, b in pairs]).to_dict()
            cells.append(_signed_ci(difference))
        table.append(cells)
    headers = ["Model", "Pairs", "Loss-threshold AUC", "Likelihood-ratio AUC", "LiRA TPR at 5 % FPR"]
    return markdown_table([*headers, "LiRA AUC minus real_only's [95 %]"], table)


def format_privacy_sections(summary: PrivacySummary) -> list[tuple[str, str]]:
    """`(heading, body)` of each section with content, in report order."""
    sections = []
    if summary.synthetic_only:
        sections.append(
            (
                "Synthetic-only models",
                "A fresh model trained on a finished run's accepted synthetic samples alone (no real row), scored on "
                "the real test split; ratio and difference to `real_only` per (seed, split) pair, means with 95 % "
                "Student-t intervals.\n\n" + _synthetic_only_table(summary.synthetic_only),
            )
        )
    if summary.privacy_audit:
        sections.append(
            (
                "Privacy audit of the synthetic data",
                "Every sample a run accepted (the dataset it publishes): its distance to the closest real training "
                "record (DCR), against the DCR of the real validation rows (never trained on) to the same records. "
                "Fresh real data would give a ratio near 1 and about 5 % closer than the held-out 5th percentile. "
                "Near-copies are counted at the near-copy filter's threshold (accepted samples have passed it).\n\n"
                + _audit_table(summary.privacy_audit)
                + "\n\nPer cycle (mean ± std over pairs):\n\n"
                + _cycle_audit_table(summary.privacy_audit),
            )
        )
    if summary.membership:
        sections.append(
            (
                "Membership inference",
                "Attacks telling each model's real training rows (members) from held-out pool rows (non-members); "
                "AUC 0.5 is chance. `real_only` trained on the real rows, the source methods on real ∪ synthetic, "
                "the `synthetic_only_*` models on synthetic rows only (their generator saw the real rows). The "
                "likelihood-ratio attack compares each row with reference models that never saw it.\n\n"
                + _membership_table(summary.membership),
            )
        )
    if sections:
        sections.append(("What the privacy figures do not prove", NOT_PROVEN))
    return sections

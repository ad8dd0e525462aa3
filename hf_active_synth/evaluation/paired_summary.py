"""The paired sections of a comparison's summary: what can tell methods apart.

Built from the runs' final-metric entries (each with its `seed` and `split`) and their histories:

* `paired_differences` (and `paired_differences_last_cycle`): every method against `random_synthetic` and
  `real_only`, test accuracy and macro-F1, mean paired difference with its 95 % t interval, pairs and wins;
* `gap_closure`: `(method - random_synthetic) / (bald_active_learning - random_synthetic)` on mean test accuracy,
  over the pairs the three methods share;
* `data_efficiency_pairs`: per pair, the synthetic samples a method needs to reach `random_synthetic`'s final
  validation accuracy (pairs that never reach it count at the cap, flagged);
* `label_audit`: per run, the independent oracle's agreement with the labels of every accepted sample and the
  held-out members' disagreement on them (see `auditing`);
* `heldout_uncertainty`: per run, the estimator's mean entropy / BALD on the real validation rows after cycle 0 and
  after the last cycle, and the reduction (rows no model trained on, so the check can fail).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import analysis
from .efficiency import data_efficiency_from_histories
from .paired import gap_closure, pair_runs, paired_differences

RANDOM_BASELINE = "random_synthetic"
REAL_ONLY = "real_only"
REFERENCE = "bald_active_learning"
BASELINES: tuple[str, ...] = (RANDOM_BASELINE, REAL_ONLY)
ENTROPY_REDUCTION_TARGET = 20.0
"""The proposal's expected entropy reduction (%), checked on held-out real rows."""


CORRUPTED_ACCURACY = "mean_corrupted_accuracy"
"""Test accuracy averaged over every corruption and severity of the run's robustness evaluation."""


def with_corrupted_accuracy(entry: Mapping[str, Any]) -> dict[str, Any]:
    """`entry` with `mean_corrupted_accuracy` (None when the run had no corruption evaluation)."""
    scores = analysis.robustness_scores(entry)
    values = [accuracy for by_severity in scores.values() for accuracy in by_severity.values()]
    return {**entry, CORRUPTED_ACCURACY: sum(values) / len(values) if values else None}


def _last_cycle_entries(entries: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The entries with the last cycle's test metrics in place of the best validation cycle's."""
    return {
        method: [{"seed": e.get("seed"), "split": e.get("split"), **(e.get("last") or e)} for e in runs]
        for method, runs in entries.items()
    }


def paired_gap_closure(entries: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, float | None]:
    """`gap_closure` per method over the pairs it shares with `random_synthetic` and `bald_active_learning`."""
    if RANDOM_BASELINE not in entries or REFERENCE not in entries:
        return {}
    reference = {pair.key: pair.method for pair in pair_runs(entries, REFERENCE, RANDOM_BASELINE)}
    closure: dict[str, float | None] = {}
    for method in entries:
        if method in (RANDOM_BASELINE, REFERENCE):
            continue
        pairs = [pair for pair in pair_runs(entries, method, RANDOM_BASELINE) if pair.key in reference]
        if not pairs:
            closure[method] = None
            continue
        means = {
            method: sum(p.method for p in pairs) / len(pairs),
            RANDOM_BASELINE: sum(p.baseline for p in pairs) / len(pairs),
            REFERENCE: sum(reference[p.key] for p in pairs) / len(pairs),
        }
        closure[method] = gap_closure(means)[method]
    return closure


def _cycle_audits(history: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c["label_audit"] for c in analysis.sorted_cycles(history) if c.get("label_audit")]


def run_label_audit(history: Mapping[str, Any]) -> dict[str, Any] | None:
    """One run's audit over all its cycles: sample-weighted oracle agreement and mean held-out BALD."""
    audits = _cycle_audits(history)
    if not audits:
        return None
    audited = [(a["oracle_label_agreement"], a["num_samples"]) for a in audits if "num_samples" in a]
    total = sum(n for value, n in audited if value is not None)
    agreement = sum(value * n for value, n in audited if value is not None) / total if total else None
    bald = [a["heldout_disagreement"]["bald"] for a in audits if "heldout_disagreement" in a]
    return {
        "seed": history.get("seed"),
        "split": history.get("split"),
        "oracle_label_agreement": agreement,
        "num_audited": total,
        "per_cycle_agreement": [a.get("oracle_label_agreement") for a in audits],
        "heldout_bald": sum(bald) / len(bald) if bald else None,
    }


def run_heldout_uncertainty(history: Mapping[str, Any]) -> dict[str, Any] | None:
    """One run's mean uncertainty on the real validation rows after cycle 0 and after its last cycle."""
    cycles = [c for c in analysis.sorted_cycles(history) if c.get("heldout_uncertainty")]
    if len(cycles) < 2:
        return None
    before, after = cycles[0]["heldout_uncertainty"], cycles[-1]["heldout_uncertainty"]
    entropy_before = before.get("entropy")
    reduction = (
        100.0 * (entropy_before - after["entropy"]) / entropy_before
        if entropy_before and math.isfinite(entropy_before)
        else None
    )
    return {
        "seed": history.get("seed"),
        "split": history.get("split"),
        "before": dict(before),
        "after": dict(after),
        "after_cycle": cycles[-1]["cycle"],
        "entropy_reduction_pct": reduction,
        "meets_target": None if reduction is None else reduction >= ENTROPY_REDUCTION_TARGET,
    }


@dataclass(frozen=True)
class PairedSummary:
    """The paired sections of the report (see the module docstring); `to_json` gives their `summary.json` keys."""

    differences: dict[str, Any]
    differences_last_cycle: dict[str, Any]
    gap_closure: dict[str, float | None]
    data_efficiency: dict[str, Any]
    label_audit: dict[str, list[dict[str, Any]]]
    heldout_uncertainty: dict[str, list[dict[str, Any]]]

    @classmethod
    def from_runs(
        cls, results: Mapping[str, Sequence[Mapping[str, Any]]], entries: Mapping[str, Sequence[Mapping[str, Any]]]
    ) -> PairedSummary:
        """Builds the paired sections from `method -> histories` and `method -> final-metric entries`."""
        paired_entries = {
            m: [with_corrupted_accuracy(e) for e in runs] for m, runs in entries.items() if runs and "seed" in runs[0]
        }
        methods = list(paired_entries)
        has_corruptions = any(e[CORRUPTED_ACCURACY] is not None for runs in paired_entries.values() for e in runs)
        metrics = ("accuracy", "f1", CORRUPTED_ACCURACY) if has_corruptions else ("accuracy", "f1")
        efficiency = {}
        if RANDOM_BASELINE in results:
            for method in results:
                if method in (RANDOM_BASELINE, REAL_ONLY) or analysis.is_real_only(results[method]):
                    continue
                efficiency[method] = data_efficiency_from_histories(results, method, RANDOM_BASELINE).to_dict()
        audits = {m: [a for h in runs if (a := run_label_audit(h))] for m, runs in results.items()}
        heldout = {m: [u for h in runs if (u := run_heldout_uncertainty(h))] for m, runs in results.items()}
        return cls(
            differences=paired_differences(paired_entries, methods, BASELINES, metrics) if methods else {},
            differences_last_cycle=paired_differences(_last_cycle_entries(paired_entries), methods, BASELINES)
            if methods
            else {},
            gap_closure=paired_gap_closure(paired_entries),
            data_efficiency=efficiency,
            label_audit={m: runs for m, runs in audits.items() if runs},
            heldout_uncertainty={m: runs for m, runs in heldout.items() if runs},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "paired_differences": self.differences,
            "paired_differences_last_cycle": self.differences_last_cycle,
            "gap_closure": self.gap_closure,
            "data_efficiency_pairs": self.data_efficiency,
            "label_audit": self.label_audit,
            "heldout_uncertainty": self.heldout_uncertainty,
        }

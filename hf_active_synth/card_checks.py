"""The per-cycle checks a card reports: each filter's step, the privacy checks and audit, and the independent label
audit."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cycle import CycleResult

__all__ = [
    "FilterStep",
    "PrivacyCheck",
    "filter_steps",
    "label_audit_cells",
    "privacy_audit_cells",
    "privacy_checks",
    "share",
]


def share(part: int, whole: int) -> str | None:
    """`part / whole` as `"75.0%"` (None when `whole` is 0)."""
    return f"{100.0 * part / whole:.1f}%" if whole else None


@dataclass(frozen=True)
class FilterStep:
    """One filter of a cycle: the rows that reached it, the rows it kept, and their share (`"75.0%"`)."""

    name: str
    reached: int
    remaining: int
    share: str | None


@dataclass(frozen=True)
class PrivacyCheck:
    """What one filter that checks candidates against the real data removed in a cycle."""

    name: str
    removed: int
    reached: int
    share: str | None


def filter_steps(result: CycleResult) -> list[FilterStep]:
    """The cycle's filters in the order they ran, each with the rows that reached it and the rows it kept."""
    previous = int(result.candidates_generated or 0)
    steps = []
    for name, remaining in (result.filter_counts or {}).items():
        steps.append(FilterStep(name, previous, remaining, share(remaining, previous)))
        previous = remaining
    return steps


def privacy_checks(result: CycleResult, real_data_filters: Collection[str]) -> list[PrivacyCheck]:
    """What each filter named in `real_data_filters` (those with `checks_real_data`) removed in `cycle`."""
    return [
        PrivacyCheck(
            step.name, step.reached - step.remaining, step.reached, share(step.reached - step.remaining, step.reached)
        )
        for step in filter_steps(result)
        if step.name in real_data_filters
    ]


def label_audit_cells(result: CycleResult) -> dict[str, str] | None:
    """The independent audit of a cycle's accepted samples, formatted for the card (None when not audited)."""
    audit = result.label_audit or {}
    agreement, heldout = audit.get("oracle_label_agreement"), (audit.get("heldout_disagreement") or {}).get("bald")
    return (
        {
            "agreement": "—" if agreement is None else f"{agreement:.1%} of {audit.get('num_samples', 0)}",
            "oracle": str(audit.get("oracle") or "—"),
            "heldout_bald": "—" if heldout is None else f"{heldout:.4f}",
        }
        if audit
        else None
    )


def privacy_audit_cells(audit: Mapping[str, Any] | None) -> dict[str, str] | None:
    """A privacy audit (`privacy.PrivacyAudit` fields) formatted for the card's table (None when not audited)."""
    if not audit:
        return None
    ratio, near = audit.get("median_ratio"), audit.get("num_near_copies")
    threshold = audit.get("near_copy_threshold")
    return {
        "samples": str(audit.get("num_samples", 0)),
        "median_ratio": "—" if ratio is None else f"{ratio:.3f}",
        "dcr_p5": f"{audit.get('dcr_p5', 0.0):.4f}",
        "heldout_dcr_p5": f"{audit.get('heldout_dcr_p5', 0.0):.4f}",
        "closer_share": f"{audit.get('share_closer_than_heldout_p5', 0.0):.1%}",
        "near_copies": "not counted" if near is None else f"{near} (threshold {threshold:g})",
        "measure": str(audit.get("measure") or "—"),
        "near_copy_measure": str(audit.get("near_copy_measure") or "—"),
        "num_heldout": str(audit.get("num_heldout", 0)),
    }

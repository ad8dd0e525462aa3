"""The privacy audit of a set of synthetic samples, and the thresholds that refuse to publish it.

[`audit_samples`] measures every sample's distance to the closest real training record (DCR, `privacy.distance`)
against the DCR of held-out real rows (never trained on) to the same training set. Fresh real data is the
reference: if the samples were as far from the training records as new real data is,

* the median ratio `median DCR(synthetic) / median DCR(held-out)` would be about 1 (below 1: closer than fresh data),
* about 5 % of the samples would fall below the held-out 5th percentile (`share_closer_than_heldout_p5`); much more
  means the generator puts samples unusually close to particular training records.

It also counts near-copies at the near-copy filter's threshold (`privacy.near_copy`). [`PrivacyThresholds`] turns two
of these figures into a publishing gate (`ActiveSynthesisConfig.privacy_max_closer_share` and
`privacy_max_near_copy_share`, checked by `hub.HubPublisher` before it pushes a dataset).

None of this is a differential-privacy guarantee: these are empirical checks against specific leaks in one feature
space, and a clean audit says nothing about attacks that were not run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from .distance import MEASURES, Modality, closest_record_distances, infer_modality
from .near_copy import NearCopyRule

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["HELDOUT_QUANTILE", "PrivacyAudit", "PrivacyThresholds", "audit_samples", "published_audit"]

HELDOUT_QUANTILE = 0.05
"""The held-out DCR quantile a sample is compared with (`share_closer_than_heldout_p5`)."""
MAX_LISTED = 20
"""Flagged sample indices listed in an audit, closest first (the counts are always complete)."""


@dataclass
class PrivacyAudit:
    """The privacy figures of one set of synthetic samples (see the module docstring for what each means).

    Args:
        modality (`str`): `"image"` or `"text"`.
        measure (`str`): The DCR measure (`privacy.distance.MEASURES`).
        num_samples (`int`): Synthetic samples audited.
        num_real (`int`): Real training records they were compared with.
        num_heldout (`int`): Held-out real rows giving the reference DCR.
        dcr_median (`float`), dcr_p5 (`float`): Median and 5th percentile of the samples' DCR.
        heldout_dcr_median (`float`), heldout_dcr_p5 (`float`): The same for the held-out real rows.
        median_ratio (`float`): `dcr_median / heldout_dcr_median` (about 1 for fresh data; lower is closer).
        share_closer_than_heldout_p5 (`float`): Share of samples whose DCR is below `heldout_dcr_p5` (about 0.05 for
            fresh data).
        closest_samples (`list[int]`): Indices of those samples, closest first (at most `MAX_LISTED`).
        near_copy_measure (`str`, *optional*), near_copy_threshold (`float`, *optional*): The near-copy filter's
            measure and threshold; `None` when the run has no near-copy filter.
        num_near_copies (`int`, *optional*): Samples that filter would reject; `near_copy_samples` lists them.
        cumulative (`dict`, *optional*): In a cycle's audit: the audit of every sample accepted so far (the dataset
            published after the cycle).
    """

    modality: Modality
    measure: str
    num_samples: int
    num_real: int
    num_heldout: int
    dcr_median: float
    dcr_p5: float
    heldout_dcr_median: float
    heldout_dcr_p5: float
    median_ratio: float | None
    share_closer_than_heldout_p5: float
    closest_samples: list[int] = field(default_factory=list)
    near_copy_measure: str | None = None
    near_copy_threshold: float | None = None
    num_near_copies: int | None = None
    near_copy_samples: list[int] = field(default_factory=list)
    cumulative: dict[str, Any] | None = None

    @property
    def near_copy_share(self) -> float | None:
        """`num_near_copies / num_samples` (`None` without a near-copy count)."""
        if self.num_near_copies is None or not self.num_samples:
            return None
        return self.num_near_copies / self.num_samples

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrivacyAudit:
        names = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def audit_samples(
    samples: Dataset,
    real: Dataset,
    heldout: Dataset,
    input_column: str,
    label_column: str = "label",
    near_copy: NearCopyRule | None = None,
    modality: Modality | None = None,
) -> PrivacyAudit:
    """Audits `samples` against the real training rows `real`, with `heldout` real rows as the reference.

    Args:
        samples (`datasets.Dataset`): The synthetic samples (raw rows).
        real (`datasets.Dataset`): The real training records the samples must not reveal.
        heldout (`datasets.Dataset`): Real rows of the same distribution that no model trained on (the validation
            split in a run); never the rows of `real`.
        input_column (`str`), label_column (`str`): The rows' columns.
        near_copy ([`NearCopyRule`], *optional*): The run's near-copy filter (`privacy.near_copy_rule(filters)`);
            without it no near-copies are counted.
        modality (`str`, *optional*): `"image"` or `"text"`; inferred from the features by default.
    """
    if len(samples) == 0:
        raise ValueError("No synthetic samples to audit.")
    if len(heldout) == 0:
        raise ValueError("The privacy audit needs held-out real rows (e.g. the validation split) as its reference.")
    modality = modality or infer_modality(real.features, input_column)
    records = real[input_column]
    distances, _ = closest_record_distances(samples[input_column], records, modality)
    heldout_distances, _ = closest_record_distances(heldout[input_column], records, modality)
    heldout_p5 = float(np.quantile(heldout_distances, HELDOUT_QUANTILE))
    heldout_median = float(np.median(heldout_distances))
    closer = np.flatnonzero(distances < heldout_p5)
    closer = closer[np.argsort(distances[closer], kind="stable")]
    audit = PrivacyAudit(
        modality=modality,
        measure=MEASURES[modality],
        num_samples=len(samples),
        num_real=len(real),
        num_heldout=len(heldout),
        dcr_median=float(np.median(distances)),
        dcr_p5=float(np.quantile(distances, HELDOUT_QUANTILE)),
        heldout_dcr_median=heldout_median,
        heldout_dcr_p5=heldout_p5,
        median_ratio=float(np.median(distances) / heldout_median) if heldout_median > 0 else None,
        share_closer_than_heldout_p5=float(len(closer) / len(samples)),
        closest_samples=closer[:MAX_LISTED].tolist(),
    )
    if near_copy is not None:
        flags = near_copy.flags(samples, real, input_column, label_column)
        audit.near_copy_measure, audit.near_copy_threshold = near_copy.measure, near_copy.threshold
        audit.num_near_copies = int(flags.sum())
        audit.near_copy_samples = np.flatnonzero(flags)[:MAX_LISTED].tolist()
    return audit


@dataclass(frozen=True)
class PrivacyThresholds:
    """Limits above which a synthetic dataset is not published (each `None`: no limit).

    Args:
        max_closer_share (`float`, *optional*): Most `share_closer_than_heldout_p5` allowed (fresh real data: about
            0.05). Config option `privacy_max_closer_share`.
        max_near_copy_share (`float`, *optional*): Most share of near-copies allowed (0 refuses any). Config option
            `privacy_max_near_copy_share`.
    """

    max_closer_share: float | None = None
    max_near_copy_share: float | None = None

    @classmethod
    def from_training_args(cls, args: Any) -> PrivacyThresholds | None:
        """The thresholds an `ActiveSynthesisConfig` sets, or `None` when it sets none."""
        thresholds = cls(
            getattr(args, "privacy_max_closer_share", None), getattr(args, "privacy_max_near_copy_share", None)
        )
        return thresholds if thresholds.active else None

    @property
    def active(self) -> bool:
        return self.max_closer_share is not None or self.max_near_copy_share is not None

    def violations(self, audit: PrivacyAudit | None) -> list[str]:
        """One sentence per threshold `audit` crosses, naming the figure, its value, the limit and the option to
        change; with no audit while a threshold is set, the sentence says so (nothing unaudited passes a gate)."""
        if not self.active:
            return []
        if audit is None:
            return [
                "no privacy audit was recorded for this dataset (turn `privacy_audit` on, or unset "
                "`privacy_max_closer_share` / `privacy_max_near_copy_share`)"
            ]
        found = []
        share = audit.share_closer_than_heldout_p5
        if self.max_closer_share is not None and share > self.max_closer_share:
            found.append(
                f"{share:.1%} of the {audit.num_samples} samples are closer to a real training record than 95 % of "
                f"held-out real rows are (limit `privacy_max_closer_share`={self.max_closer_share:g}; fresh real data "
                "gives about 5 %)"
            )
        if self.max_near_copy_share is not None:
            near = audit.near_copy_share
            if near is None:
                found.append(
                    "near-copies were not counted (the run has no near-copy filter) but "
                    f"`privacy_max_near_copy_share`={self.max_near_copy_share:g} is set"
                )
            elif near > self.max_near_copy_share:
                found.append(
                    f"{audit.num_near_copies} of the {audit.num_samples} samples ({near:.1%}) are near-copies of a real "
                    f"training record ({audit.near_copy_measure} threshold {audit.near_copy_threshold:g}; limit "
                    f"`privacy_max_near_copy_share`={self.max_near_copy_share:g})"
                )
        return found


def published_audit(history: Any) -> PrivacyAudit | None:
    """The audit of the dataset published after the last cycle of `history` (cycle dicts or `CycleResult`s): the
    `cumulative` audit of the latest cycle that accepted samples; `None` if no sample was accepted, or if that cycle
    was not audited."""
    for entry in reversed(list(history)):
        entry = entry if isinstance(entry, Mapping) else entry.to_dict()
        if int(entry.get("num_accepted") or 0) > 0:
            audit = entry.get("privacy_audit") or {}
            cumulative = audit.get("cumulative") or audit
            return PrivacyAudit.from_dict(cumulative) if cumulative else None
    return None

"""`PrivacyAuditCallback`: the privacy audit of every cycle, recorded in its `CycleResult.privacy_audit`.

It runs after the trainer has saved `cycle-k/` and before the Hub publisher (the default callbacks put it first), so
the cycle's `cycle.json`, the run's `history.json`, and the dataset card and publishing gate of the same cycle all
see the audit. A cycle's audit covers the samples it accepted; its `cumulative` entry covers every sample accepted
so far, which is the dataset published after that cycle (the `all` configuration).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cycle import CYCLE_FILE, HISTORY_FILE, SYNTHETIC_DIR, CycleStore
from .audit import audit_samples
from .near_copy import NearCopyRule

if TYPE_CHECKING:
    from datasets import Dataset

    from ..cycle import ActiveSynthesisHistory, CycleResult

logger = logging.getLogger(__name__)


class PrivacyAuditCallback:
    """Audits each cycle's accepted samples against the real training rows (see `privacy.audit.audit_samples`).

    Args:
        real_dataset (`datasets.Dataset`): The real training rows (raw).
        heldout_dataset (`datasets.Dataset`): Real rows never trained on (the validation split), the reference.
        input_column (`str`), label_column (`str`): The rows' columns.
        near_copy ([`NearCopyRule`], *optional*): The run's near-copy filter, for the near-copy count.
    """

    def __init__(
        self,
        real_dataset: Dataset,
        heldout_dataset: Dataset,
        input_column: str,
        label_column: str = "label",
        near_copy: NearCopyRule | None = None,
    ):
        self.real_dataset = real_dataset
        self.heldout_dataset = heldout_dataset
        self.input_column = input_column
        self.label_column = label_column
        self.near_copy = near_copy

    def on_run_start(self) -> None:
        """Nothing to do when a run starts."""

    def audit(self, samples: Dataset) -> dict[str, Any]:
        """The audit of `samples` as a JSON-ready dict."""
        return audit_samples(
            samples, self.real_dataset, self.heldout_dataset, self.input_column, self.label_column, self.near_copy
        ).to_dict()

    def on_cycle_end(self, result: CycleResult, cycle_dir: Path, history: ActiveSynthesisHistory) -> None:
        if not (cycle_dir / SYNTHETIC_DIR).is_dir():
            return  # cycle 0, the real-only baseline, or a cycle that accepted nothing
        from datasets import load_from_disk

        accepted = load_from_disk(str(cycle_dir / SYNTHETIC_DIR))
        audit = self.audit(accepted)
        published = CycleStore(cycle_dir.parent).load_synthetic(result.cycle)
        audit["cumulative"] = dict(audit) if len(published) == len(accepted) else self.audit(published)
        result.privacy_audit = audit  # the same object is in `history.cycles`
        (cycle_dir / CYCLE_FILE).write_text(json.dumps(result.to_dict(), indent=2))
        history_file = cycle_dir.parent / HISTORY_FILE
        if history_file.is_file():  # rewritten with the audit, keeping the config the trainer wrote
            payload = json.loads(history_file.read_text())
            CycleStore(cycle_dir.parent).write_history(history, payload.get("config") or {})
        logger.info(
            "Privacy audit of cycle %d: %.1f%% of %d samples closer than the held-out 5th percentile DCR, "
            "median DCR ratio %s, near-copies %s.",
            result.cycle,
            100 * audit["share_closer_than_heldout_p5"],
            audit["num_samples"],
            "n/a" if audit["median_ratio"] is None else f"{audit['median_ratio']:.3f}",
            "not counted" if audit["num_near_copies"] is None else audit["num_near_copies"],
        )

"""The audit stage of a cycle: judges that took no part in guidance or selection look at the accepted samples.

The estimator that steered generation and re-ranked candidates cannot vouch for what it chose: samples picked
*because* it disagrees on them are where it is least trustworthy. [`CycleAuditor`] therefore asks two independent
judges, and the cycle records their verdict in `CycleResult.label_audit` (history, report and dataset card):

* an **oracle** ([`evaluation.audit.OracleAudit`], fitted by the caller on real labelled data outside the test
  split): does it agree with the label each sample was generated for (`oracle_label_agreement`)?
* **held-out members**: a second estimator of the same kind, seeded apart and fitted on the same training data as
  the guiding one, whose mean disagreement on the accepted samples says how hard they really are
  (`heldout_disagreement`), as opposed to how hard they look to the ensemble that chose them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .acquisition import uncertainty_summary
from .evaluation.audit import OracleAudit, audit_accepted

if TYPE_CHECKING:
    from datasets import Dataset

    from .uncertainty import UncertaintyEstimator
    from .uncertainty.context import FitContext


@dataclass
class CycleAuditor:
    """Audits each cycle's accepted samples. Either judge may be missing; with neither, nothing is audited.

    Args:
        oracle ([`OracleAudit`], *optional*): A *fitted* label oracle that never guided nor selected.
        heldout_estimator ([`UncertaintyEstimator`], *optional*): An unfitted estimator, refitted every cycle on the
            trainer's current data (the data the guiding estimator was fitted on) before it scores the samples.
        input_column (`str`), label_column (`str`): The samples' columns.
    """

    oracle: OracleAudit | None = None
    heldout_estimator: UncertaintyEstimator | None = None
    input_column: str = "text"
    label_column: str = "label"

    @property
    def active(self) -> bool:
        """Whether there is anything to audit with."""
        return self.oracle is not None or self.heldout_estimator is not None

    def audit(
        self,
        accepted: Dataset,
        context: FitContext,
        score: Callable[[Dataset, UncertaintyEstimator], torch.Tensor],
    ) -> dict[str, Any]:
        """The audit of one cycle's accepted samples (JSON-ready).

        Args:
            accepted (`datasets.Dataset`): The samples the cycle accepted (raw rows).
            context ([`FitContext`]): What the held-out estimator fits on (the trainer, before the samples merge).
            score (`Callable`): `(rows, estimator) -> member logits [N, C, K]` (the trainer's sharded scoring).

        Returns:
            `dict`: `audit_accepted`'s fields (`oracle_label_agreement`, `per_class`, `off_label_indices`, ...) when
            there is an oracle, and `heldout_disagreement` (mean `bald` / `variance` / `entropy`, `num_members`)
            when there is a held-out estimator. The caller seeds the global RNGs first.
        """
        verdict: dict[str, Any] = {}
        if self.oracle is not None:
            verdict.update(audit_accepted(accepted, self.oracle, self.input_column, self.label_column))
        if self.heldout_estimator is not None:
            self.heldout_estimator.fit(context)
            logits = score(accepted, self.heldout_estimator)
            verdict["heldout_disagreement"] = {
                **uncertainty_summary(logits),
                "num_members": int(logits.shape[2]),
            }
        return verdict

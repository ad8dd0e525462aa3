"""Privacy checks of synthetic data and of the models trained on it.

* `distance`: distance to the closest real training record (DCR) per modality (pixels for images, TF-IDF n-grams for
  text);
* `near_copy`: near-copies at the run's near-copy filter's own measure and threshold;
* `audit`: [`PrivacyAudit`] of a set of samples (DCR against held-out real rows, near-copies) and the
  [`PrivacyThresholds`] that refuse to publish;
* `membership`: membership-inference attacks (loss threshold, offline likelihood ratio) on a model's logits;
* `callback`: [`PrivacyAuditCallback`], the per-cycle audit (`CycleResult.privacy_audit`).

These are empirical checks against specific attacks, not differential-privacy guarantees.
"""

from .audit import HELDOUT_QUANTILE, PrivacyAudit, PrivacyThresholds, audit_samples, published_audit
from .callback import PrivacyAuditCallback
from .distance import MEASURES, Modality, closest_record_distances, infer_modality
from .membership import MembershipAttack, cross_entropy, lira_offline, logit_confidence, loss_attack
from .near_copy import NearCopyRule, near_copy_rule

__all__ = [
    "HELDOUT_QUANTILE",
    "MEASURES",
    "MembershipAttack",
    "Modality",
    "NearCopyRule",
    "PrivacyAudit",
    "PrivacyAuditCallback",
    "PrivacyThresholds",
    "audit_samples",
    "closest_record_distances",
    "cross_entropy",
    "infer_modality",
    "lira_offline",
    "logit_confidence",
    "loss_attack",
    "near_copy_rule",
    "published_audit",
]

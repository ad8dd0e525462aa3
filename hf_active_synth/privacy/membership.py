"""Membership inference: can an attacker tell a model's training records from real rows it never saw?

Two attacks, both scored by the ROC AUC of telling *members* (the real training rows) from *non-members* (held-out
real rows from the same distribution); 0.5 is chance, 1.0 perfect:

* **loss threshold** (Yeom et al., 2018): a row is called a member when the model's cross-entropy on it is low;
* **offline likelihood ratio** (LiRA, Carlini et al., 2022, the offline variant): each row's logit-scaled confidence
  in its true label, `φ = z_y - logsumexp(z_{≠y})`, is compared with the confidences that *reference* models trained
  without it give the same row (per-row mean, one pooled standard deviation, as the paper advises with few reference
  models): `score = Φ((φ_target - μ_row) / σ)`. It calibrates away how easy each row is, so a row the target model
  fits much better than models that never saw it (memorised) stands out even when its loss is not the lowest.

Both also report the true-positive rate at a low false-positive rate (members flagged at a threshold that flags
`low_fpr` of the non-members), and which members are flagged there: an AUC hides a few memorised rows among many.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["MembershipAttack", "cross_entropy", "lira_offline", "logit_confidence", "loss_attack"]

AttackName = Literal["loss_threshold", "lira_offline"]
MAX_FLAGGED = 20
"""Flagged members listed in a result, most exposed first (the count is always complete)."""


@dataclass
class MembershipAttack:
    """The result of one membership-inference attack on one model.

    Args:
        attack (`str`): `"loss_threshold"` or `"lira_offline"`.
        auc (`float`): ROC AUC of the attack's scores, members against non-members (0.5: chance).
        tpr_at_low_fpr (`float`): Share of members flagged at the threshold that flags `low_fpr` of non-members.
        low_fpr (`float`): That false-positive rate.
        num_members (`int`), num_nonmembers (`int`): Rows attacked on each side.
        num_flagged (`int`): Members flagged at that threshold.
        flagged_members (`list[int]`): Their indices among the members, most exposed first (at most `MAX_FLAGGED`).
        num_reference_models (`int`): Reference models of the likelihood-ratio attack (0 for the loss attack).
    """

    attack: AttackName
    auc: float
    tpr_at_low_fpr: float
    low_fpr: float
    num_members: int
    num_nonmembers: int
    num_flagged: int
    flagged_members: list[int] = field(default_factory=list)
    num_reference_models: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _check(logits: np.ndarray, labels: np.ndarray, who: str) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"{who}: need logits [N, C] and labels [N], got {logits.shape} and {labels.shape}.")
    if logits.shape[0] == 0:
        raise ValueError(f"{who}: no rows to attack.")
    return logits, labels


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy `[N]` of integer `labels` under `logits [N, C]`."""
    logits, labels = _check(logits, labels, "cross_entropy")
    return -_log_softmax(logits)[np.arange(len(labels)), labels]


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`φ = log p_y - log(1 - p_y)` per row, computed stably as `z_y - logsumexp(z_{≠y})` (LiRA's statistic)."""
    logits, labels = _check(logits, labels, "logit_confidence")
    rows = np.arange(len(labels))
    true = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    top = others.max(axis=1)
    return true - (top + np.log(np.exp(others - top[:, None]).sum(axis=1)))


def _score_attack(
    attack: AttackName, member_scores: np.ndarray, nonmember_scores: np.ndarray, low_fpr: float, references: int = 0
) -> MembershipAttack:
    """Higher score = more likely a member."""
    from sklearn.metrics import roc_auc_score

    if not 0.0 < low_fpr < 1.0:
        raise ValueError(f"low_fpr must be in (0, 1), got {low_fpr}.")
    truth = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    auc = float(roc_auc_score(truth, np.r_[member_scores, nonmember_scores]))
    # The threshold flags at most `low_fpr` of the non-members (strictly above their (1 - low_fpr) quantile).
    threshold = float(np.quantile(nonmember_scores, 1.0 - low_fpr))
    flagged = np.flatnonzero(member_scores > threshold)
    flagged = flagged[np.argsort(-member_scores[flagged], kind="stable")]
    return MembershipAttack(
        attack=attack,
        auc=auc,
        tpr_at_low_fpr=float(len(flagged) / len(member_scores)),
        low_fpr=low_fpr,
        num_members=len(member_scores),
        num_nonmembers=len(nonmember_scores),
        num_flagged=len(flagged),
        flagged_members=flagged[:MAX_FLAGGED].tolist(),
        num_reference_models=references,
    )


def loss_attack(
    member_logits: np.ndarray,
    member_labels: np.ndarray,
    nonmember_logits: np.ndarray,
    nonmember_labels: np.ndarray,
    low_fpr: float = 0.05,
) -> MembershipAttack:
    """The loss-threshold attack: members are called where the target model's cross-entropy is low.

    Args:
        member_logits (`np.ndarray`): The target model's logits `[M, C]` on its training rows.
        member_labels (`np.ndarray`): Their labels `[M]`.
        nonmember_logits (`np.ndarray`): Its logits `[N, C]` on held-out real rows.
        nonmember_labels (`np.ndarray`): Their labels `[N]`.
        low_fpr (`float`, defaults to 0.05): The false-positive rate of `tpr_at_low_fpr`.
    """
    members = -cross_entropy(member_logits, member_labels)
    nonmembers = -cross_entropy(nonmember_logits, nonmember_labels)
    return _score_attack("loss_threshold", members, nonmembers, low_fpr)


def lira_offline(
    member_logits: np.ndarray,
    member_labels: np.ndarray,
    nonmember_logits: np.ndarray,
    nonmember_labels: np.ndarray,
    reference_member_logits: np.ndarray,
    reference_nonmember_logits: np.ndarray,
    low_fpr: float = 0.05,
) -> MembershipAttack:
    """The offline likelihood-ratio attack (see the module docstring).

    Args:
        member_logits, member_labels, nonmember_logits, nonmember_labels: As in [`loss_attack`].
        reference_member_logits (`np.ndarray`): `[K, M, C]`: the logits of K reference models, none of which trained
            on any member or non-member row, on the members.
        reference_nonmember_logits (`np.ndarray`): `[K, N, C]`: the same models on the non-members.
        low_fpr (`float`, defaults to 0.05): The false-positive rate of `tpr_at_low_fpr`.
    """
    reference_member_logits = np.asarray(reference_member_logits, dtype=np.float64)
    reference_nonmember_logits = np.asarray(reference_nonmember_logits, dtype=np.float64)
    num_references = reference_member_logits.shape[0] if reference_member_logits.ndim == 3 else 0
    if num_references < 2 or reference_nonmember_logits.shape[0] != num_references:
        raise ValueError(
            "lira_offline needs the logits of at least 2 reference models on both sides ([K, rows, classes]), got "
            f"{reference_member_logits.shape} and {reference_nonmember_logits.shape}."
        )
    target = np.r_[
        logit_confidence(member_logits, member_labels), logit_confidence(nonmember_logits, nonmember_labels)
    ]
    labels = np.r_[np.asarray(member_labels), np.asarray(nonmember_labels)]
    reference = np.stack(
        [
            logit_confidence(np.concatenate([m, n]), labels)
            for m, n in zip(reference_member_logits, reference_nonmember_logits)
        ]
    )  # [K, M + N]
    mean = reference.mean(axis=0)
    # One pooled spread: K per-row samples are too few for per-row variances (the paper's advice for small K).
    sigma = max(float(reference.std(axis=0, ddof=1).mean()), 1e-6)
    from scipy.stats import norm

    # A log-CDF score keeps the order among rows far in the tail, where the CDF itself rounds to 1.
    scores = norm.logcdf((target - mean) / sigma)
    num_members = len(member_labels)
    return _score_attack("lira_offline", scores[:num_members], scores[num_members:], low_fpr, num_references)

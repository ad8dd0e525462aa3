"""`MemberSubset`: some members of an estimator, seen as an estimator of their own.

Guiding generation and judging its output with the same members lets guidance find inputs that fool exactly those
members: selection then rewards adversarial noise. `split_members` divides an estimator's K members into GUIDE
members (their gradient steers generation) and JUDGE members (they score, filter and select the candidates), and
`MemberSubset` hands one side to code that expects a whole estimator, so generators need no change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from datasets import Dataset

    from .base import UncertaintyEstimator
    from .context import FitContext


def split_members(num_members: int, judge_members: int) -> tuple[list[int], list[int]]:
    """The `(guide, judge)` member indices of a K-member estimator: the last `judge_members` judge, the rest guide.

    Args:
        num_members (`int`): The estimator's K.
        judge_members (`int`): J, the number of judge members.

    Raises:
        `ValueError`: `J < 2` or `K - J < 2` (disagreement needs at least two models on each side).
    """
    if judge_members < 2:
        raise ValueError(
            f"`judge_members` must be >= 2 (disagreement needs two models; 0 in the config turns the split off), "
            f"got {judge_members}."
        )
    if num_members - judge_members < 2:
        raise ValueError(
            f"`judge_members={judge_members}` leaves {num_members - judge_members} of the estimator's {num_members} "
            "members to guide generation; at least 2 are needed. Raise `ensemble_size` to at least "
            f"{judge_members + 2} or lower `judge_members`."
        )
    guide = list(range(num_members - judge_members))
    return guide, list(range(num_members - judge_members, num_members))


class MemberSubset:
    """A view of some members of a fitted estimator; implements the [`UncertaintyEstimator`] protocol.

    `member_logits` runs only the kept members where the estimator can (`subset_member_logits`, e.g.
    [`DeepEnsemble`]); otherwise it, like `predict`, runs the whole estimator and keeps the chosen members along the
    last (K) axis. Either way the result stays differentiable w.r.t. the inputs (guidance backpropagates only
    through the kept members). The view holds no state of its own: `fit` fits the underlying estimator.

    Args:
        estimator ([`UncertaintyEstimator`]): The estimator whose members are viewed.
        members (`Sequence[int]`): Indices of the kept members in `[0, estimator.num_members)`, distinct.

    Example:

    ```py
    >>> guide, judge = split_members(estimator.num_members, judge_members=2)
    >>> request.estimator = MemberSubset(estimator, guide)  # guidance gradients from the guide members only
    ```
    """

    def __init__(self, estimator: UncertaintyEstimator, members: Sequence[int]):
        members = [int(member) for member in members]
        num_members = estimator.num_members
        if not members or len(set(members)) != len(members):
            raise ValueError(f"`members` must be a non-empty list of distinct member indices, got {members}.")
        if min(members) < 0 or max(members) >= num_members:
            raise ValueError(
                f"`members` {members} must lie in [0, {num_members}) for a {num_members}-member estimator."
            )
        self.estimator = estimator
        self.members = members
        self.num_members = len(members)

    def _select(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != self.estimator.num_members:
            raise ValueError(
                f"The estimator returned {logits.shape[-1]} members but declares num_members="
                f"{self.estimator.num_members}."
            )
        return logits[..., torch.tensor(self.members, device=logits.device)]

    def fit(self, trainer: FitContext) -> MemberSubset:
        """Fits the underlying estimator (every member) and returns this view."""
        self.estimator.fit(trainer)
        return self

    def predict(self, dataset: Dataset) -> torch.Tensor:
        """The kept members' logits `[N, C, len(members)]` for a preprocessed dataset, without gradients."""
        return self._select(self.estimator.predict(dataset))

    def member_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """The kept members' logits `[B, C, len(members)]` for one batch; differentiable w.r.t. the inputs.

        Estimators that can run some of their members alone (`subset_member_logits(inputs, members)`, e.g.
        [`DeepEnsemble`]) run only the kept ones; for the others the whole estimator runs and the kept members'
        logits are taken from it (gradients then flow through the kept members only, at the whole cost)."""
        subset_member_logits = getattr(self.estimator, "subset_member_logits", None)
        if subset_member_logits is not None:
            logits = subset_member_logits(inputs, self.members)
            if logits.shape[-1] != len(self.members):
                raise ValueError(
                    f"{type(self.estimator).__name__}.subset_member_logits returned {logits.shape[-1]} members for "
                    f"{len(self.members)} asked."
                )
            return logits
        return self._select(self.estimator.member_logits(inputs))

    def __repr__(self) -> str:
        return f"MemberSubset({type(self.estimator).__name__}, members={self.members})"

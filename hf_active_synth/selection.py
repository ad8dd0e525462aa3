"""Choosing which filtered candidates join the training data: the discrete form of L_G = E_x~G[Var(y|x)]."""

from __future__ import annotations

from typing import Literal

import numpy as np
from datasets import Dataset

from .generators.base import SCORE_COLUMN, TARGET_ID_COLUMN


def select_candidates(
    candidates: Dataset,
    quotas: dict[int, int],
    strategy: Literal["top", "random"] = "top",
    seed: int = 0,
) -> Dataset:
    """Keeps `quotas[target_id]` candidates per target, then tops up from the leftovers to the total budget.

    With `strategy="top"` the candidates with the highest `synth_score` (ensemble disagreement) are kept, so the
    accepted set maximises the expected disagreement of what the generator proposed; `"random"` keeps a seeded
    uniform sample instead (the untargeted baseline). When a target has fewer survivors than its quota, its share
    goes to the best leftovers of other targets, so the budget is met whenever enough candidates survived.

    Returns the kept rows ordered by target id, then by rank, so the result is deterministic.
    """
    if len(candidates) == 0:
        return candidates
    target_ids = np.asarray(candidates[TARGET_ID_COLUMN])
    if strategy == "top":
        priority = -np.asarray(candidates[SCORE_COLUMN], dtype=np.float64)
    elif strategy == "random":
        priority = np.random.default_rng(seed).random(len(candidates))
    else:
        raise ValueError(f"Unknown selection strategy {strategy!r}; use 'top' or 'random'.")
    # Stable sort by priority, ties broken by row order.
    order = np.argsort(priority, kind="stable")
    taken: list[int] = []
    leftovers: list[int] = []
    used = dict.fromkeys(quotas, 0)
    for row in order:
        target = int(target_ids[row])
        if used.get(target, 0) < quotas.get(target, 0):
            used[target] += 1
            taken.append(int(row))
        else:
            leftovers.append(int(row))
    budget = sum(quotas.values())
    taken.extend(leftovers[: max(0, budget - len(taken))])
    rank = {row: position for position, row in enumerate(order.tolist())}
    taken.sort(key=lambda row: (int(target_ids[row]), rank[row]))
    return candidates.select(taken)

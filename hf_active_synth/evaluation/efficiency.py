"""Data efficiency per pair: how many samples a method needs to reach its paired baseline's final validation
accuracy. A pair that never reaches the target counts at the sample cap and says so (`reached=False`), so the
median over pairs never silently drops the runs that failed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import analysis
from .paired import PairKey, run_key

__all__ = ["DataEfficiency", "PairEfficiency", "data_efficiency", "data_efficiency_from_histories"]


@dataclass(frozen=True)
class PairEfficiency:
    """Samples one run of a method needed to reach its paired baseline's final validation accuracy.

    Args:
        key: The pair's key (see `run_key`).
        target (`float`): The accuracy to reach (the paired baseline's final validation accuracy).
        samples (`float`): Samples needed (interpolated along the cycle curve), or `cap` when never reached.
        reached (`bool`): Whether the curve reached `target` within `cap` samples.
    """

    key: PairKey
    target: float
    samples: float
    reached: bool

    def to_dict(self) -> dict[str, Any]:
        where = {"seed": self.key[0], "split": self.key[1]} if isinstance(self.key, tuple) else {"position": self.key}
        return {**where, "target": self.target, "samples": self.samples, "reached": self.reached}


@dataclass(frozen=True)
class DataEfficiency:
    """Per-pair samples-to-reach and their median.

    Args:
        pairs (`tuple[PairEfficiency, ...]`): One entry per pair, ordered by `str(key)`.
        cap (`float`): The count given to pairs that never reach their target.
        median_samples (`float`): Median of `samples` over all pairs, capped ones included at `cap` (so with capped
            pairs it is a lower bound of the true median); NaN without pairs.
        num_reached (`int`): Pairs that reached their target.
    """

    pairs: tuple[PairEfficiency, ...]
    cap: float
    median_samples: float
    num_reached: int

    @property
    def n(self) -> int:
        return len(self.pairs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `{"pairs": [...], "median_samples", "n", "num_reached", "num_capped", "cap"}`."""
        median = self.median_samples if math.isfinite(self.median_samples) else None
        return {
            "pairs": [pair.to_dict() for pair in self.pairs],
            "median_samples": median,
            "n": self.n,
            "num_reached": self.num_reached,
            "num_capped": self.n - self.num_reached,
            "cap": self.cap,
        }


def data_efficiency(
    per_pair_curves: Mapping[PairKey, tuple[Sequence[float], Sequence[float]]],
    target: float | Mapping[PairKey, float],
    cap: float,
) -> DataEfficiency:
    """Samples a method needs to reach a target accuracy, per pair; pairs that never reach it count at `cap`.

    Each curve is walked in cycle order and the sample count interpolated linearly at the first point at or above
    the target (`analysis.samples_to_reach`). A curve that never gets there, or gets there only beyond `cap`
    samples, is counted at `cap` with `reached=False`.

    Args:
        per_pair_curves (`Mapping[key, (samples, accuracy)]`): Per pair, the method's learning curve: samples in
            the training data after each cycle and the validation accuracy then.
        target (`float` or `Mapping[key, float]`): The accuracy to reach, one for all pairs or one per pair (the
            paired baseline's final validation accuracy).
        cap (`float`): The sample budget; counts of pairs that never reach their target.

    Returns:
        [`DataEfficiency`]
    """
    if not math.isfinite(cap) or cap < 0:
        raise ValueError(f"cap must be a finite, non-negative sample count, got {cap}.")
    pairs = []
    for key in sorted(per_pair_curves, key=str):
        samples_seen, accuracy = per_pair_curves[key]
        if isinstance(target, Mapping):
            if key not in target:
                raise KeyError(f"No target for the pair {key!r}; targets exist for {sorted(target, key=str)}.")
            goal = float(target[key])
        else:
            goal = float(target)
        needed = analysis.samples_to_reach(samples_seen, accuracy, goal)
        reached = needed is not None and needed <= cap
        pairs.append(PairEfficiency(key, goal, float(needed) if reached else float(cap), reached))
    median = float(np.median([p.samples for p in pairs])) if pairs else math.nan
    return DataEfficiency(tuple(pairs), float(cap), median, sum(p.reached for p in pairs))


def _history_key(history: Mapping[str, Any], position: int) -> PairKey:
    # A history carries its seed (and split, where the run has one) at the top level or in its config.
    for source in (history, history.get("config") or {}):
        if "seed" in source:
            return run_key(source, position)
    return position


def data_efficiency_from_histories(
    results: analysis.Results,
    method: str,
    baseline: str,
    cap: float | None = None,
    metric: str = "accuracy",
) -> DataEfficiency:
    """`data_efficiency` of `method` against `baseline` from run histories (the trainer's `history.json`).

    Histories are paired like run entries: by `(seed, split)` read from the history or its `config` when it has a
    `seed`, else by position. Each pair's target is the baseline's final validation `metric`; the curve is the
    method's `(num_synthetic_total, metric)` per cycle.

    Args:
        results (`Mapping[str, Sequence[dict]]`): `method -> histories`.
        method (`str`): The method whose sample counts are measured.
        baseline (`str`): The method whose final validation accuracy is the target.
        cap (`float`, *optional*): The sample budget. Defaults to the most samples any run of `method` ended with.
        metric (`str`, defaults to `"accuracy"`): The validation metric.
    """
    by_key = {}
    for name in (method, baseline):
        keyed = {}
        for position, history in enumerate(results[name]):
            key = _history_key(history, position)
            if key in keyed:
                raise ValueError(f"{name} has two histories with the pairing key {key!r}.")
            keyed[key] = history
        by_key[name] = keyed
    common = set(by_key[method]) & set(by_key[baseline])
    targets = {k: analysis.final_metric(by_key[baseline][k], metric) for k in common}
    targets = {k: v for k, v in targets.items() if v is not None}
    curves = {k: analysis.learning_curve(by_key[method][k], metric) for k in targets}
    if cap is None:
        cap = float(max((analysis.final_num_synthetic(h) for h in results[method]), default=0))
    return data_efficiency(curves, targets, cap)

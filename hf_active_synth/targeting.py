"""Choosing a cycle's synthesis targets: score the real pool, split the budget into quotas, build the targets.

Pure functions of the pool's member logits, its labels and the loop's settings: no trainer needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from datasets import Dataset

from .acquisition import score, select_per_class
from .generators.base import SynthesisTarget

if TYPE_CHECKING:
    from .config import ActiveSynthesisConfig

TARGET_STRATEGIES = ("uncertain", "random")
"""Values of `target_strategy`: the most uncertain real examples of each class, or seeded random ones."""


@dataclass(frozen=True)
class TargetingSettings:
    """The loop settings targeting reads.

    Args:
        input_column (`str`), label_column (`str`): The pool's input and label columns.
        num_labels (`int`): Number of classes.
        targets_per_class (`int`): Targets per class (fewer when a class has fewer examples).
        budget (`int`): Synthetic samples to accept per cycle (`synthetic_samples_per_cycle`).
        acquisition_function (`str`): The uncertainty score (a name of `acquisition.ACQUISITION_FUNCTIONS`).
        target_strategy (`str`, defaults to `"uncertain"`): `"uncertain"`: the highest acquisition scores of each
            class; `"random"`: seeded random examples of each class (the random baselines).
    """

    input_column: str
    label_column: str
    num_labels: int
    targets_per_class: int
    budget: int
    acquisition_function: str
    target_strategy: str = "uncertain"

    @classmethod
    def from_config(cls, args: ActiveSynthesisConfig, num_labels: int) -> TargetingSettings:
        return cls(
            input_column=args.input_column,
            label_column=args.label_column,
            num_labels=num_labels,
            targets_per_class=args.targets_per_class,
            budget=args.synthetic_samples_per_cycle,
            acquisition_function=args.acquisition_function,
            target_strategy=args.target_strategy,
        )


def score_pool(
    pool_logits: torch.Tensor, acquisition_function: str, *, target_strategy: str, seed: int
) -> torch.Tensor:
    """Acquisition scores `[N]` of the pool: `acquisition_function` for `"uncertain"` targets, seeded random scores
    for `"random"` ones.

    Args:
        pool_logits (`torch.Tensor`): Member logits `[N, C, K]` of the real pool.
        acquisition_function (`str`): A name of `acquisition.ACQUISITION_FUNCTIONS` (e.g. `"bald"`).
        target_strategy (`str`): `"uncertain"` or `"random"` (the random baselines).
        seed (`int`): Seed of the random scores.
    """
    if target_strategy not in TARGET_STRATEGIES:
        raise ValueError(f"Unknown target strategy {target_strategy!r}; choose one of {list(TARGET_STRATEGIES)}.")
    return score(pool_logits, acquisition_function if target_strategy == "uncertain" else "random", seed=seed)


def interleave_by_rank(per_class: Mapping[int, Sequence[int]], targets_per_class: int, num_labels: int) -> list[int]:
    """Row indices ordered rank by rank across classes: every class's best, then every class's second, ...

    So, when the budget does not divide evenly, the extra samples go to the most uncertain target of each class
    first. Classes with fewer than `targets_per_class` rows simply drop out of the later ranks.
    """
    return [
        per_class[label][rank]
        for rank in range(targets_per_class)
        for label in range(num_labels)
        if rank < len(per_class[label])
    ]


def allocate_quotas(budget: int, num_targets: int) -> list[int]:
    """Splits `budget` samples over `num_targets` targets as evenly as possible, the remainder to the first ones.

    The quotas sum to `budget`; targets beyond the budget get 0 (and are dropped by `choose_targets`).
    """
    return [budget // num_targets + (1 if i < budget % num_targets else 0) for i in range(num_targets)]


def choose_targets(
    pool_logits: torch.Tensor, pool: Dataset, settings: TargetingSettings, seed: int
) -> list[SynthesisTarget]:
    """The `targets_per_class` most uncertain real examples of each class (random ones for
    `target_strategy="random"`), interleaved by rank, each with its quota of the cycle's budget.

    Args:
        pool_logits (`torch.Tensor`): Member logits `[N, C, K]` of `pool`.
        pool (`datasets.Dataset`): The scored real examples (raw rows with the input and label columns).
        settings ([`TargetingSettings`]): Columns, budget and scoring.
        seed (`int`): Seed of the random scores (the cycle's selection seed).

    Returns:
        `list[SynthesisTarget]`: Targets with a quota > 0; `target_id` is the position in the interleaved order.
    """
    labels = torch.tensor(pool[settings.label_column])
    scores = score_pool(
        pool_logits, settings.acquisition_function, target_strategy=settings.target_strategy, seed=seed
    )
    per_class = select_per_class(scores, labels, settings.targets_per_class, settings.num_labels)
    ranked = interleave_by_rank(per_class, settings.targets_per_class, settings.num_labels)
    quotas = allocate_quotas(settings.budget, len(ranked))
    inputs = pool.select(ranked)[settings.input_column]
    return [
        SynthesisTarget(
            target_id=i,
            label=int(labels[example_id]),
            example_id=int(example_id),
            example=inputs[i],
            score=float(scores[example_id]),
            num_samples=quota,
        )
        for i, (example_id, quota) in enumerate(zip(ranked, quotas))
        if quota > 0
    ]


def seed_examples(targets: Sequence[SynthesisTarget]) -> dict[int, list[tuple[int, Any]]]:
    """Every target's `(example_id, example)`, grouped by label: few-shot material shared across processes."""
    examples: dict[int, list[tuple[int, Any]]] = {}
    for target in targets:
        examples.setdefault(target.label, []).append((target.example_id, target.example))
    return examples


def target_quotas(targets: Sequence[SynthesisTarget]) -> dict[int, int]:
    """`target_id -> num_samples`: the per-target quotas that selection fills."""
    return {target.target_id: target.num_samples for target in targets}

"""The methods of a comparison, each a documented set of `ActiveSynthesisConfig` overrides, and the run presets.

Every method runs through the same loop, data, budget and code path as active synthesis; the overrides name exactly
what differs, so a paired difference between two methods can be attributed to those settings:

| method | targets | guidance | selection | data added |
|---|---|---|---|---|
| `real_only` | - | - | - | none (`synthetic_samples_per_cycle=0`) |
| `random_synthetic` | random real examples | off | random | synthetic, same anchoring and prompts |
| `random_targets` | random real examples | on | top disagreement | synthetic |
| `unguided_targeted` | most uncertain | off | top disagreement | synthetic |
| `bald_active_learning` | most uncertain (BALD) | - | - | real labelled rows of a held-back pool |
| `active_synthesis` | most uncertain | on | top disagreement | synthetic (the product) |

`random_synthetic` differs from `active_synthesis` in targets, guidance and selection; the two ablations each put
one mechanism back, so `active_synthesis - random_targets` isolates the targets and `active_synthesis -
unguided_targeted` the guidance. Names are fixed so that reports of different runs line up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ABLATION_METHODS",
    "COMPARISON_METHODS",
    "HEADLINE_METHODS",
    "METHODS",
    "PRESETS",
    "ComparisonMethod",
    "ComparisonPreset",
    "MethodName",
    "PresetName",
    "resolve_methods",
]

MethodName = Literal[
    "real_only", "random_synthetic", "random_targets", "unguided_targeted", "bald_active_learning", "active_synthesis"
]
PresetName = Literal["quick", "full"]


@dataclass(frozen=True)
class ComparisonMethod:
    """One method of a comparison.

    Args:
        name (`str`): The method's fixed name (a `MethodName`).
        description (`str`): One line for reports.
        overrides (`Mapping[str, Any]`): `ActiveSynthesisConfig` fields set on top of the user's config.
        acquires_real_labels (`bool`): The method adds real labelled rows of a held-back pool instead of synthetic
            samples (the run's generator is replaced by a `PoolAcquisitionGenerator`).
    """

    name: str
    description: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    acquires_real_labels: bool = False


COMPARISON_METHODS: dict[str, ComparisonMethod] = {
    method.name: method
    for method in (
        ComparisonMethod(
            "real_only",
            "the same cycles of retraining on the real data only",
            {"synthetic_samples_per_cycle": 0},
        ),
        ComparisonMethod(
            "random_synthetic",
            "random real examples as targets, no guidance, random selection (same anchoring and prompts)",
            {"target_strategy": "random", "guidance": False, "selection_strategy": "random"},
        ),
        ComparisonMethod(
            "random_targets",
            "random real examples as targets; guidance and top-disagreement selection on",
            {"target_strategy": "random"},
        ),
        ComparisonMethod(
            "unguided_targeted",
            "the most uncertain real examples as targets, no guidance, top-disagreement selection",
            {"guidance": False},
        ),
        ComparisonMethod(
            "bald_active_learning",
            "each cycle acquires the real labels of the most uncertain (BALD) rows of a held-back pool",
            # Acquired rows are real, so they weigh as much as the rest of the real data.
            {"acquisition_function": "bald", "synthetic_loss_weight": 1.0},
            acquires_real_labels=True,
        ),
        ComparisonMethod("active_synthesis", "the product: uncertain targets, guidance, top selection"),
    )
}

HEADLINE_METHODS: tuple[str, ...] = ("real_only", "random_synthetic", "bald_active_learning", "active_synthesis")
"""The four methods of the headline table (run with the `full` preset for committed results)."""
ABLATION_METHODS: tuple[str, ...] = ("random_targets", "unguided_targeted")
"""The two ablations that attribute the difference (the `quick` preset is enough for them)."""
METHODS: tuple[str, ...] = (*HEADLINE_METHODS[:2], *ABLATION_METHODS, *HEADLINE_METHODS[2:])
"""Every method, in report order."""


@dataclass(frozen=True)
class ComparisonPreset:
    """Seeds × data splits of a comparison: every method runs once per (seed, split) pair.

    Args:
        seeds (`tuple[int, ...]`): Seeds of the runs (model init, data order, generation streams).
        splits (`tuple[int, ...]`): Data-split seeds (which rows are labelled, validation, pool; and with them the
            generator trained on that split).
    """

    seeds: tuple[int, ...]
    splits: tuple[int, ...]

    @property
    def num_pairs(self) -> int:
        return len(self.seeds) * len(self.splits)


PRESETS: dict[str, ComparisonPreset] = {
    # About 4 pairs: a laptop's afternoon.
    "quick": ComparisonPreset(seeds=(0, 1), splits=(0, 1)),
    # At least 10 pairs, at least 5 seeds x 2 splits: for committed results.
    "full": ComparisonPreset(seeds=(0, 1, 2, 3, 4), splits=(0, 1)),
}


def resolve_methods(names: Sequence[str]) -> list[ComparisonMethod]:
    """The methods named, in the given order, with a clear error for an unknown or repeated name."""
    unknown = [name for name in names if name not in COMPARISON_METHODS]
    if unknown:
        raise ValueError(f"Unknown comparison method(s) {unknown}; choose from {list(COMPARISON_METHODS)}.")
    if len(set(names)) != len(names):
        raise ValueError(f"Comparison methods repeat: {list(names)}; name each once.")
    return [COMPARISON_METHODS[name] for name in names]

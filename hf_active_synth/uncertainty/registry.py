"""The one table of estimator names: config validation, the trainer's default estimator and the CLI read it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from .base import UncertaintyEstimator
from .deep_ensemble import DeepEnsemble
from .lora_ensemble import LoRAEnsemble
from .mc_dropout import MCDropout

# The config field's type: `HfArgumentParser` turns a `Literal` into the choices of `--uncertainty_method`.
UncertaintyMethod = Literal["deep_ensemble", "lora_ensemble", "lora_ensemble_diverse", "mc_dropout"]

# The LoRA ensemble whose members differ from the start (issue 13): random A and B, a re-initialised head per member,
# a bootstrap resample of the real rows per member, adapters on the top 3 blocks. `benchmarks/bench_lora_uncertainty.py`
# measured it, with `member_num_train_epochs=3`, above the plain LoRA ensemble and a 5-member deep ensemble in
# misclassification-detection AUROC on SST-2 dev in both of 2 draws (see `benchmarks/README.md`); its scoring adapts
# 3 blocks instead of 1, so it is slower.
DIVERSE_LORA = {"adapter_init": "random", "head_init": "random", "bootstrap": True, "num_adapted_layers": 3}

# name -> factory(num_members, seed).
ESTIMATORS: dict[str, Callable[[int, int], UncertaintyEstimator]] = {
    "deep_ensemble": lambda num_members, seed: DeepEnsemble(num_members, seed=seed),
    "lora_ensemble": lambda num_members, seed: LoRAEnsemble(num_members, seed=seed),
    "lora_ensemble_diverse": lambda num_members, seed: LoRAEnsemble(num_members, seed=seed, **DIVERSE_LORA),
    "mc_dropout": lambda num_members, seed: MCDropout(num_members, seed=seed),
}

if set(get_args(UncertaintyMethod)) != set(ESTIMATORS):  # the two spellings of the names must not drift apart
    raise RuntimeError(f"UncertaintyMethod {get_args(UncertaintyMethod)} and ESTIMATORS {list(ESTIMATORS)} differ.")


def make_estimator(name: str, num_members: int, seed: int) -> UncertaintyEstimator:
    """The estimator `name` (a key of `ESTIMATORS`) with `num_members` members seeded from `seed`.

    Args:
        name (`str`): `"deep_ensemble"`, `"lora_ensemble"`, `"lora_ensemble_diverse"` or `"mc_dropout"`.
        num_members (`int`): Ensemble size (stochastic passes for MC dropout), K.
        seed (`int`): Member `k` uses `seed + k`.

    Raises:
        `ValueError`: `name` is not in `ESTIMATORS`.
    """
    try:
        factory = ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"Unknown `uncertainty_method` {name!r}; choose one of {list(ESTIMATORS)}.") from None
    return factory(num_members, seed)

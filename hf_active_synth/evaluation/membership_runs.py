"""Membership inference in a comparison: real-trained, real ∪ synthetic and synthetic-only models of one pair.

Members are the pair's real training rows. The held-out labelled pool is split in two with a seed of the pair: one
half trains the reference models of the likelihood-ratio attack, the other gives the non-members (at most
`MAX_NONMEMBERS`). The non-members are pool rows, not validation rows: the validation split picked each run's best
cycle, which would favour low loss on it, and not test rows, which stay for accuracy. None of the reference models
sees a member or a non-member, so each is an "out" model for every attacked row.

The reference models (`NUM_REFERENCE_MODELS`, each trained like the target on a seeded draw of the reference half as
large as the real training set) are trained once per pair and their logits cached in
`output_dir/privacy_reference/split-<k>/seed-<s>/` (no `final_metrics.json` there, so no report reads it as a run).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..cycle import CHECKPOINT_DIR, CycleStore
from ..privacy import lira_offline, loss_attack
from .compare import EXTRAS_FILE, ComparisonTask, predict_logits, run_directory

if TYPE_CHECKING:
    from datasets import Dataset

    from ..config import ActiveSynthesisConfig

logger = logging.getLogger(__name__)

__all__ = ["MAX_NONMEMBERS", "NUM_REFERENCE_MODELS", "REFERENCE_DIR", "attack_model", "membership_for_pair"]

NUM_REFERENCE_MODELS = 4
"""Reference models of the offline likelihood-ratio attack, per pair (the paper's low end)."""
MAX_NONMEMBERS = 1000
REFERENCE_DIR = "privacy_reference"
REAL_ONLY = "real_only"


def split_pool(pool: Dataset, split: int, seed: int) -> tuple[Dataset, Dataset]:
    """`(reference half, non-members)` of the held-out pool, drawn with the pair's seed."""
    order = np.random.default_rng([split, seed, 7]).permutation(len(pool))
    half = len(pool) // 2
    if half < 2:
        raise ValueError(
            f"The held-out pool has {len(pool)} rows: too few to split into reference and non-member rows."
        )
    return pool.select(sorted(order[:half].tolist())), pool.select(sorted(order[half:][:MAX_NONMEMBERS].tolist()))


def _reference_logits(
    task: ComparisonTask, config: ActiveSynthesisConfig, output_dir: str | Path, split: int, seed: int
) -> dict[str, np.ndarray]:
    """Logits `[K, rows, C]` of the pair's reference models on the members and non-members (cached)."""
    cache_dir = Path(output_dir) / REFERENCE_DIR / f"split-{split}" / f"seed-{seed}"
    cache = cache_dir / "reference_logits.pt"
    reference_rows, nonmembers = split_pool(task.acquisition_pool, split, seed)
    if cache.is_file():
        cached = torch.load(cache, weights_only=True)
        if int(cached["members"].shape[0]) == NUM_REFERENCE_MODELS and cached["members"].shape[1] == len(
            task.train_dataset
        ):
            return {key: value.numpy() for key, value in cached.items()}
    members, outside = [], []
    for index in range(NUM_REFERENCE_MODELS):
        ref_seed = 50_000 + 100 * seed + index  # apart from every run's and member's seed
        draw = np.random.default_rng([split, seed, index]).permutation(len(reference_rows))
        rows = reference_rows.select(sorted(draw[: len(task.train_dataset)].tolist()))
        ref_config = dataclasses.replace(config, seed=ref_seed, output_dir=str(cache_dir / f"reference-{index}"))
        trainer = task.build_plain_trainer(ref_config, rows)
        trainer.train()
        members.append(predict_logits(trainer, task.train_dataset)[0])
        outside.append(predict_logits(trainer, nonmembers)[0])
    logits = {"members": np.stack(members), "nonmembers": np.stack(outside)}
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save({key: torch.as_tensor(value) for key, value in logits.items()}, cache)
    return logits


def attack_model(
    trainer: Any, members: Dataset, nonmembers: Dataset, reference: dict[str, np.ndarray] | None
) -> dict[str, Any]:
    """Both attacks on the trainer's current model: `{"loss_threshold": ..., "lira_offline": ...}` (attack dicts)."""
    member_logits, member_labels = predict_logits(trainer, members)
    nonmember_logits, nonmember_labels = predict_logits(trainer, nonmembers)
    result = {
        "loss_threshold": loss_attack(member_logits, member_labels, nonmember_logits, nonmember_labels).to_dict()
    }
    if reference is not None:
        result["lira_offline"] = lira_offline(
            member_logits,
            member_labels,
            nonmember_logits,
            nonmember_labels,
            reference["members"],
            reference["nonmembers"],
        ).to_dict()
    return result


def _load_handed_back(
    task: ComparisonTask, config: ActiveSynthesisConfig, run_dir: Path, entry: dict[str, Any]
) -> Any:
    """A plain trainer holding the model a finished run handed back (its best validation cycle)."""
    trainer = task.build_plain_trainer(config, task.train_dataset)
    trainer._load_from_checkpoint(str(CycleStore(run_dir).cycle_dir(int(entry["cycle"])) / CHECKPOINT_DIR))
    return trainer


def membership_for_pair(
    task: ComparisonTask,
    config: ActiveSynthesisConfig,
    output_dir: str | Path,
    split: int,
    seed: int,
    synthetic_only: Any,
    source: tuple[str, dict[str, Any]],
) -> dict[str, Any]:
    """The attacks on the pair's `real_only` model, the `source` run's model and the `synthetic_only` trainer's.

    Returns:
        `dict`: `{"real_only": attacks or None (no finished real_only run), "source": attacks, "synthetic_only":
        attacks, "num_members", "num_nonmembers", "nonmembers": "pool"}`.
    """
    _, nonmembers = split_pool(task.acquisition_pool, split, seed)
    reference = _reference_logits(task, config, output_dir, split, seed)
    members = task.train_dataset
    result: dict[str, Any] = {"num_members": len(members), "num_nonmembers": len(nonmembers), "nonmembers": "pool"}
    real_dir = run_directory(output_dir, REAL_ONLY, split, seed)
    if (real_dir / EXTRAS_FILE).is_file():
        real_entry = json.loads((real_dir / EXTRAS_FILE).read_text())
        real = _load_handed_back(task, config, real_dir, real_entry)
        result[REAL_ONLY] = attack_model(real, members, nonmembers, reference)
    else:
        logger.warning("No finished real_only run in %s: its membership-inference row is left out.", real_dir)
        result[REAL_ONLY] = None
    source_name, source_entry = source
    source_model = _load_handed_back(task, config, run_directory(output_dir, source_name, split, seed), source_entry)
    result["source"] = attack_model(source_model, members, nonmembers, reference)
    result["synthetic_only"] = attack_model(synthetic_only, members, nonmembers, reference)
    return result

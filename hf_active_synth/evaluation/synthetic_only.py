"""Synthetic-only comparison methods: a fresh model trained on a finished run's accepted synthetic samples alone.

How close does a model trained on synthetic data only come to one trained on the real data, and what does such a
model, or the synthetic data itself, give away about the real training records? Each method here is *derived*: it
reuses the finished run of its source method on the same (seed, split) pair (its `cycle-*/synthetic/` folders: every
sample the run accepted, i.e. the dataset it publishes), and

1. trains a fresh model (the task's model factory with the run's seed, its preprocessing and training arguments)
   on those samples only, at the real training set's size (a seeded draw per class, as many as the real set has) or
   at the full synthetic size, and scores it on the real test split as every run is scored;
2. audits the source run's synthetic data against the real training rows (`privacy.audit_samples`: DCR against
   the validation rows, near-copies at the run's near-copy filter's threshold), per cycle and for all cycles;
3. attacks three models with membership inference (`evaluation.membership_runs`): `real_only`'s handed-back model
   (trained on the real rows), the source run's (real ∪ synthetic) and this synthetic-only one.

| method | source | trained on |
|---|---|---|
| `synthetic_only_active` | `active_synthesis` | as many accepted samples as real training rows, per class |
| `synthetic_only_active_full` | `active_synthesis` | every accepted sample |
| `synthetic_only_random` | `random_synthetic` | as many accepted samples as real training rows, per class |
| `synthetic_only_random_full` | `random_synthetic` | every accepted sample |

Entries carry `seed` and `split`, so they pair with `real_only` like any run (`evaluation.privacy_report`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from datasets import Dataset, concatenate_datasets

from ..config import ActiveSynthesisConfig
from ..cycle import SYNTHETIC_DIR, CycleStore
from ..privacy import audit_samples, near_copy_rule
from .compare import EXTRAS_FILE, ComparisonTask, evaluate_final_model, run_directory
from .membership_runs import membership_for_pair

logger = logging.getLogger(__name__)

__all__ = [
    "SYNTHETIC_ONLY_METHODS",
    "SyntheticOnlyMethod",
    "SyntheticSize",
    "resolve_synthetic_only",
    "run_synthetic_only",
    "source_samples",
    "training_rows",
]

SyntheticSize = Literal["real_size", "full"]


@dataclass(frozen=True)
class SyntheticOnlyMethod:
    """A derived method: a fresh model on the synthetic samples of a finished `source` run.

    Args:
        name (`str`): The method's fixed name.
        source (`str`): The method whose finished runs supply the samples (`active_synthesis`, `random_synthetic`).
        size (`str`): `"real_size"` (as many samples per class as the real training set has) or `"full"`.
        description (`str`): One line for reports.
    """

    name: str
    source: str
    size: SyntheticSize
    description: str


SYNTHETIC_ONLY_METHODS: dict[str, SyntheticOnlyMethod] = {
    method.name: method
    for method in (
        SyntheticOnlyMethod(
            "synthetic_only_active", "active_synthesis", "real_size", "active synthesis' samples, real size"
        ),
        SyntheticOnlyMethod("synthetic_only_active_full", "active_synthesis", "full", "every active-synthesis sample"),
        SyntheticOnlyMethod(
            "synthetic_only_random", "random_synthetic", "real_size", "random synthetic samples, real size"
        ),
        SyntheticOnlyMethod("synthetic_only_random_full", "random_synthetic", "full", "every random synthetic sample"),
    )
}


def resolve_synthetic_only(names: Sequence[str]) -> list[SyntheticOnlyMethod]:
    """The derived methods named, in order, with a clear error for an unknown or repeated name."""
    unknown = [name for name in names if name not in SYNTHETIC_ONLY_METHODS]
    if unknown:
        raise ValueError(f"Unknown synthetic-only method(s) {unknown}; choose from {list(SYNTHETIC_ONLY_METHODS)}.")
    if len(set(names)) != len(names):
        raise ValueError(f"Synthetic-only methods repeat: {list(names)}; name each once.")
    return [SYNTHETIC_ONLY_METHODS[name] for name in names]


def training_rows(synthetic: Dataset, real: Dataset, size: SyntheticSize, label_column: str, seed: int) -> Dataset:
    """The synthetic rows a synthetic-only model trains on: all of them (`"full"`), or per class a seeded draw of as
    many as `real` has of that class (`"real_size"`; all of a class when it has fewer)."""
    if size == "full":
        return synthetic
    if size != "real_size":
        raise ValueError(f"Unknown size {size!r}: use 'real_size' or 'full'.")
    rng = np.random.default_rng(seed)
    labels = np.asarray(synthetic[label_column])
    wanted = np.bincount(np.asarray(real[label_column]), minlength=int(labels.max(initial=0)) + 1)
    chosen = []
    for label, count in enumerate(wanted):
        rows = np.flatnonzero(labels == label)
        chosen.extend(rng.permutation(rows)[:count].tolist())
    return synthetic.select(sorted(chosen))


def _source_run(output_dir: str | Path, method: SyntheticOnlyMethod, split: int, seed: int) -> tuple[Path, dict]:
    source_dir = run_directory(output_dir, method.source, split, seed)
    if not (source_dir / EXTRAS_FILE).is_file():
        raise FileNotFoundError(
            f"`{method.name}` trains on the synthetic samples of the finished `{method.source}` run in {source_dir}, "
            f"which is not there. Run `{method.source}` on this pair first: list it before `{method.name}` in "
            "--compare_methods (finished runs are reused)."
        )
    return source_dir, json.loads((source_dir / EXTRAS_FILE).read_text())


def source_samples(store: CycleStore) -> dict[int, Dataset]:
    """`cycle -> accepted samples` of a finished run, read into memory: training on them maps them, and a dataset
    read from disk would write that cache into the source run's folders, which a derived method must leave as they
    are."""
    from datasets import load_from_disk

    return {
        cycle: load_from_disk(str(path), keep_in_memory=True)
        for cycle in store.completed_cycles()
        if (path := store.cycle_dir(cycle) / SYNTHETIC_DIR).is_dir()
    }


def _privacy_audits(
    task: ComparisonTask, samples: Mapping[int, Dataset], published: Dataset, near_copy: Any, config: Any
) -> dict:
    """The audit of the source run's synthetic data: every cycle's and all cycles' together (the published set)."""
    audit = lambda rows: audit_samples(  # noqa: E731
        rows, task.train_dataset, task.validation_dataset, config.input_column, config.label_column, near_copy
    ).to_dict()
    return {"published": audit(published), "cycles": {str(cycle): audit(rows) for cycle, rows in samples.items()}}


def run_synthetic_only(
    task: ComparisonTask,
    config: ActiveSynthesisConfig,
    output_dir: str | Path,
    method: SyntheticOnlyMethod,
    split: int,
    seed: int,
    corruptions: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Runs one derived method on one (seed, split) pair and writes its `final_metrics.json` (see the module
    docstring); returns the entry.

    The entry holds the synthetic-only model's test metrics (`clean_accuracy`, ... as `compare.run_one` writes
    them), `derived_from`, `size`, `num_train_rows`, `num_synthetic_available`, `privacy_audit` (of the source run's
    data) and `membership` (attacks on the three models, `evaluation.membership_runs`).
    """
    missing = [
        name for name in ("train_dataset", "validation_dataset", "build_plain_trainer") if getattr(task, name) is None
    ]
    if missing:
        raise ValueError(
            f"`{method.name}` needs the task's {missing} (set them on the ComparisonTask; the recipes do)."
        )
    source_dir, source_entry = _source_run(output_dir, method, split, seed)
    samples = source_samples(CycleStore(source_dir))
    synthetic = concatenate_datasets(list(samples.values())) if samples else None
    if synthetic is None or len(synthetic) == 0:
        raise ValueError(f"The `{method.source}` run in {source_dir} accepted no synthetic sample to train on.")
    run_dir = run_directory(output_dir, method.name, split, seed)
    run_config = dataclasses.replace(
        config, seed=seed, output_dir=str(run_dir), publish_cycles=False, push_cycles_to_hub=False, privacy_audit=False
    )
    keep = [config.input_column, config.label_column]
    rows = training_rows(synthetic, task.train_dataset, method.size, config.label_column, seed).select_columns(keep)
    logger.info("%s (split %d, seed %d): training on %d synthetic rows.", method.name, split, seed, len(rows))
    trainer = task.build_plain_trainer(run_config, rows)
    trainer.train()
    entry: dict[str, Any] = {
        "method": method.name,
        "seed": seed,
        "split": split,
        "derived_from": method.source,
        "source_cycle": source_entry.get("cycle"),
        "size": method.size,
        "num_train_rows": len(rows),
        "num_real_train_rows": len(task.train_dataset),
        "num_synthetic_available": len(synthetic),
    }
    entry.update(evaluate_final_model(trainer, task.test_dataset, corruptions, corruption_seed=0))
    entry["privacy_audit"] = _privacy_audits(task, samples, synthetic, near_copy_rule(trainer.filters), config)
    entry["membership"] = membership_for_pair(
        task, run_config, output_dir, split, seed, synthetic_only=trainer, source=(method.source, source_entry)
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / EXTRAS_FILE).write_text(json.dumps(entry, indent=2))
    return entry

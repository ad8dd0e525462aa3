"""Run active synthesis against its baselines on the same splits, budget and code path, over several seeds.

Methods (`METHODS`), each a set of `ActiveSynthesisConfig` overrides on the user's config:

* `real_only`: the same cycles of retraining, no synthetic data (`synthetic_samples_per_cycle=0`);
* `random_synthetic`: the same generator, untargeted: random targets, no guidance, random selection;
* `bald_active_learning`: the proposal's competing method: each cycle acquires the labels of the most uncertain
  (BALD) rows of a held-back real pool, as many as the synthetic budget (`PoolAcquisitionGenerator`);
* `active_synthesis`: the product.

Every run is resumable (it lives in `output_dir/<method>/seed-<s>/`), so an interrupted comparison continues where it
stopped. The final model of each run is scored on the test split and on corrupted copies of it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset

from ..config import ActiveSynthesisConfig
from ..cycle import HISTORY_FILE, CycleStore
from ..data import to_model_inputs
from ..filters import ExactDuplicateFilter
from ..generators.pool import PoolAcquisitionGenerator
from .corruptions import corrupt_dataset
from .metrics import compute_classification_metrics
from .report import build_report

logger = logging.getLogger(__name__)

MethodName = Literal["real_only", "random_synthetic", "bald_active_learning", "active_synthesis"]
METHODS: tuple[MethodName, ...] = ("real_only", "random_synthetic", "bald_active_learning", "active_synthesis")
METHOD_OVERRIDES: dict[str, dict[str, Any]] = {
    "real_only": {"synthetic_samples_per_cycle": 0},
    "random_synthetic": {"targeted": False, "selection_strategy": "random"},
    # Acquired rows are real, so they weigh as much as the rest of the real data.
    "bald_active_learning": {"acquisition_function": "bald", "synthetic_loss_weight": 1.0, "targeted": True},
    "active_synthesis": {},
}
EXTRAS_FILE = "final_metrics.json"

TrainerFactory = Callable[[ActiveSynthesisConfig], Any]
"""Builds an `ActiveSynthesisTrainer` (model, data, generator) for a config whose seed and output_dir are set."""


def method_config(
    config: ActiveSynthesisConfig, method: str, seed: int, output_dir: str | Path
) -> ActiveSynthesisConfig:
    """The config of one run: the user's config with the method's overrides, the seed and the run's folder."""
    if method not in METHOD_OVERRIDES:
        raise ValueError(f"Unknown method {method!r}; choose from {list(METHOD_OVERRIDES)}.")
    return dataclasses.replace(
        config,
        **METHOD_OVERRIDES[method],
        seed=seed,
        output_dir=str(Path(output_dir) / method / f"seed-{seed}"),
        # Comparison runs are experiments, not artifacts: no Hub-layout copies of every checkpoint.
        publish_cycles=False,
        push_cycles_to_hub=False,
    )


def evaluate_final_model(
    trainer: Any,
    test_dataset: Dataset,
    corruptions: Mapping[str, Sequence[int]] | None = None,
    corruption_seed: int = 0,
) -> dict[str, Any]:
    """Accuracy, macro-F1 and ECE on the test split, and accuracy on each corrupted copy of it."""
    args = trainer.args

    def scores(dataset: Dataset) -> dict[str, float]:
        inputs = to_model_inputs(dataset, trainer.preprocess, label_column=args.label_column, is_synthetic=False)
        output = trainer.predict(inputs)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        return compute_classification_metrics(logits, output.label_ids, num_labels=trainer.num_labels)

    clean = scores(test_dataset)
    extras: dict[str, Any] = {
        "clean_accuracy": clean["accuracy"],
        "clean_f1_macro": clean["f1_macro"],
        "ece": clean["ece"],
        "robustness": {},
    }
    for name, severities in (corruptions or {}).items():
        extras["robustness"][name] = {
            int(severity): scores(
                corrupt_dataset(test_dataset, args.input_column, name, severity=severity, seed=corruption_seed)
            )["accuracy"]
            for severity in severities
        }
    return extras


def run_comparison(
    factory: TrainerFactory,
    config: ActiveSynthesisConfig,
    output_dir: str | Path,
    *,
    test_dataset: Dataset,
    acquisition_pool: Dataset | None = None,
    methods: Sequence[str] = METHODS,
    seeds: Sequence[int] = (0, 1, 2),
    corruptions: Mapping[str, Sequence[int]] | None = None,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Runs every method over every seed, scores the final models, and writes `report.md` + plots.

    Args:
        factory (`Callable[[ActiveSynthesisConfig], ActiveSynthesisTrainer]`): Builds the trainer of one run.
        config ([`ActiveSynthesisConfig`]): Shared settings; each method applies its overrides on top.
        output_dir (`str` or `Path`): Runs go to `output_dir/<method>/seed-<s>/`, the report to `output_dir/`.
        test_dataset (`datasets.Dataset`): Held-out real test split (raw rows).
        acquisition_pool (`datasets.Dataset`, *optional*): Held-back labelled real rows for `bald_active_learning`.
        methods (sequence of `str`): Subset of `METHODS` to run.
        seeds (sequence of `int`): Seeds; each seed also changes the run's data order and generator streams.
        corruptions (`Mapping[str, Sequence[int]]`, *optional*): Corruption name -> severities for robustness.
        label_names (sequence of `str`, *optional*): Class names for the per-class plot.

    Returns:
        `Path`: The path of the written `report.md`.
    """
    if "bald_active_learning" in methods and acquisition_pool is None:
        raise ValueError("The `bald_active_learning` baseline needs `acquisition_pool` (held-back labelled rows).")
    results: dict[str, list[dict[str, Any]]] = {}
    extras: dict[str, list[dict[str, Any]]] = {}
    for method in methods:
        for seed in seeds:
            run_config = method_config(config, method, seed, output_dir)
            history, final = run_one(factory, run_config, method, test_dataset, acquisition_pool, corruptions)
            results.setdefault(method, []).append(history)
            extras.setdefault(method, []).append(final)
    return build_report(results, output_dir, extras=extras, label_names=label_names)


def run_one(
    factory: TrainerFactory,
    run_config: ActiveSynthesisConfig,
    method: str,
    test_dataset: Dataset,
    acquisition_pool: Dataset | None,
    corruptions: Mapping[str, Sequence[int]] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One method × seed: runs (or resumes, or reuses) its cycles and scores its final model."""
    run_dir = Path(run_config.output_dir)
    extras_path = run_dir / EXTRAS_FILE
    history_path = run_dir / HISTORY_FILE
    if extras_path.is_file() and history_path.is_file():
        logger.info("Reusing the finished run in %s.", run_dir)
        return json.loads(history_path.read_text()), json.loads(extras_path.read_text())
    trainer = factory(run_config)
    if method == "bald_active_learning":
        trainer.generator = PoolAcquisitionGenerator(acquisition_pool)
        trainer.filters = [ExactDuplicateFilter()]
    resume = bool(CycleStore(run_dir).completed_cycles())
    trainer.run_cycles(resume=resume)
    final = evaluate_final_model(trainer, test_dataset, corruptions, corruption_seed=0)
    extras_path.write_text(json.dumps(final, indent=2))
    history = json.loads(history_path.read_text())
    return history, final

"""Run active synthesis against its baselines and ablations, paired by (seed, data split), and report the pairs.

Every method (`methods.COMPARISON_METHODS`) is a set of `ActiveSynthesisConfig` overrides on the user's config, run
through the same loop, data, budget and code path. Each (seed, split) pair runs every method: the split decides
which real rows are labelled, validation and pool (and with them the generator trained on that split), the seed the
model, data order and generation streams. Pairs are what the report's statistics are computed over.

Layout: `output_dir/<method>/split-<k>/seed-<s>/` holds one run (its cycles, `history.json` and
`final_metrics.json`). A run with `final_metrics.json` is finished and reused; any other is resumed from its last
complete cycle, so an interrupted comparison continues where it stopped. Several processes may share one
`output_dir`, each with a subset of methods (`--compare_methods`); the report is always written from every finished
run on disk, so the last process to finish writes the complete one.

The test metrics of a run are those of the model it hands back, its best validation cycle
(`load_best_cycle_at_end`), with the last cycle's recorded beside them (`"last"`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from ..config import ActiveSynthesisConfig
from ..cycle import CHECKPOINT_DIR, HISTORY_FILE, CycleStore
from ..data import to_model_inputs
from ..filters import ExactDuplicateFilter
from ..generators.pool import PoolAcquisitionGenerator
from .corruptions import corrupt_dataset
from .methods import METHODS, ComparisonMethod, resolve_methods
from .metrics import compute_classification_metrics
from .report import build_report

logger = logging.getLogger(__name__)

EXTRAS_FILE = "final_metrics.json"
COMPARISON_FILE = "comparison.json"
"""`output_dir/comparison.json`: what the report needs that no run holds (class names)."""


@dataclass
class ComparisonTask:
    """What one data split gives every run of a comparison.

    Args:
        build_trainer (`Callable[[ActiveSynthesisConfig], ActiveSynthesisTrainer]`): The trainer of one run, for a
            config whose seed and output_dir are set (model, data of this split, generator, filters).
        test_dataset (`datasets.Dataset`): The held-out real test split (raw rows).
        acquisition_pool (`datasets.Dataset`, *optional*): Held-back labelled real rows for `bald_active_learning`
            (and, split in two, the reference models' data and the non-members of the membership-inference attacks).
        label_names (`Sequence[str]`, *optional*): Class names, for the per-class plot.
        train_dataset (`datasets.Dataset`, *optional*): The real labelled training rows (what the privacy audit
            protects, and the members of the membership-inference attacks). Needed by the `synthetic_only_*` methods.
        validation_dataset (`datasets.Dataset`, *optional*): The real validation rows (the privacy audit's held-out
            reference). Needed by the `synthetic_only_*` methods.
        build_plain_trainer (`Callable[[ActiveSynthesisConfig, Dataset], ActiveSynthesisTrainer]`, *optional*): A
            trainer of the task's model (seeded with the config's seed), preprocessing, filters and validation split
            whose training rows are the given raw rows; only its `train()` is called. Needed by `synthetic_only_*`.
    """

    build_trainer: Callable[[ActiveSynthesisConfig], Any]
    test_dataset: Dataset
    acquisition_pool: Dataset | None = None
    label_names: Sequence[str] | None = None
    train_dataset: Dataset | None = None
    validation_dataset: Dataset | None = None
    build_plain_trainer: Callable[[ActiveSynthesisConfig, Dataset], Any] | None = None


TaskFactory = Callable[[int], ComparisonTask]
"""Builds the [`ComparisonTask`] of a data split (`split -> task`); called only for splits with unfinished runs."""


def run_directory(output_dir: str | Path, method: str, split: int, seed: int) -> Path:
    """`output_dir/<method>/split-<split>/seed-<seed>/`: where one run lives."""
    return Path(output_dir) / method / f"split-{split}" / f"seed-{seed}"


def method_config(
    config: ActiveSynthesisConfig, method: ComparisonMethod, seed: int, run_dir: str | Path
) -> ActiveSynthesisConfig:
    """The config of one run: the user's config with the method's overrides, the seed and the run's folder."""
    return dataclasses.replace(
        config,
        **method.overrides,
        seed=seed,
        output_dir=str(run_dir),
        # Comparison runs are experiments, not artifacts: no Hub-layout copies of every checkpoint.
        publish_cycles=False,
        push_cycles_to_hub=False,
    )


def predict_logits(trainer: Any, dataset: Dataset) -> tuple[Any, Any]:
    """`(logits [N, C], labels [N])` (numpy) of the trainer's model on raw labelled rows."""
    inputs = to_model_inputs(dataset, trainer.preprocess, label_column=trainer.args.label_column, is_synthetic=False)
    output = trainer.predict(inputs)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return logits, output.label_ids


def evaluate_final_model(
    trainer: Any,
    test_dataset: Dataset,
    corruptions: Mapping[str, Sequence[int]] | None = None,
    corruption_seed: int = 0,
) -> dict[str, Any]:
    """Accuracy, macro-F1 and ECE on the test split, and accuracy on each corrupted copy of it."""
    args = trainer.args

    def scores(dataset: Dataset) -> dict[str, float]:
        logits, labels = predict_logits(trainer, dataset)
        return compute_classification_metrics(logits, labels, num_labels=trainer.num_labels)

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
    task_factory: TaskFactory,
    config: ActiveSynthesisConfig,
    output_dir: str | Path,
    *,
    methods: Sequence[str] = METHODS,
    seeds: Sequence[int] = (0, 1),
    splits: Sequence[int] = (0, 1),
    corruptions: Mapping[str, Sequence[int]] | None = None,
) -> Path:
    """Runs every method on every (seed, split) pair, scores the handed-back models, and writes the report.

    Args:
        task_factory (`Callable[[int], ComparisonTask]`): Builds a split's data, generator and trainer factory.
        config ([`ActiveSynthesisConfig`]): Shared settings; each method applies its overrides on top.
        output_dir (`str` or `Path`): Runs go to `output_dir/<method>/split-<k>/seed-<s>/`, the report to
            `output_dir/`.
        methods (sequence of `str`): Names from `methods.COMPARISON_METHODS`, and from
            `synthetic_only.SYNTHETIC_ONLY_METHODS` (derived from finished runs of their source method; they run after
            the loop methods of each split).
        seeds (sequence of `int`): Run seeds.
        splits (sequence of `int`): Data-split seeds.
        corruptions (`Mapping[str, Sequence[int]]`, *optional*): Corruption name -> severities for robustness.

    Returns:
        `Path`: The path of the written `report.md` (covering every finished run in `output_dir`).
    """
    from .synthetic_only import SYNTHETIC_ONLY_METHODS, resolve_synthetic_only, run_synthetic_only

    chosen = resolve_methods([name for name in methods if name not in SYNTHETIC_ONLY_METHODS])
    derived = resolve_synthetic_only([name for name in methods if name in SYNTHETIC_ONLY_METHODS])
    tasks: dict[int, ComparisonTask] = {}

    def split_task(split: int) -> ComparisonTask:
        if split not in tasks:  # built lazily: a finished split retrains no generator
            tasks.clear()  # one split's task (its generator) in memory at a time
            tasks[split] = task_factory(split)
            _remember_label_names(output_dir, tasks[split].label_names)
        return tasks[split]

    for split in splits:
        for method in chosen:
            for seed in seeds:
                run_dir = run_directory(output_dir, method.name, split, seed)
                if (run_dir / EXTRAS_FILE).is_file() and (run_dir / HISTORY_FILE).is_file():
                    logger.info("Reusing the finished run in %s.", run_dir)
                    continue
                run_one(split_task(split), method_config(config, method, seed, run_dir), method, split, corruptions)
        for synthetic_only in derived:
            for seed in seeds:
                if (run_directory(output_dir, synthetic_only.name, split, seed) / EXTRAS_FILE).is_file():
                    continue
                run_synthetic_only(split_task(split), config, output_dir, synthetic_only, split, seed, corruptions)
    return write_comparison_report(output_dir)


def run_one(
    task: ComparisonTask,
    run_config: ActiveSynthesisConfig,
    method: ComparisonMethod,
    split: int,
    corruptions: Mapping[str, Sequence[int]] | None,
) -> dict[str, Any]:
    """One method × seed × split: runs (or resumes) its cycles, scores its models and writes `final_metrics.json`.

    The entry holds the test metrics of the best validation cycle (the model `run_cycles` hands back), with its
    `seed`, `split`, `method` and `cycle`, and under `"last"` those of the last cycle.
    """
    run_dir = Path(run_config.output_dir)
    trainer = task.build_trainer(run_config)
    if method.acquires_real_labels:
        if task.acquisition_pool is None:
            raise ValueError(f"`{method.name}` needs the task's `acquisition_pool` (held-back labelled rows).")
        trainer.generator = PoolAcquisitionGenerator(task.acquisition_pool)
        trainer.filters = [ExactDuplicateFilter()]
    store = CycleStore(run_dir)
    history = trainer.run_cycles(resume=bool(store.completed_cycles()))
    best, last = history.best_validation_cycle, history.cycles[-1].cycle
    _load_cycle(trainer, store, best)
    entry: dict[str, Any] = {"method": method.name, "seed": run_config.seed, "split": split, "cycle": best}
    entry.update(evaluate_final_model(trainer, task.test_dataset, corruptions, corruption_seed=0))
    if last != best:
        _load_cycle(trainer, store, last)
        last_scores = evaluate_final_model(trainer, task.test_dataset)
    else:
        last_scores = entry
    entry["last"] = {"cycle": last, **{k: last_scores[k] for k in ("clean_accuracy", "clean_f1_macro", "ece")}}
    (run_dir / EXTRAS_FILE).write_text(json.dumps(entry, indent=2))
    return entry


def _load_cycle(trainer: Any, store: CycleStore, cycle: int) -> None:
    trainer._load_from_checkpoint(str(store.cycle_dir(cycle) / CHECKPOINT_DIR))


def _remember_label_names(output_dir: str | Path, label_names: Sequence[str] | None) -> None:
    if label_names is None:
        return
    path = Path(output_dir) / COMPARISON_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"label_names": list(label_names)}, indent=2))


def collect_runs(output_dir: str | Path) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """Every finished run under `output_dir`: `(method -> histories, method -> final-metric entries)`.

    Methods come in report order (`METHODS`, then any other name alphabetically), runs by (split, seed). Each
    history gets its run's `seed` and `split` at the top level, so histories pair like entries do.
    """
    root = Path(output_dir)
    found = sorted(root.glob(f"*/split-*/seed-*/{EXTRAS_FILE}"))
    order = {name: i for i, name in enumerate(METHODS)}
    runs = []
    for path in found:
        run_dir = path.parent
        if not (run_dir / HISTORY_FILE).is_file():
            continue
        entry = json.loads(path.read_text())
        history = json.loads((run_dir / HISTORY_FILE).read_text())
        history["seed"], history["split"] = entry["seed"], entry["split"]
        runs.append(
            (order.get(entry["method"], len(order)), entry["method"], entry["split"], entry["seed"], history, entry)
        )
    results: dict[str, list[dict]] = {}
    entries: dict[str, list[dict]] = {}
    for _, method, _, _, history, entry in sorted(runs, key=lambda run: run[:4]):
        results.setdefault(method, []).append(history)
        entries.setdefault(method, []).append(entry)
    return results, entries


def write_comparison_report(output_dir: str | Path) -> Path:
    """Writes `report.md`, `summary.json` and the plots of every finished run in `output_dir`."""
    results, entries = collect_runs(output_dir)
    if not results:
        raise ValueError(f"No finished comparison run under {output_dir} (<method>/split-<k>/seed-<s>/).")
    meta_path = Path(output_dir) / COMPARISON_FILE
    label_names = json.loads(meta_path.read_text()).get("label_names") if meta_path.is_file() else None
    derived = collect_derived_runs(output_dir)
    return build_report(results, output_dir, extras=entries, label_names=label_names, derived=derived)


def collect_derived_runs(output_dir: str | Path) -> dict[str, list[dict]]:
    """`method -> final-metric entries` of the finished derived runs (`synthetic_only_*`, marked `derived_from`)
    under `output_dir`, by (split, seed). They have no `history.json` (no cycles), so `collect_runs` skips them."""
    runs = []
    for path in sorted(Path(output_dir).glob(f"*/split-*/seed-*/{EXTRAS_FILE}")):
        entry = json.loads(path.read_text())
        if "derived_from" in entry:
            runs.append((entry["method"], entry["split"], entry["seed"], entry))
    derived: dict[str, list[dict]] = {}
    for method, _, _, entry in sorted(runs, key=lambda run: run[:3]):
        derived.setdefault(method, []).append(entry)
    return derived

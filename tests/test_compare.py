"""The comparison runner: every method on every (seed, split) pair through the same loop, a paired report."""

import json
import shutil
import subprocess
import sys

import pytest
from tiny import WordSwapGenerator, make_args, make_bert, make_text_dataset, make_tokenizer

from hf_active_synth import ActiveSynthesisTrainer
from hf_active_synth.cycle import CycleStore
from hf_active_synth.evaluation.compare import ComparisonTask, run_comparison, run_directory
from hf_active_synth.evaluation.methods import COMPARISON_METHODS, METHODS, resolve_methods

SEEDS, SPLITS = (0, 1), (0, 1)


def task_factory(built: list, built_splits: list):
    """Each split draws its own rows (the seeds of the tiny data depend on it), like the recipes' data splits."""

    def for_split(split: int) -> ComparisonTask:
        built_splits.append(split)
        train = make_text_dataset(16, seed=10 * split)
        validation = make_text_dataset(16, seed=10 * split + 1)

        def build_trainer(config):
            built.append(config)
            return ActiveSynthesisTrainer(
                model=make_bert(seed=config.seed),
                args=config,
                train_dataset=train,
                eval_dataset=validation,
                processing_class=make_tokenizer(),
                generator=WordSwapGenerator(),
            )

        return ComparisonTask(
            build_trainer,
            test_dataset=make_text_dataset(16, seed=10 * split + 2),
            acquisition_pool=make_text_dataset(20, seed=10 * split + 7),
            label_names=["negative", "positive"],
        )

    return for_split


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """Every method on 2 seeds x 2 splits (24 tiny runs), once for the module."""
    tmp_path = tmp_path_factory.mktemp("compare")
    built, built_splits = [], []
    config = make_args(tmp_path, num_cycles=1, synthetic_samples_per_cycle=4, num_train_epochs=2)
    output_dir = tmp_path / "compare"
    report = run_comparison(
        task_factory(built, built_splits),
        config,
        output_dir,
        methods=METHODS,
        seeds=SEEDS,
        splits=SPLITS,
        corruptions={"word_dropout": [2]},
    )
    return {"report": report, "output_dir": output_dir, "config": config, "built": built, "splits": built_splits}


def test_every_method_runs_on_every_pair_with_its_overrides(comparison):
    output_dir = comparison["output_dir"]
    assert comparison["splits"] == list(SPLITS)  # one task per split, built once
    configs = {(c.output_dir.split("/")[-3], c.output_dir.split("/")[-2], c.seed): c for c in comparison["built"]}
    assert len(configs) == len(METHODS) * len(SEEDS) * len(SPLITS)
    for (method, _, _), config in configs.items():
        for field, value in COMPARISON_METHODS[method].overrides.items():
            assert getattr(config, field) == value
    random_synthetic = configs[("random_synthetic", "split-0", 0)]
    assert (random_synthetic.target_strategy, random_synthetic.guidance) == ("random", False)
    assert random_synthetic.selection_strategy == "random"
    assert configs[("random_targets", "split-0", 0)].guidance
    assert configs[("unguided_targeted", "split-0", 0)].target_strategy == "uncertain"
    # BALD active learning acquired real pool rows, with their true labels.
    pool = make_text_dataset(20, seed=7)
    acquired = CycleStore(run_directory(output_dir, "bald_active_learning", 0, 0)).load_synthetic(1)
    pool_rows = set(zip(pool["text"], pool["label"]))
    assert len(acquired) == 4 and all(row in pool_rows for row in zip(acquired["text"], acquired["label"]))
    real_only = json.loads((run_directory(output_dir, "real_only", 1, 1) / "history.json").read_text())
    assert [c["num_synthetic_total"] for c in real_only["cycles"]] == [0, 0]


def test_final_metrics_are_the_best_validation_cycle_with_the_last_beside_them(comparison):
    for method in METHODS:
        run_dir = run_directory(comparison["output_dir"], method, 1, 0)
        entry = json.loads((run_dir / "final_metrics.json").read_text())
        history = json.loads((run_dir / "history.json").read_text())
        assert (entry["method"], entry["seed"], entry["split"]) == (method, 0, 1)
        accuracies = [c["eval_metrics"]["eval_accuracy"] for c in history["cycles"]]
        assert entry["cycle"] == history["best_validation_cycle"] == accuracies.index(max(accuracies))
        assert entry["last"]["cycle"] == len(accuracies) - 1
        assert 0.0 <= entry["clean_accuracy"] <= 1.0 and "2" in entry["robustness"]["word_dropout"]


def test_summary_has_paired_differences_the_checker_reproduces(comparison, paired_checker):
    output_dir = comparison["output_dir"]
    summary = json.loads((output_dir / "summary.json").read_text())
    paired = summary["paired_differences"]
    assert set(paired) == set(METHODS)
    active = paired["active_synthesis"]
    assert set(active) == {"random_synthetic", "real_only"}
    assert set(active["random_synthetic"]) == {"accuracy", "f1", "mean_corrupted_accuracy"}
    assert active["random_synthetic"]["accuracy"]["n"] == len(SEEDS) * len(SPLITS)
    assert "real_only" not in paired["real_only"]  # never against itself
    assert set(summary["gap_closure"]) >= {"active_synthesis", "random_targets", "unguided_targeted"}
    efficiency = summary["data_efficiency_pairs"]["active_synthesis"]
    assert efficiency["n"] == len(SEEDS) * len(SPLITS) and efficiency["num_reached"] + efficiency["num_capped"] == 4
    for entry in summary["extras"]["active_synthesis"]:
        assert {"seed", "split", "clean_accuracy"} <= set(entry)
    out = subprocess.run(
        [
            sys.executable,
            str(paired_checker),
            str(output_dir / "summary.json"),
            "active_synthesis",
            "random_synthetic",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert int(out[0]) == 4
    assert float(out[1]) == pytest.approx(active["random_synthetic"]["accuracy"]["mean"], abs=1e-4)
    text = comparison["report"].read_text()
    assert text.index("## Paired differences") < text.index("## Final performance")
    for method in METHODS:
        assert method in text


def test_a_resumed_comparison_writes_the_same_summary(comparison, tmp_path):
    """Kill one run in its last cycle (its final metrics and last cycle gone), rerun: the same summary."""
    original = comparison["output_dir"]
    resumed = tmp_path / "resumed"
    shutil.copytree(original, resumed)
    run_dir = run_directory(resumed, "active_synthesis", 1, 1)
    (run_dir / "final_metrics.json").unlink()
    shutil.rmtree(run_dir / "cycle-1")
    built, built_splits = [], []
    config = comparison["config"]
    run_comparison(
        task_factory(built, built_splits),
        config,
        resumed,
        methods=METHODS,
        seeds=SEEDS,
        splits=SPLITS,
        corruptions={"word_dropout": [2]},
    )
    assert built_splits == [1] and len(built) == 1  # only the killed run ran again, from its last complete cycle

    def without_timings(summary):
        summary.pop("compute")
        return summary

    before = without_timings(json.loads((original / "summary.json").read_text()))
    after = without_timings(json.loads((resumed / "summary.json").read_text()))
    assert after == before


def test_methods_table_rejects_unknown_and_repeated_names():
    with pytest.raises(ValueError, match="Unknown comparison method"):
        resolve_methods(["active_synthesis", "magic"])
    with pytest.raises(ValueError, match="repeat"):
        resolve_methods(["real_only", "real_only"])

"""Synthetic-only comparison methods: fresh models on a finished run's samples, their audit and membership attacks."""

import json

import pytest
from tiny import WordSwapGenerator, make_args, make_bert, make_text_dataset, make_tokenizer

from hf_active_synth import ActiveSynthesisTrainer
from hf_active_synth.evaluation import membership_runs
from hf_active_synth.evaluation.compare import ComparisonTask, run_comparison, run_directory
from hf_active_synth.evaluation.membership_runs import REFERENCE_DIR
from hf_active_synth.evaluation.synthetic_only import resolve_synthetic_only, training_rows
from hf_active_synth.filters import ExactDuplicateFilter
from hf_active_synth.filters.text import RealNearCopyFilter

METHODS = ["real_only", "random_synthetic", "synthetic_only_random", "synthetic_only_random_full"]


def task_factory(trained: list):
    def for_split(split: int) -> ComparisonTask:
        train, validation = make_text_dataset(16, seed=10 * split), make_text_dataset(16, seed=10 * split + 1)

        def build(config, rows=None):
            trained.append(len(rows) if rows is not None else len(train))
            return ActiveSynthesisTrainer(
                model=make_bert(seed=config.seed),
                args=config,
                train_dataset=train if rows is None else rows,
                eval_dataset=validation,
                processing_class=make_tokenizer(),
                generator=WordSwapGenerator(),
                filters=[ExactDuplicateFilter(), RealNearCopyFilter(max_overlap=0.9)],
            )

        return ComparisonTask(
            build,
            test_dataset=make_text_dataset(16, seed=10 * split + 2),
            acquisition_pool=make_text_dataset(24, seed=10 * split + 7),
            label_names=["negative", "positive"],
            train_dataset=train,
            validation_dataset=validation,
            build_plain_trainer=build,
        )

    return for_split


REFERENCE_MODELS = 2  # the fewest the likelihood-ratio attack takes: a fast test


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("privacy-compare")
    trained: list = []
    config = make_args(tmp_path, num_cycles=1, synthetic_samples_per_cycle=8, num_train_epochs=2, ensemble_size=2)
    output_dir = tmp_path / "compare"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(membership_runs, "NUM_REFERENCE_MODELS", REFERENCE_MODELS)
        report = run_comparison(task_factory(trained), config, output_dir, methods=METHODS, seeds=(0,), splits=(0,))
        yield output_dir, report, trained


def test_synthetic_only_models_train_on_the_source_runs_samples_and_pair_with_real_only(comparison):
    output_dir, _, _ = comparison
    source = run_directory(output_dir, "random_synthetic", 0, 0)
    accepted = json.loads((source / "history.json").read_text())["cycles"][1]["num_accepted"]
    small = json.loads((run_directory(output_dir, "synthetic_only_random", 0, 0) / "final_metrics.json").read_text())
    full = json.loads(
        (run_directory(output_dir, "synthetic_only_random_full", 0, 0) / "final_metrics.json").read_text()
    )
    assert full["num_train_rows"] == accepted and small["num_train_rows"] == min(accepted, 16)
    assert small["derived_from"] == "random_synthetic" and small["size"] == "real_size"
    # The source run is read, never written: no `datasets` cache lands in its folders.
    assert not list(source.rglob("cache-*.arrow"))
    assert 0.0 <= small["clean_accuracy"] <= 1.0
    audit = small["privacy_audit"]
    assert audit["published"]["num_samples"] == accepted and set(audit["cycles"]) == {"1"}
    assert audit["published"]["near_copy_threshold"] == 0.9 and audit["published"]["num_near_copies"] == 0
    membership = small["membership"]
    for model in ("real_only", "source", "synthetic_only"):
        assert {"loss_threshold", "lira_offline"} <= set(membership[model])
        assert membership[model]["lira_offline"]["num_reference_models"] == REFERENCE_MODELS
    assert membership["num_members"] == 16 and membership["nonmembers"] == "pool"
    # The real-only and source models are the same for both sizes: the same attacks, the same numbers.
    assert membership["real_only"] == full["membership"]["real_only"]


def test_report_carries_the_synthetic_only_audit_and_membership_tables(comparison):
    output_dir, report, _ = comparison
    text = report.read_text()
    for heading in ("## Synthetic-only models", "## Privacy audit of the synthetic data", "## Membership inference"):
        assert heading in text
    assert "What the privacy figures do not prove" in text and "synthetic_only_random_full" in text
    summary = json.loads((output_dir / "summary.json").read_text())
    row = summary["synthetic_only"]["synthetic_only_random"]
    assert row["ratio_to_real_only"]["n"] == 1 and row["source"] == "random_synthetic"
    assert set(summary["membership_inference"]) == {
        "real_only",
        "random_synthetic",
        "synthetic_only_random",
        "synthetic_only_random_full",
    }
    assert list(summary["privacy_audit"]) == ["random_synthetic"]
    # Derived runs have no history: the loop methods' sections do not list them.
    assert "synthetic_only_random" not in summary["final"]


def test_finished_runs_and_reference_models_are_reused(comparison, tmp_path):
    output_dir, _, trained = comparison
    assert (output_dir / REFERENCE_DIR / "split-0" / "seed-0" / "reference_logits.pt").is_file()
    before = len(trained)
    config = make_args(tmp_path, num_cycles=1, synthetic_samples_per_cycle=8, num_train_epochs=2, ensemble_size=2)
    run_comparison(task_factory(trained), config, output_dir, methods=METHODS, seeds=(0,), splits=(0,))
    assert len(trained) == before  # nothing retrained


def test_a_missing_source_run_is_named_with_the_fix(comparison, tmp_path):
    output_dir, _, _ = comparison
    config = make_args(tmp_path, num_cycles=1)
    with pytest.raises(FileNotFoundError, match="Run `active_synthesis` on this pair first"):
        run_comparison(
            task_factory([]), config, output_dir, methods=["synthetic_only_active"], seeds=(0,), splits=(0,)
        )
    with pytest.raises(ValueError, match="Unknown synthetic-only"):
        resolve_synthetic_only(["synthetic_only_nothing"])


def test_real_size_draws_as_many_rows_per_class_as_the_real_set_has():
    real = make_text_dataset(6)  # 3 per class
    synthetic = make_text_dataset(20, seed=3)
    rows = training_rows(synthetic, real, "real_size", "label", seed=0)
    assert sorted(rows["label"]) == [0, 0, 0, 1, 1, 1]
    assert rows["text"] == training_rows(synthetic, real, "real_size", "label", seed=0)["text"]  # seeded
    assert len(training_rows(synthetic, real, "full", "label", seed=0)) == 20

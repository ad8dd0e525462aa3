"""What a run prints: one progress bar over its stages, no per-operation bars or library-made warnings, each training
run's metrics at debug level, and a summary at the end; and how a command-line run logs."""

import logging
import os
import warnings

import datasets
import pytest
from tiny import make_args, make_trainer
from transformers.utils import logging as transformers_logging

from hf_active_synth.cycle import ActiveSynthesisHistory, CycleResult
from hf_active_synth.recipes.running import configure_logging
from hf_active_synth.run_output import (
    SUMMARY_LOGGER,
    callback_outputs,
    cycle_stages,
    library_progress_bars_disabled,
    run_summary,
)

PER_OPERATION_BARS = ("Preprocessing", "Casting the dataset", "Saving the dataset", "Map", "Writing model shards")


def test_a_run_shows_one_bar_and_ends_with_a_summary(tmp_path, capsys, caplog):
    # Ensemble members are trained (and log their metrics); held-out audit members add the "audit" stage.
    trainer = make_trainer(
        tmp_path, num_cycles=1, uncertainty_method="deep_ensemble", ensemble_size=2, heldout_audit_members=2
    )
    assert not trainer.args.dataloader_pin_memory  # no accelerator here: pinning would only warn
    bars_before = (datasets.are_progress_bars_disabled(), transformers_logging.is_progress_bar_enabled())
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG, logger="hf_active_synth"):
        warnings.simplefilter("always")
        history = trainer.run_cycles()
    captured = capsys.readouterr()

    # The bar counts exactly the stages the cycles timed, and reached its end.
    for result in history.cycles:
        assert list(result.stage_seconds) == cycle_stages(result.cycle, synthesizes=True, audits=True)
    total = sum(len(result.stage_seconds) for result in history.cycles)
    assert f"{total}/{total}" in captured.err and "cycle 1/1" in captured.err
    # No bar of datasets or transformers, no printed metrics dicts, no pin_memory warning.
    assert not [name for name in PER_OPERATION_BARS if name in captured.err]
    assert "train_runtime" not in captured.out + captured.err
    assert not [w for w in caught if "pin_memory" in str(w.message)]
    # Each training run's metrics went to the debug log instead, the members' labelled as such.
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(m.startswith("member ") and "train_runtime" in m for m in debug)
    assert any(m.startswith("model: ") and "eval_accuracy" in m for m in debug)
    # The summary: one row per cycle, where everything is, and how to open the report.
    (summary,) = [r.getMessage() for r in caplog.records if r.name == SUMMARY_LOGGER]
    assert summary.startswith("Active synthesis finished") and "completed 1 cycles" in summary
    rows = [line.split() for line in summary.splitlines()[2:4]]
    assert [row[0] for row in rows] == ["0", "1"] and rows[1][2] == str(history.cycles[1].num_accepted)
    assert f"Output directory:            {trainer.args.output_dir}" in summary
    assert "Model (Hub layout):" in summary and "Synthetic data (Hub layout):" in summary
    assert f"hf-active-synth report {trainer.args.output_dir}" in summary
    # The libraries' own bars are as they were before the run.
    assert (datasets.are_progress_bars_disabled(), transformers_logging.is_progress_bar_enabled()) == bars_before

    # Running again into the same folder names both ways to continue.
    with pytest.raises(ValueError, match=r"`resume=True` \(`--resume true` on the command line\)"):
        trainer.run_cycles()


def test_a_resumed_run_counts_only_the_cycles_left(tmp_path, capsys):
    make_trainer(tmp_path, num_cycles=1, publish_cycles=False).run_cycles()
    capsys.readouterr()
    history = make_trainer(tmp_path, num_cycles=2, publish_cycles=False).run_cycles(resume=True)
    err = capsys.readouterr().err
    assert [c.cycle for c in history.cycles] == [0, 1, 2]
    assert "5/5" in err and "cycle 2/2" in err and "cycle 1/2" not in err


def test_the_plan_matches_every_kind_of_cycle():
    assert cycle_stages(0, synthesizes=True, audits=True) == ["train", "evaluate", "estimate"]
    assert cycle_stages(2, synthesizes=True, audits=False) == ["generate", "filter", "train", "evaluate", "estimate"]
    assert cycle_stages(2, synthesizes=False, audits=True) == ["train", "evaluate"]  # the real-only baseline


def test_run_summary_marks_the_best_cycle_and_the_uncertainty_change(tmp_path):
    args = make_args(tmp_path, acquisition_function="variance")
    history = ActiveSynthesisHistory(
        cycles=[
            CycleResult(0, {"eval_accuracy": 0.8}, stage_seconds={"train": 2.0, "evaluate": 0.5}),
            CycleResult(
                1,
                {"eval_accuracy": 0.9},
                uncertainty_before={"variance": 0.5, "bald": 0.7},
                uncertainty_after={"variance": 0.25, "bald": 0.1},
                num_accepted=6,
                stage_seconds={"generate": 10.0, "train": 3.0},
            ),
        ],
        stop_reason="completed 1 cycles",
        best_validation_cycle=1,
        loaded_cycle=1,
    )
    lines = run_summary(history, args, seconds=75).splitlines()
    assert lines[0] == "Active synthesis finished in 1 min 15 s: completed 1 cycles."
    assert lines[1].split() == [
        "cycle",
        "val",
        "accuracy",
        "accepted",
        "target",
        "variance",
        "before",
        "→",
        "after",
    ] + ["seconds"]
    assert lines[2].split() == ["0", "0.8000", "0", "-", "2.5"]
    assert lines[3].split() == ["1", "*", "0.9000", "6", "0.5", "→", "0.25", "13.0"]
    assert lines[4] == "  * best validation cycle: 1, its weights loaded"
    assert lines[-1] == f"Report:           hf-active-synth report {args.output_dir}"


def test_the_summary_lists_the_hub_layout_folders_and_the_pushed_repositories(tmp_path):
    from hf_active_synth.hub import HubPublisher

    publisher = HubPublisher(tmp_path / "run", "user/model", "user/data", push_to_hub=True)
    assert callback_outputs(publisher) == {  # nothing written yet: only where the pushes go
        "Model on the Hub": f"{os.environ['HF_ENDPOINT']}/user/model",
        "Synthetic data on the Hub": f"{os.environ['HF_ENDPOINT']}/datasets/user/data",
    }
    publisher.model_dir().mkdir(parents=True)
    publisher.dataset_dir().mkdir(parents=True)
    outputs = callback_outputs(publisher)
    assert outputs["Model (Hub layout)"] == str(publisher.model_dir())
    assert outputs["Synthetic data (Hub layout)"] == str(publisher.dataset_dir())
    assert callback_outputs(object()) == {}  # a callback that wrote nothing it can name


def _set_library_bars(datasets_on: bool, transformers_on: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Hub's: `HF_HUB_DISABLE_PROGRESS_BARS=1` (conftest) wins
        (datasets.enable_progress_bars if datasets_on else datasets.disable_progress_bars)()
        (transformers_logging.enable_progress_bar if transformers_on else transformers_logging.disable_progress_bar)()


@pytest.mark.parametrize("enabled_before", [True, False])
def test_library_bars_come_back_as_the_caller_had_them(enabled_before):
    before = (not datasets.are_progress_bars_disabled(), transformers_logging.is_progress_bar_enabled())
    _set_library_bars(enabled_before, enabled_before)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with library_progress_bars_disabled():
                assert datasets.are_progress_bars_disabled()
                assert not transformers_logging.is_progress_bar_enabled()
        assert datasets.are_progress_bars_disabled() is not enabled_before
        assert transformers_logging.is_progress_bar_enabled() is enabled_before
        # The Hub's bars cannot come back under `HF_HUB_DISABLE_PROGRESS_BARS=1`: no warning saying so.
        assert not [w for w in caught if "progress bars" in str(w.message)]
    finally:
        _set_library_bars(*before)


@pytest.fixture
def restore_logging():
    loggers = [logging.getLogger(name) for name in ("hf_active_synth", SUMMARY_LOGGER)]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_the_command_line_logs_warnings_and_the_summary_unless_verbose():
    configure_logging(verbose=False)
    library, summary = logging.getLogger("hf_active_synth.trainer"), logging.getLogger(SUMMARY_LOGGER)
    assert not library.isEnabledFor(logging.INFO) and library.isEnabledFor(logging.WARNING)
    assert summary.isEnabledFor(logging.INFO)
    configure_logging(verbose=True)
    assert library.isEnabledFor(logging.DEBUG)  # INFO messages and each training run's metrics

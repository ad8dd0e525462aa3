"""What a run shows: one progress bar over every stage of every cycle, and a summary when it ends.

While `ActiveSynthesisTrainer.run_cycles` runs, [`RunProgress`] shows one tqdm bar (cycles x stages, with the ETA)
and silences the per-operation bars of `datasets`, `transformers` and `huggingface_hub`
([`library_progress_bars_disabled`]); the metrics dicts the Trainer prints after every training run go to the
`hf_active_synth.trainer` logger at DEBUG level ([`log_training_at_debug`]). When the run ends, [`run_summary`] is
logged at INFO on `SUMMARY_LOGGER`, a logger of its own so that a program showing only the library's warnings (the
recipes without `--verbose`) still shows it.
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import huggingface_hub.utils as hub_utils
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import PrinterCallback, Trainer, TrainerCallback
from transformers.utils import logging as transformers_logging

from .profiling import StageTimer

if TYPE_CHECKING:
    from .callbacks import CycleCallback
    from .config import ActiveSynthesisConfig
    from .cycle import ActiveSynthesisHistory, CycleResult

SUMMARY_LOGGER = "hf_active_synth.summary"
"""The logger of the end-of-run summary (INFO)."""

logger = logging.getLogger(SUMMARY_LOGGER)
training_logger = logging.getLogger("hf_active_synth.trainer")

# `HF_HUB_DISABLE_PROGRESS_BARS` / `HF_DATASETS_DISABLE_PROGRESS_BARS` win over code, and the libraries warn when code
# asks otherwise. The caller's environment has already decided, so that warning would only be noise we caused.
_ENV_PRIORITY_WARNING = r"Cannot (en|dis)able progress bars"
_UNCERTAINTY_KEYS = ("bald", "variance", "entropy")


def _respecting_env(switch: Callable[[], Any]) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_ENV_PRIORITY_WARNING)
        switch()


@contextmanager
def library_progress_bars_disabled() -> Iterator[None]:
    """Silences the per-operation progress bars of `datasets` (Map, Casting, Saving, parquet), `transformers`
    (writing model shards, loading weights) and `huggingface_hub` (uploads) inside the block, and restores each
    library's previous setting after it (nested blocks leave them to the outer one)."""
    datasets_on = not datasets.are_progress_bars_disabled()
    transformers_on = transformers_logging.is_progress_bar_enabled()
    hub_on = not hub_utils.are_progress_bars_disabled()
    if datasets_on:
        _respecting_env(datasets.disable_progress_bars)
    if transformers_on:
        _respecting_env(transformers_logging.disable_progress_bar)
    if hub_on:
        _respecting_env(hub_utils.disable_progress_bars)
    try:
        yield
    finally:
        # transformers' switch flips huggingface_hub's too: restore it first, then the Hub's own previous setting.
        if transformers_on:
            _respecting_env(transformers_logging.enable_progress_bar)
        if hub_on:
            _respecting_env(hub_utils.enable_progress_bars)
        elif transformers_on:
            _respecting_env(hub_utils.disable_progress_bars)
        if datasets_on:
            _respecting_env(datasets.enable_progress_bars)


class TrainingLogsAtDebug(TrainerCallback):
    """Logs what `PrinterCallback` prints (each training run's `train_runtime`, `train_loss`, evaluation metrics) on
    the `hf_active_synth.trainer` logger at DEBUG level, labelled with the model it comes from."""

    def __init__(self, label: str):
        self.label = label

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items() if k != "total_flos"}
            training_logger.debug("%s: %s", self.label, shown)


def log_training_at_debug(trainer: Trainer, label: str) -> None:
    """Replaces the `PrinterCallback` of `trainer` (the Trainer installs it with `disable_tqdm=True`) by
    [`TrainingLogsAtDebug`]: a run trains dozens of times (every cycle, every ensemble member) and would print a dict
    each time. A trainer showing its own progress bar (`disable_tqdm=False`) is left as it is."""
    if trainer.pop_callback(PrinterCallback) is not None:
        trainer.add_callback(TrainingLogsAtDebug(label))


def cycle_stages(cycle: int, synthesizes: bool, audits: bool) -> list[str]:
    """The stages `ActiveSynthesisTrainer` times in `cycle`, in order: what the progress bar counts.

    Args:
        cycle (`int`): The cycle (0 trains on the real data only).
        synthesizes (`bool`): Whether the run generates synthetic data (`ActiveSynthesisConfig.synthesizes`).
        audits (`bool`): Whether accepted samples are audited (`CycleAuditor.active`).
    """
    stages = ["generate", "filter", *(["audit"] if audits else [])] if cycle > 0 and synthesizes else []
    return [*stages, "train", "evaluate", *(["estimate"] if synthesizes else [])]


class RunProgress:
    """The output of one `run_cycles` call: a context manager, and the [`profiling.StageListener`] of its timers.

    Inside the block the libraries' own progress bars are off. [`RunProgress.plan`] opens one bar over every stage of
    the cycles still to run (on the main process, when `args.show_cycle_progress`), with console log records printed
    above it; [`RunProgress.finish`] closes it and logs [`run_summary`].

    Args:
        args ([`ActiveSynthesisConfig`]): The run's settings.
        main_process (`bool`): Whether this process shows the bar and logs the summary.
    """

    def __init__(self, args: ActiveSynthesisConfig, main_process: bool):
        self.args = args
        self.main_process = main_process
        self.bar: tqdm | None = None
        self.cycle = 0
        self._stack = ExitStack()
        self._start = time.perf_counter()

    def __enter__(self) -> RunProgress:
        self._stack.enter_context(library_progress_bars_disabled())
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.close()

    def plan(self, cycles: Sequence[int], audits: bool) -> None:
        """Opens the bar over the stages of `cycles` (see [`cycle_stages`])."""
        total = sum(len(cycle_stages(cycle, self.args.synthesizes, audits)) for cycle in cycles)
        if not (self.args.show_cycle_progress and self.main_process and total):
            return
        # `smoothing=0`: the ETA uses the mean time per stage so far; stages range from 0.1 s to minutes.
        self.bar = self._stack.enter_context(
            tqdm(total=total, desc="active synthesis", unit="stage", smoothing=0, dynamic_ncols=True, file=sys.stderr)
        )
        if _logs_to_console(logging.getLogger()):
            # Log records print above the bar instead of through it. (Only then: the redirection adds a console
            # handler, which a program that logs to files only must not get.)
            self._stack.enter_context(logging_redirect_tqdm(tqdm_class=tqdm))

    def stage_timer(self, cycle: int) -> StageTimer:
        """The timer of `cycle`'s stages; each stage it times moves the bar."""
        self.cycle = cycle
        return StageTimer(listener=self)

    def stage_started(self, stage: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(f"cycle {self.cycle}/{self.args.num_cycles} {stage}")

    def stage_finished(self, stage: str, seconds: float) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def cycle_finished(self, result: CycleResult) -> None:
        """Shows the cycle's validation metric next to the bar."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"{_metric_label(self.args.cycle_metric)}={_cycle_metric(result, self.args)}")

    def finish(self, history: ActiveSynthesisHistory, callbacks: Sequence[CycleCallback] = ()) -> None:
        """Closes the bar (and restores the libraries' bars), then logs the summary on the main process."""
        self._stack.close()
        if self.main_process:
            logger.info(run_summary(history, self.args, callbacks, seconds=time.perf_counter() - self._start))


def _logs_to_console(target: logging.Logger) -> bool:
    return any(
        isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr)
        for handler in target.handlers
    )


def _metric_label(metric: str) -> str:
    return metric.removeprefix("eval_")


def _cycle_metric(result: CycleResult, args: ActiveSynthesisConfig) -> str:
    return f"{result.metric(args.cycle_metric):.4f}"


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]


def run_summary(
    history: ActiveSynthesisHistory,
    args: ActiveSynthesisConfig,
    callbacks: Sequence[CycleCallback] = (),
    seconds: float | None = None,
) -> str:
    """What a finished run did and where its artifacts are: a table per cycle (validation metric, accepted samples,
    the targets' uncertainty before -> after, seconds), the output directory, what the callbacks wrote (Hub-layout
    repositories, TensorBoard logs) and the command that opens the report.

    Args:
        history ([`ActiveSynthesisHistory`]): The finished run.
        args ([`ActiveSynthesisConfig`]): Its settings (`cycle_metric`, `acquisition_function`, `output_dir`).
        callbacks (sequence of [`CycleCallback`]): The run's callbacks (see [`callback_outputs`]).
        seconds (`float`, *optional*): Wall time of this call of `run_cycles`.
    """
    key = args.acquisition_function if args.acquisition_function in _UNCERTAINTY_KEYS else "bald"
    best = history.best_validation_cycle
    rows = [
        ["cycle", f"val {_metric_label(args.cycle_metric)}", "accepted", f"target {key} before → after", "seconds"]
    ]
    for result in history.cycles:
        before, after = result.uncertainty_before.get(key), result.uncertainty_after.get(key)
        change = f"{_number(before)} → {_number(after)}" if before is not None else "-"
        rows.append(
            [
                str(result.cycle),
                ("* " if result.cycle == best else "") + _cycle_metric(result, args),
                str(result.num_accepted),
                change,
                f"{sum(result.stage_seconds.values()):.1f}",
            ]
        )
    took = f" in {_duration(seconds)}" if seconds is not None else ""
    lines = [f"Active synthesis finished{took}: {history.stop_reason}.", *_table(rows)]
    if best is not None:
        kept = "loaded" if history.loaded_cycle == best else f"not loaded (the model is cycle {history.loaded_cycle})"
        lines.append(f"  * best validation cycle: {best}, its weights {kept}")
    output_dir = Path(args.output_dir)
    outputs = {"Output directory": str(output_dir)}
    for callback in callbacks:
        outputs.update(callback_outputs(callback))
    outputs["Report"] = f"hf-active-synth report {shlex.quote(str(output_dir))}"
    width = max(len(label) for label in outputs) + 1
    lines += [f"{label + ':':<{width}} {value}" for label, value in outputs.items()]
    return "\n".join(lines)


def callback_outputs(callback: CycleCallback) -> dict[str, str]:
    """What a callback wrote, as `{label: path, URL or command}`: its `outputs()` when it defines one; for a
    [`hub.HubPublisher`], its Hub-layout folders and the repositories it pushes to (a failed push is logged, with
    its retry, when it fails)."""
    outputs = getattr(callback, "outputs", None)
    if callable(outputs):
        return dict(outputs())
    # A publisher can only exist if the Hub stack was imported; runs that do not publish never import it.
    hub = sys.modules.get("hf_active_synth.hub")
    if hub is None or not isinstance(callback, hub.HubPublisher):
        return {}
    folders = {"Model (Hub layout)": callback.model_dir(), "Synthetic data (Hub layout)": callback.dataset_dir()}
    found = {label: str(folder) for label, folder in folders.items() if folder.is_dir()}
    if callback.push_to_hub:
        from huggingface_hub import constants

        for label, repo_id, prefix in (
            ("Model on the Hub", callback.model_repo_id, ""),
            ("Synthetic data on the Hub", callback.dataset_repo_id, "datasets/"),
        ):
            if repo_id:
                found[label] = f"{constants.ENDPOINT}/{prefix}{repo_id}"
    return found

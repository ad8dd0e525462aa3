"""Per-cycle callbacks: what runs after the trainer has saved a cycle (Hub publishing and TensorBoard are two).

The trainer calls every callback on the main process only: `on_run_start()` once, before the first cycle (of a new
or resumed run), and `on_cycle_end(result, cycle_dir, history)` after `output_dir/cycle-k/` and `history.json`
are written. Like a `transformers.TrainerCallback`, a callback may subclass `CycleCallback` to inherit no-op
hooks, or just define both methods. A callback that writes something may also define `outputs()`, returning
`{label: path, URL or command}`, which the end-of-run summary lists (`run_output.callback_outputs`).
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .filters.base import Filter, real_data_filter_names

if TYPE_CHECKING:
    from datasets import Dataset
    from torch import nn

    from .config import ActiveSynthesisConfig
    from .cycle import ActiveSynthesisHistory, CycleResult

logger = logging.getLogger(__name__)


@runtime_checkable
class CycleCallback(Protocol):
    """Called by [`ActiveSynthesisTrainer.run_cycles`] around every cycle, on the main process.

    [`hub.HubPublisher`] is one: it retries pending pushes when a run starts and publishes every saved cycle.
    """

    def on_run_start(self) -> None:
        """Called once when `run_cycles` starts, after the output directory has been checked."""

    def on_cycle_end(self, result: CycleResult, cycle_dir: Path, history: ActiveSynthesisHistory) -> None:
        """Called after cycle `result.cycle` is saved.

        Args:
            result ([`CycleResult`]): What the cycle did and measured.
            cycle_dir (`Path`): The complete cycle directory `output_dir/cycle-k/` (`checkpoint/`, `synthetic/`,
                `cycle.json`).
            history ([`ActiveSynthesisHistory`]): Every cycle so far, this one included.
        """


TENSORBOARD_DIR = Path("runs") / "cycles"
"""Where [`TensorBoardCycleCallback`] writes by default, under `output_dir` (next to the Trainer's own
`runs/<date>_<host>/`, so `tensorboard --logdir output_dir/runs` shows both)."""


def _numbers(prefix: str, values: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """`(tag, value)` for every finite number in `values`, nested mappings as `prefix/key/...` (lists skipped)."""
    for key, value in values.items():
        tag = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            yield from _numbers(tag, value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            yield tag, float(value)


def cycle_scalars(result: CycleResult) -> dict[str, float]:
    """The numbers of one cycle as TensorBoard tags: `validation/<metric>`, `synthetic/accepted` (and `total`,
    `candidates`, `targets`), `uncertainty_before/<score>` and `uncertainty_after/<score>` (on the cycle's targets),
    `heldout_uncertainty/<score>`, `label_audit/...` (e.g. `label_audit/oracle_label_agreement`), `privacy/...` (e.g.
    `privacy/share_closer_than_heldout_p5`), `seconds/<stage>` and `memory/peak_mb`."""
    counts = {
        "accepted": result.num_accepted,
        "total": result.num_synthetic_total,
        "candidates": result.candidates_generated,
        "targets": result.num_targets,
    }
    groups = {
        "validation": {key.removeprefix("eval_"): value for key, value in result.eval_metrics.items()},
        "synthetic": counts,
        "uncertainty_before": result.uncertainty_before,
        "uncertainty_after": result.uncertainty_after,
        "heldout_uncertainty": result.heldout_uncertainty,
        "label_audit": result.label_audit,
        "privacy": result.privacy_audit,
        "seconds": result.stage_seconds,
        "memory": {"peak_mb": result.peak_memory_mb},
    }
    return {tag: value for group, values in groups.items() for tag, value in _numbers(group, values)}


class TensorBoardCycleCallback(CycleCallback):
    """Logs one TensorBoard step per cycle (step = cycle number) with its [`cycle_scalars`].

    Built by the trainer when `args.report_to` includes `"tensorboard"` (which also makes the Trainer log each
    training run). A resumed run continues the same steps. Each cycle is written and closed at once, so nothing is
    left open between cycles.

    Args:
        log_dir (`str` or `Path`): The event-file folder (the default callbacks use `output_dir/runs/cycles`).
    """

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter  # fails here, not after cycle 0, without tensorboard

        self._writer_class = SummaryWriter
        self.log_dir = Path(log_dir)

    def on_cycle_end(self, result: CycleResult, cycle_dir: Path, history: ActiveSynthesisHistory) -> None:
        writer = self._writer_class(log_dir=str(self.log_dir))
        try:
            for tag, value in cycle_scalars(result).items():
                writer.add_scalar(tag, value, global_step=result.cycle)
        finally:
            writer.close()

    def outputs(self) -> dict[str, str]:
        """What the end-of-run summary lists: the command that shows the logs."""
        return {"TensorBoard": f"tensorboard --logdir {shlex.quote(str(self.log_dir.parent))}"}


def default_cycle_callbacks(
    args: ActiveSynthesisConfig,
    model: nn.Module,
    filters: Sequence[Filter] = (),
    preprocess: Callable[..., Any] | None = None,
    real_dataset: Dataset | None = None,
    heldout_dataset: Dataset | None = None,
) -> list[CycleCallback]:
    """The trainer's callbacks when none are given, in this order: a [`privacy.PrivacyAuditCallback`] when
    `args.privacy_audit` and the run synthesizes (it needs `real_dataset` and `heldout_dataset`), a
    [`hub.HubPublisher`] built from `args` when `args.publish_cycles` or `args.push_cycles_to_hub` (after the audit,
    so its card and publishing gate see it), and a [`TensorBoardCycleCallback`] writing to `output_dir/runs/cycles`
    when `args.report_to` includes `"tensorboard"`.

    Args:
        args ([`ActiveSynthesisConfig`]): The run's settings (output directory, repositories, token, metric).
        model (`nn.Module`): The (unwrapped) model being trained; its checkpoint name goes into the cards.
        filters (sequence of [`Filter`]): The run's filters; those with `checks_real_data` are the ones the dataset
            card's privacy section reports.
        preprocess (`Callable`, *optional*): The run's preprocessing function; when importable by its path, the
            model card's loading code uses it (models saved without a processor, such as the digits classifier).
        real_dataset (`datasets.Dataset`, *optional*): The real training rows the privacy audit protects.
        heldout_dataset (`datasets.Dataset`, *optional*): Real rows never trained on (the validation split), the
            audit's reference; without it there is no audit (a warning says so).
    """
    callbacks: list[CycleCallback] = []
    if args.privacy_audit and args.synthesizes and real_dataset is not None:
        from .privacy.distance import audited_modality

        if heldout_dataset is None:
            logger.warning(
                "No privacy audit: it compares synthetic samples with held-out real rows, and the trainer has no "
                "`eval_dataset`. Pass one, or set `privacy_audit=False` to silence this."
            )
        elif audited_modality(real_dataset.features, args.input_column) is None:
            logger.warning(
                "No privacy audit: it measures images (`datasets.Image`) and texts (string `Value`), and column %r is "
                "%r. Set `privacy_audit=False` to silence this (a publishing gate, if set, then refuses to push).",
                args.input_column,
                real_dataset.features.get(args.input_column),
            )
        else:
            from .privacy import PrivacyAuditCallback, near_copy_rule

            audit = PrivacyAuditCallback(
                real_dataset, heldout_dataset, args.input_column, args.label_column, near_copy_rule(filters)
            )
            callbacks.append(audit)
    if args.publish_cycles or args.push_cycles_to_hub:
        from .card_usage import preprocessing_path
        from .hub import HubPublisher  # the Hub stack is only imported by runs that publish

        base_model = getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
        run_settings = {"base_model": base_model, "command": " ".join(sys.argv)}
        if (path := preprocessing_path(preprocess)) is not None:
            run_settings["preprocessing"] = path
        callbacks.append(
            HubPublisher.from_training_args(
                args, run_settings=run_settings, real_data_filters=real_data_filter_names(filters)
            )
        )
    if "tensorboard" in (args.report_to or []):
        callbacks.append(TensorBoardCycleCallback(Path(args.output_dir) / TENSORBOARD_DIR))
    return callbacks

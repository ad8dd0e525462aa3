"""Per-cycle callbacks: what runs after the trainer has saved a cycle (Hub publishing is one).

The trainer calls every callback on the main process only: `on_run_start()` once, before the first cycle (of a new
or resumed run), and `on_cycle_end(result, cycle_dir, history)` after `output_dir/cycle-k/` and `history.json`
are written. Like a `transformers.TrainerCallback`, a callback may subclass `CycleCallback` to inherit no-op
hooks, or just define both methods.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .filters.base import Filter, real_data_filter_names

if TYPE_CHECKING:
    from torch import nn

    from .config import ActiveSynthesisConfig
    from .cycle import ActiveSynthesisHistory, CycleResult


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


def default_cycle_callbacks(
    args: ActiveSynthesisConfig, model: nn.Module, filters: Sequence[Filter] = ()
) -> list[CycleCallback]:
    """The trainer's callbacks when none are given: a [`hub.HubPublisher`] built from `args` when
    `args.publish_cycles` or `args.push_cycles_to_hub`, else none.

    Args:
        args ([`ActiveSynthesisConfig`]): The run's settings (output directory, repositories, token, metric).
        model (`nn.Module`): The (unwrapped) model being trained; its checkpoint name goes into the cards.
        filters (sequence of [`Filter`]): The run's filters; those with `checks_real_data` are the ones the dataset
            card's privacy section reports.
    """
    if not (args.publish_cycles or args.push_cycles_to_hub):
        return []
    from .hub import HubPublisher  # the Hub stack is only imported by runs that publish

    base_model = getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
    run_settings = {"base_model": base_model, "command": " ".join(sys.argv)}
    return [
        HubPublisher.from_training_args(
            args, run_settings=run_settings, real_data_filters=real_data_filter_names(filters)
        )
    ]

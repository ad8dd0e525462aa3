"""Wall time per stage and peak memory, recorded in every `CycleResult` (not used in any decision)."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import torch


class StageListener(Protocol):
    """Told when each timed stage starts and ends (the run's progress bar is one: `run_output.RunProgress`)."""

    def stage_started(self, stage: str) -> None: ...

    def stage_finished(self, stage: str, seconds: float) -> None: ...


class StageTimer:
    """Accumulates wall time per named stage: `with timer("train"): ...`; totals in `seconds`.

    Args:
        listener ([`StageListener`], *optional*): Told when each stage starts and ends.
    """

    def __init__(self, listener: StageListener | None = None):
        self.seconds: dict[str, float] = {}
        self.listener = listener

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.listener is not None:
            self.listener.stage_started(stage)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
        # Only a stage that completed counts as done (an error propagates past this line).
        if self.listener is not None:
            self.listener.stage_finished(stage, elapsed)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS), plus GPU peak."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    if torch.cuda.is_available():
        peak_mb += torch.cuda.max_memory_allocated() / (1024 * 1024)
    return peak_mb

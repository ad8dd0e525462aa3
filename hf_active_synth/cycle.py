"""Cycle bookkeeping: per-cycle results, plateau stopping, and the on-disk layout that makes runs resumable.

Layout of a run (`output_dir`):

```
cycle-0/            real-only training (no synthetic data)
cycle-k/
  checkpoint/       Trainer.save_model output (weights + tokenizer / image processor)
  synthetic/        Dataset.save_to_disk of the samples accepted in cycle k
  pool_logits.pt    member logits [N, C, K] on the real pool after cycle k (targets of cycle k+1)
  cycle.json        the CycleResult
history.json        every CycleResult so far, the stop reason and the config
```

A cycle is written to `cycle-k.partial/` and renamed to `cycle-k/` only when complete, so a run killed at any point
resumes from the last complete cycle with every sample it had accepted.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, concatenate_datasets, load_from_disk

CHECKPOINT_DIR = "checkpoint"
SYNTHETIC_DIR = "synthetic"
POOL_LOGITS_FILE = "pool_logits.pt"
CYCLE_FILE = "cycle.json"
HISTORY_FILE = "history.json"


@dataclass
class CycleResult:
    """What one cycle did and measured. Cycle 0 is the real-only model (no targets, no synthetic data).

    Args:
        cycle (`int`): Cycle number.
        eval_metrics (`dict[str, float]`): Validation metrics after this cycle's training.
        uncertainty_before (`dict[str, float]`): Mean entropy / variance / BALD on this cycle's targets, before.
        uncertainty_after (`dict[str, float]`): The same on the same targets after retraining.
        num_targets (`int`): Real examples targeted (an image with a hard negative counts once).
        candidates_generated (`int`): Rows the generator returned.
        filter_counts (`dict[str, int]`): Rows remaining after each filter, in order.
        num_accepted (`int`): Synthetic samples added to the training data this cycle.
        num_synthetic_total (`int`): Synthetic samples in the training data after this cycle.
        accepted_per_class (`dict[str, int]`): Accepted samples per class id.
        num_hard_negatives (`int`): Accepted samples drawn from a real example of another class (`hard_negative_share`).
        stage_seconds (`dict[str, float]`): Wall time of each stage.
        peak_memory_mb (`float`): Peak resident memory of the process so far (and of the GPU, when used).
        generator (`str`, *optional*): Name of the generator used.
        generation_stats (`dict`): The generator's `last_stats_.to_dict()` when it keeps one (the text generators:
            token counts, tokens/s, candidates/s; an endpoint adds requests/s, cached requests and retries), of the
            main process.
        heldout_uncertainty (`dict[str, float]`): Mean entropy / variance / BALD of the estimator on the real
            validation rows after this cycle (rows no model trained on, so a reduction here is not memorisation).
        label_audit (`dict`): The independent audit of this cycle's accepted samples (`auditing.CycleAuditor`):
            `oracle_label_agreement` from a classifier that neither guided nor selected, per class, the off-label
            rows, and `heldout_disagreement` (mean BALD / variance / entropy under held-out members).
        privacy_audit (`dict`): The privacy audit of this cycle's accepted samples (`privacy.PrivacyAudit` fields:
            distance to the closest real training record against held-out real rows, near-copies), with
            `cumulative`, the audit of every sample accepted so far (the dataset published after this cycle).
    """

    cycle: int
    eval_metrics: dict[str, float]
    uncertainty_before: dict[str, float] = field(default_factory=dict)
    uncertainty_after: dict[str, float] = field(default_factory=dict)
    num_targets: int = 0
    candidates_generated: int = 0
    filter_counts: dict[str, int] = field(default_factory=dict)
    num_accepted: int = 0
    num_synthetic_total: int = 0
    accepted_per_class: dict[str, int] = field(default_factory=dict)
    num_hard_negatives: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    generator: str | None = None
    generation_stats: dict[str, Any] = field(default_factory=dict)
    heldout_uncertainty: dict[str, float] = field(default_factory=dict)
    label_audit: dict[str, Any] = field(default_factory=dict)
    privacy_audit: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CycleResult:
        return cls(**data)

    def metric(self, name: str) -> float:
        """The validation metric `name` (with or without its `eval_` prefix)."""
        for key in (name, f"eval_{name}"):
            if key in self.eval_metrics:
                return float(self.eval_metrics[key])
        raise KeyError(f"Metric {name!r} not in this cycle's metrics {sorted(self.eval_metrics)}; set `cycle_metric`.")


@dataclass
class ActiveSynthesisHistory:
    """The results of every cycle of a run, why it stopped, and which cycle's model the run handed back.

    Args:
        cycles (`list[CycleResult]`): Every cycle so far, in order.
        stop_reason (`str`): Why the loop ended ("running" while it runs).
        best_validation_cycle (`int`, *optional*): The cycle with the best validation `cycle_metric`; with
            `load_best_cycle_at_end` (the default) its weights are the trainer's model when `run_cycles` returns.
        cycles_lowering_validation (`list[int]`): Cycles whose validation metric fell below the previous cycle's:
            their synthetic data (or their retraining) made the model worse on real validation data.
        loaded_cycle (`int`, *optional*): The cycle whose weights the trainer's model holds when `run_cycles`
            returns (the best one, unless `load_best_cycle_at_end=False` or its checkpoint is not on disk).
    """

    cycles: list[CycleResult] = field(default_factory=list)
    stop_reason: str = "running"
    best_validation_cycle: int | None = None
    cycles_lowering_validation: list[int] = field(default_factory=list)
    loaded_cycle: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cycles": [cycle.to_dict() for cycle in self.cycles],
            "stop_reason": self.stop_reason,
            "best_validation_cycle": self.best_validation_cycle,
            "cycles_lowering_validation": list(self.cycles_lowering_validation),
            "loaded_cycle": self.loaded_cycle,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActiveSynthesisHistory:
        return cls(
            [CycleResult.from_dict(c) for c in data["cycles"]],
            data.get("stop_reason", "running"),
            data.get("best_validation_cycle"),
            list(data.get("cycles_lowering_validation", [])),
            data.get("loaded_cycle"),
        )

    def lowering_cycles(self, metric: str) -> list[int]:
        """Cycles whose validation `metric` is lower than the previous cycle's."""
        return [
            current.cycle
            for previous, current in zip(self.cycles, self.cycles[1:])
            if current.metric(metric) < previous.metric(metric)
        ]

    def best_cycle(self, metric: str) -> int:
        """The cycle with the highest `metric` (the earliest one among ties)."""
        values = [cycle.metric(metric) for cycle in self.cycles]
        return self.cycles[max(range(len(values)), key=lambda i: (values[i], -i))].cycle


@dataclass(frozen=True)
class PlateauStopper:
    """Stops when the metric has not beaten its best by more than `min_delta` for `patience` consecutive cycles.

    Stateless: the decision is derived from the history, so a resumed run decides exactly as an uninterrupted one.
    """

    patience: int
    min_delta: float
    metric: str

    def should_stop(self, history: ActiveSynthesisHistory) -> bool:
        best = -math.inf
        cycles_without_improvement = 0
        for cycle in history.cycles:
            value = cycle.metric(self.metric)
            if value > best + self.min_delta:
                best, cycles_without_improvement = value, 0
            else:
                cycles_without_improvement += 1
        return cycles_without_improvement >= self.patience


class CycleStore:
    """Reads and writes cycles under a run's output directory (see the module docstring for the layout)."""

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)

    def cycle_dir(self, cycle: int) -> Path:
        return self.output_dir / f"cycle-{cycle}"

    def completed_cycles(self) -> list[int]:
        """Numbers of the complete cycles on disk, in order; they must run 0, 1, 2, ... without gaps."""
        if not self.output_dir.is_dir():
            return []
        found = sorted(
            int(path.name.split("-", 1)[1])
            for path in self.output_dir.glob("cycle-*")
            if path.is_dir() and path.name.split("-", 1)[1].isdigit() and (path / CYCLE_FILE).is_file()
        )
        if found != list(range(len(found))):
            raise ValueError(
                f"Cycles on disk in {self.output_dir} are not contiguous from 0: {found}. Remove the stray cycle "
                "directories or start a new `output_dir`."
            )
        return found

    def staging_dir(self, cycle: int) -> Path:
        return self.output_dir / f"cycle-{cycle}.partial"

    def begin(self, cycle: int) -> Path:
        """A fresh staging directory for `cycle`, replacing any partial one left by an interrupted run."""
        staging = self.staging_dir(cycle)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        return staging

    def commit(
        self, cycle: int, staging: Path, result: CycleResult, synthetic: Dataset | None, pool_logits: torch.Tensor
    ) -> Path:
        """Writes the cycle's data into `staging`, then publishes it atomically as `cycle-k/`."""
        if synthetic is not None and len(synthetic) > 0:
            synthetic.save_to_disk(str(staging / SYNTHETIC_DIR))
        torch.save(pool_logits.cpu(), staging / POOL_LOGITS_FILE)
        (staging / CYCLE_FILE).write_text(json.dumps(result.to_dict(), indent=2))
        final = self.cycle_dir(cycle)
        if final.exists():
            raise FileExistsError(f"{final} already exists; refusing to overwrite a completed cycle.")
        staging.rename(final)
        return final

    def write_history(self, history: ActiveSynthesisHistory, config: dict[str, Any]) -> None:
        payload = {**history.to_dict(), "config": config}
        (self.output_dir / HISTORY_FILE).write_text(json.dumps(payload, indent=2, default=str))

    def load_result(self, cycle: int) -> CycleResult:
        return CycleResult.from_dict(json.loads((self.cycle_dir(cycle) / CYCLE_FILE).read_text()))

    def has_pool_logits(self, cycle: int) -> bool:
        return (self.cycle_dir(cycle) / POOL_LOGITS_FILE).is_file()

    def load_pool_logits(self, cycle: int) -> torch.Tensor:
        return torch.load(self.cycle_dir(cycle) / POOL_LOGITS_FILE, weights_only=True)

    def load_synthetic(self, up_to_cycle: int) -> Dataset | None:
        """Every synthetic sample accepted in cycles 1..`up_to_cycle`, in cycle order."""
        parts = [
            load_from_disk(str(path))
            for cycle in range(1, up_to_cycle + 1)
            if (path := self.cycle_dir(cycle) / SYNTHETIC_DIR).is_dir()
        ]
        if not parts:
            return None
        return concatenate_datasets(parts) if len(parts) > 1 else parts[0]

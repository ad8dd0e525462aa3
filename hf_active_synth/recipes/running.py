"""Run-mode flags every recipe shares: run active synthesis once, or compare it with the baselines (`--compare`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..evaluation.methods import METHODS, PRESETS, PresetName

logger = logging.getLogger(__name__)


@dataclass
class RunModeArguments:
    """Run-mode flags shared by the recipes."""

    compare: bool = field(
        default=False,
        metadata={
            "help": "Compare active synthesis with its baselines and ablations on (seed, data split) pairs and "
            "write report.md + summary.json with paired differences."
        },
    )
    compare_preset: PresetName = field(
        default="quick",
        metadata={
            "help": "Pairs of --compare: 'quick' (2 seeds x 2 splits, for a laptop) or 'full' (5 seeds x 2 splits, "
            "for committed results). --compare_seeds / --compare_splits override its seeds / splits."
        },
    )
    compare_seeds: list[int] | None = field(
        default=None, metadata={"help": "Run seeds of --compare (default: the preset's)."}
    )
    compare_splits: list[int] | None = field(
        default=None,
        metadata={"help": "Data-split seeds of --compare, each with its own generator (default: the preset's)."},
    )
    compare_methods: list[str] = field(
        default_factory=lambda: list(METHODS),
        metadata={"help": "Methods for --compare (several processes can share one output_dir, each with a subset)."},
    )
    audit_labels: bool = field(
        default=True,
        metadata={
            "help": "Audit every cycle's accepted samples with an independent classifier fitted on real labelled "
            "data outside the test split (CycleResult.label_audit)."
        },
    )
    resume: bool = field(default=False, metadata={"help": "Continue the run in output_dir from its last cycle."})

    def comparison_pairs(self) -> tuple[list[int], list[int]]:
        """`(seeds, splits)` of `--compare`: the preset's, unless given explicitly."""
        if self.compare_preset not in PRESETS:
            raise ValueError(f"Unknown --compare_preset {self.compare_preset!r}; choose one of {list(PRESETS)}.")
        preset = PRESETS[self.compare_preset]
        seeds = list(self.compare_seeds) if self.compare_seeds is not None else list(preset.seeds)
        splits = list(self.compare_splits) if self.compare_splits is not None else list(preset.splits)
        if not seeds or not splits:
            raise ValueError("--compare needs at least one seed and one split.")
        return seeds, splits


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

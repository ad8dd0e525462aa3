"""What every recipe does once its task is built: run active synthesis once, or compare it with the baselines."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from ..config import ActiveSynthesisConfig
from ..evaluation.compare import METHODS, run_comparison

logger = logging.getLogger(__name__)


@dataclass
class RunModeArguments:
    """Run-mode flags shared by the recipes."""

    compare: bool = field(
        default=False,
        metadata={"help": "Run real-only, random-synthetic, BALD active learning and active synthesis over seeds."},
    )
    compare_seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds for --compare."})
    compare_methods: list[str] = field(
        default_factory=lambda: list(METHODS),
        metadata={"help": "Methods for --compare (several processes can share one output_dir, each with a subset)."},
    )
    resume: bool = field(default=False, metadata={"help": "Continue the run in output_dir from its last cycle."})


def run_or_compare(
    run_mode: RunModeArguments,
    config: ActiveSynthesisConfig,
    build_trainer: Callable[[ActiveSynthesisConfig], Any],
    *,
    test_dataset: Dataset,
    acquisition_pool: Dataset,
    corruptions: Mapping[str, Sequence[int]],
    label_names: Sequence[str],
) -> Any:
    """`run_cycles()` of one trainer, or (with `--compare`) `run_comparison` over methods and seeds."""
    if not run_mode.compare:
        return build_trainer(config).run_cycles(resume=run_mode.resume)
    report = run_comparison(
        build_trainer,
        config,
        config.output_dir,
        test_dataset=test_dataset,
        acquisition_pool=acquisition_pool,
        seeds=run_mode.compare_seeds,
        methods=run_mode.compare_methods,
        corruptions=corruptions,
        label_names=label_names,
    )
    logger.info("Comparison report: %s", report)
    return report


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

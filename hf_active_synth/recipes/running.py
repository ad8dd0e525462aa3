"""Run-mode flags every recipe shares (run once or `--compare`, `--resume`, `--verbose`, `--traceback`), and how a
command-line run logs and reports errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..config import check_finite_floats, dataclass_values
from ..evaluation.methods import METHODS, PRESETS, PresetName
from ..run_output import SUMMARY_LOGGER

logger = logging.getLogger(__name__)

EXPECTED_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, OSError)
"""What the library and the libraries under it raise for a wrong input, with the fix in the message: bad values and
combinations (`ValueError`), wrong kinds of objects or data (`TypeError`), and missing, existing or unreadable files
and checkpoints (`OSError`, which covers `FileNotFoundError`, `FileExistsError` and `from_pretrained`'s errors). On
the command line they print one line; anything else (a bug) keeps its traceback."""


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
        metadata={
            "help": "Methods for --compare (several processes can share one output_dir, each with a subset). Add "
            "synthetic_only_active, synthetic_only_active_full, synthetic_only_random, synthetic_only_random_full "
            "(after their sources) for the synthetic-only accuracy, privacy audit and membership-inference tables."
        },
    )
    audit_labels: bool = field(
        default=True,
        metadata={
            "help": "Audit every cycle's accepted samples with an independent classifier fitted on real labelled "
            "data outside the test split (CycleResult.label_audit)."
        },
    )
    resume: bool = field(default=False, metadata={"help": "Continue the run in output_dir from its last cycle."})
    verbose: bool = field(
        default=False,
        metadata={
            "help": "Log the library's INFO messages and the metrics of every training run (ensemble members "
            "included); by default a run shows its progress bar, warnings and the final summary."
        },
    )
    traceback: bool = field(
        default=False,
        metadata={"help": "Show the full traceback of an expected error instead of one line with the fix."},
    )

    def __post_init__(self):
        check_finite_floats(dataclass_values(self))

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


def configure_logging(verbose: bool = False) -> None:
    """Logging of a command-line run: the library's warnings and the end-of-run summary (`run_output.SUMMARY_LOGGER`);
    with `verbose`, every INFO message of the library and each training run's metrics (DEBUG) too."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hf_active_synth").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger(SUMMARY_LOGGER).setLevel(logging.INFO)


class CommandLineErrors:
    """What [`command_line_errors`] yields: set `traceback` once the parsed arguments say so."""

    def __init__(self, traceback: bool):
        self.traceback = traceback


@contextmanager
def command_line_errors(traceback: bool = False) -> Iterator[CommandLineErrors]:
    """Turns an [`EXPECTED_ERRORS`] error raised inside the block into one line, `error: <message>`, on stderr and
    exit status 2 (argparse's status for bad arguments); with `traceback` (or `errors.traceback` set inside the
    block) it propagates with its traceback.

    Args:
        traceback (`bool`, defaults to `False`): Re-raise instead (what `--traceback` asks for).
    """
    errors = CommandLineErrors(traceback)
    try:
        yield errors
    except EXPECTED_ERRORS as error:
        if errors.traceback:
            raise
        print(f"error: {error} (add --traceback for the full traceback)", file=sys.stderr)
        raise SystemExit(2) from None

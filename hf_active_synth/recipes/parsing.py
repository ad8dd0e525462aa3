"""Command-line parsing for the recipes: `HfArgumentParser` plus a `--config file.yaml` whose values the command
line overrides (the trl convention)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from ..config import accelerator_available, check_finite_floats

logger = logging.getLogger(__name__)

_TRUE_STRINGS = ("yes", "true", "t", "y", "1")  # what `HfArgumentParser` reads as True
_has_accelerator = accelerator_available  # module-level, so a test can patch it


def check_optional_probabilities(arguments: Any, *names: str) -> None:
    """Raises `ValueError` naming the flag when one of `arguments`' options `names` is set outside (0, 1)."""
    for name in names:
        value = getattr(arguments, name)
        if value is not None and not 0.0 < value < 1.0:
            raise ValueError(f"`--{name}` must be in (0, 1) or unset, got {value}.")


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file, with a clear error when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} does not exist.")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of argument names to values, got {type(values).__name__}.")
    return values


def parse_args_and_config(parser: HfArgumentParser, args: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Parses `args` (default: `sys.argv[1:]`) into the parser's dataclasses, reading `--config FILE` first.

    Values from the YAML file become defaults; anything given on the command line wins. Unknown YAML keys are an
    error naming them (a typo must not be silently ignored), and so is a NaN or infinite float option, from either.

    Call it before anything else touches Accelerate's state: see [`use_cpu_processes_without_accelerator`].
    """
    use_cpu_processes_without_accelerator()
    args = list(sys.argv[1:] if args is None else args)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, remaining = pre.parse_known_args(args)
    if known.config:
        values = read_yaml_config(known.config)
        values.pop("recipe", None)  # which recipe to run: read by the `hf-active-synth` command, not an argument
        destinations = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - destinations)
        if unknown:
            raise ValueError(f"Unknown keys in {known.config}: {unknown}. Check the spelling against `--help`.")
        parser.set_defaults(**values)
        # Required arguments supplied by the file are no longer required on the command line.
        for action in parser._actions:
            if action.dest in values:
                action.required = False
    parser.add_argument("--config", default=None, help="A YAML file of arguments; the command line overrides it.")
    namespace = parser.parse_args(remaining)
    delattr(namespace, "config")
    check_finite_floats(vars(namespace), option_prefix="--")
    outputs = []
    for dtype in parser.dataclass_types:
        keys = {field.name for field in dataclasses.fields(dtype) if field.init}
        outputs.append(dtype(**{k: v for k, v in vars(namespace).items() if k in keys}))
    return tuple(outputs)


def traceback_requested(args: Sequence[str]) -> bool:
    """Whether `args` hold `--traceback` (bare or with a true value), read before anything can fail.

    An invalid value counts as no: the full parser reports it.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--traceback", nargs="?", const="true", default="false")
    known, _ = pre.parse_known_args(list(args))
    return known.traceback.lower() in _TRUE_STRINGS


def use_cpu_processes_without_accelerator() -> bool:
    """Makes a multi-process launch on a machine without accelerators one CPU process group, not N separate runs.

    `accelerate launch --multi_gpu --num_processes N` (or a config with `distributed_type: MULTI_GPU`, like
    `recipes/accelerate_configs/cpu_2proc.yaml`) starts N processes through torchrun. On a machine with no GPU,
    Accelerate only builds a (gloo) process group when it is told to use the CPU; otherwise every process believes
    it is alone and all of them would run the whole loop and write the same `output_dir`. So when this process is
    one of several (`WORLD_SIZE > 1`) and no accelerator is visible, this sets `ACCELERATE_USE_CPU=true`, which
    `TrainingArguments` reads when it sets up its devices. (`accelerate launch --cpu --num_processes N` is not such a
    launch: without `--mpirun_hostfile`, Accelerate 1.x starts a single process for it.)

    Returns:
        `bool`: Whether the variable was set here.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or _has_accelerator() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"):
        return False
    os.environ["ACCELERATE_USE_CPU"] = "true"
    logger.info("%d processes and no accelerator: running them as one CPU (gloo) process group.", world_size)
    return True

"""What the loop does across processes: sharded scoring, merged generation, one selection broadcast to all.

Every helper is a no-op wrapper in a single-process run (no collective is called), so results there do not depend
on Accelerate's distributed set-up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object
from datasets import Dataset, concatenate_datasets

if TYPE_CHECKING:
    from .generators.base import GenerationRequest, Generator, SynthesisTarget

logger = logging.getLogger(__name__)
T = TypeVar("T")


def check_process_group(accelerator: Accelerator) -> None:
    """Refuses to run when this process was launched as one of several but Accelerate set up fewer.

    That happens, for instance, with `accelerate launch --multi_gpu` (torchrun) on a machine without GPUs and
    without `use_cpu`: each process then runs the whole loop alone and all of them write the same `output_dir`.

    Raises:
        `ValueError`: `WORLD_SIZE` and Accelerate's number of processes disagree.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and accelerator.num_processes != world_size:
        raise ValueError(
            f"This process was launched as one of {world_size} (WORLD_SIZE) but Accelerate set up "
            f"{accelerator.num_processes} process(es), so every process would run and save the whole loop. "
            "On a machine without GPUs pass `--use_cpu true` (or set ACCELERATE_USE_CPU=1) so the processes form "
            "one CPU process group; see recipes/accelerate_configs/cpu_2proc.yaml."
        )


def score_sharded(
    accelerator: Accelerator, dataset: Dataset, score_rows: Callable[[Dataset], torch.Tensor]
) -> torch.Tensor:
    """Scores `dataset` split by contiguous rows across processes; every process gets all scores, in row order.

    Args:
        accelerator (`accelerate.Accelerator`): The trainer's accelerator.
        dataset (`datasets.Dataset`): The rows to score.
        score_rows (`Callable[[Dataset], torch.Tensor]`): Scores a share of the rows (preprocessing included, so
            each process preprocesses only its own share); returns a tensor whose first axis is the rows.
    """
    indices = list(range(len(dataset)))
    with accelerator.split_between_processes(indices) as shard:
        local = None
        if shard:
            rows = dataset if len(shard) == len(dataset) else dataset.select(shard)
            local = score_rows(rows)
    if accelerator.num_processes == 1:
        return local
    shards = [part for part in gather_object([local]) if part is not None]
    return torch.cat(shards, dim=0)


def gather_datasets(accelerator: Accelerator, local: Dataset | None) -> Dataset | None:
    """Every process's `local` rows concatenated in process order (empty and missing parts skipped).

    Returns `local` itself in a single-process run, or when every part is empty.
    """
    if accelerator.num_processes == 1:
        return local
    parts = [part for part in gather_object([local]) if part is not None and len(part) > 0]
    return concatenate_datasets(parts) if parts else local


def generate_sharded(
    accelerator: Accelerator,
    generator: Generator,
    targets: list[SynthesisTarget],
    request_for: Callable[[list[SynthesisTarget]], GenerationRequest],
) -> Dataset | None:
    """Generation split by target across processes; every process gets the merged candidates (see
    [`gather_datasets`]), in target order.

    Args:
        accelerator (`accelerate.Accelerator`): The trainer's accelerator.
        generator ([`Generator`]): Called once per process that has targets.
        targets (`list[SynthesisTarget]`): Every target of the cycle.
        request_for (`Callable`): Builds this process's `GenerationRequest` for its share of the targets.
    """
    with accelerator.split_between_processes(targets) as local_targets:
        request = request_for(list(local_targets))
        local = generator.generate(request) if local_targets else None
        logger.info(
            "process %d/%d generated %d candidates for %d of %d targets",
            accelerator.process_index,
            accelerator.num_processes,
            0 if local is None else len(local),
            len(local_targets),
            len(targets),
        )
    return gather_datasets(accelerator, local)


def broadcast_from_main(accelerator: Accelerator, value: T | None) -> T:
    """The main process's `value` on every process (the others pass `None`); picklable values only."""
    payload = [value]
    if accelerator.num_processes > 1:
        broadcast_object_list(payload, from_process=0)
    return payload[0]


def process_seed(seed: int, process_index: int) -> int:
    """This process's seed for a sharded random stage: `seed` itself on process 0 (a single-process run is unaffected)
    and one derived from (`seed`, `process_index`) on the others, so shards never share a random stream (a generator
    that seeds per batch would otherwise replay the same noise on every process) and the merged result is
    deterministic for a given number of processes."""
    if process_index == 0:
        return seed
    return int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])

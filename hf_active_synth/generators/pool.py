"""`PoolAcquisitionGenerator`: classic (BALD) active learning expressed as a generator over a real unlabeled pool.

It "proposes" every not-yet-acquired row of a held-back real split as a candidate, with its true label (the oracle
revealing labels). The loop then scores the candidates with the ensemble and keeps the highest-scoring ones, which is
exactly pool-based active learning with the configured acquisition function (BALD for the proposal's baseline). So
the baseline runs through the same code path, budget and estimator as active synthesis.
"""

from __future__ import annotations

from datasets import Dataset

from ..columns import POOL_INDEX_COLUMN, build_candidates
from .base import GenerationRequest

__all__ = ["NO_TARGET", "POOL_INDEX_COLUMN", "PoolAcquisitionGenerator"]

NO_TARGET = -1


class PoolAcquisitionGenerator:
    """Offers the rows of a labelled real pool as candidates, so the loop acquires the most uncertain ones.

    Args:
        pool (`datasets.Dataset`): Held-back real examples with their labels (hidden from training until acquired).
        name (`str`, defaults to `"real-pool-acquisition"`): Name recorded in the provenance columns.

    Candidates are not tied to a target (`synth_target_id = -1`), so the loop's selection takes the top-scoring
    rows of the whole pool. Use it with `synthetic_loss_weight=1.0` (acquired rows are real) and without the label
    agreement filter (true labels are never wrong). Each row is offered once: rows offered in an earlier cycle and
    accepted are removed by the exact-duplicate filter.
    """

    def __init__(self, pool: Dataset, name: str = "real-pool-acquisition"):
        self.pool = pool
        self.name = name

    def generate(self, request: GenerationRequest) -> Dataset:
        missing = {request.input_column, request.label_column} - set(self.pool.column_names)
        if missing:
            raise ValueError(f"The acquisition pool lacks the column(s) {sorted(missing)}.")
        if len(self.pool) == 0:
            raise ValueError("The acquisition pool is empty: there is nothing left to acquire.")
        rows = self.pool.select_columns([request.input_column, request.label_column])
        size = len(rows)
        return build_candidates(
            rows,
            cycle=request.cycle,
            generator=self.name,
            target_ids=[NO_TARGET] * size,
            target_labels=list(rows[request.label_column]),
            seed_example_ids=[[] for _ in range(size)],
            extra={POOL_INDEX_COLUMN: list(range(size))},
        )

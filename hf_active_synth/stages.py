"""The stages of one cycle, as [`ActiveSynthesisTrainer`] runs them: each is a few calls into the module that does
the work (`targeting`, `candidates`, `distributed`, `cycle`) with the trainer's settings and per-stage seeds.

`ActiveSynthesisTrainer.run_cycles` wires them in order; this mixin only exists so that `trainer.py` holds what is
the Trainer (construction, the weighted loss, member training, scoring) and that wiring.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import torch
from datasets import Dataset, concatenate_datasets
from transformers import Trainer
from transformers.trainer_utils import set_seed

from .candidates import CandidateSettings, filter_and_select, score_candidates, validate_candidates
from .crossfit import crossfit_member_logits
from .cycle import CHECKPOINT_DIR, ActiveSynthesisHistory, CycleResult, CycleStore
from .data import Preprocess, label_names, merge_model_inputs, to_model_inputs
from .distributed import broadcast_from_main, generate_sharded, process_seed
from .generators.base import GenerationRequest, Generator, SynthesisTarget
from .targeting import TargetingSettings, choose_targets, fold_assignment, seed_examples, target_quotas
from .uncertainty.registry import make_estimator
from .uncertainty.subset import MemberSubset, split_members

if TYPE_CHECKING:
    from .callbacks import CycleCallback
    from .config import ActiveSynthesisConfig
    from .filters import Filter
    from .uncertainty import UncertaintyEstimator

    _TrainerBase = Trainer
else:
    _TrainerBase = object

logger = logging.getLogger("hf_active_synth.trainer")  # the loop logs under one name


class NoCandidateSurvived(ValueError):
    """A cycle's filters rejected every candidate: the loop stops there, as at a plateau (nothing to train on)."""


# Offsets that give every stage of every cycle its own seed, so a resumed run replays the same random streams.
_STAGE_SEED_OFFSETS = {"train": 0, "estimate": 1, "generate": 2, "select": 3, "audit": 4, "crossfit": 5}
# `_model_preparation_time`: the Trainer adds it to the first evaluation after wrapping the model (e.g. in DDP).
_TIMING_SUFFIXES = ("_runtime", "_per_second", "_preparation_time")


class CycleStagesMixin(_TrainerBase):
    """Mixed into [`ActiveSynthesisTrainer`] (a `transformers.Trainer`), whose attributes below it reads."""

    args: ActiveSynthesisConfig
    num_labels: int
    generator: Generator | None
    estimator: UncertaintyEstimator
    filters: list[Filter]
    preprocess: Preprocess
    real_train_dataset: Dataset
    pool_dataset: Dataset
    synthetic_dataset: Dataset | None
    cycle_callbacks: list[CycleCallback]
    _real_train_inputs: Dataset
    predict_member_logits: Callable[[Dataset], torch.Tensor]

    def _stage_seed(self, cycle: int, stage: str) -> int:
        return self.args.seed + 1000 * cycle + _STAGE_SEED_OFFSETS[stage]

    @property
    def _generator_name(self) -> str:
        return getattr(self.generator, "name", type(self.generator).__name__)

    def _train_stage(self, cycle: int) -> None:
        # Fresh optimizer and schedule every cycle (the Trainer would otherwise reuse a finished schedule), and a
        # per-cycle seed for the data order: together they make every cycle replayable from its predecessor.
        self.optimizer, self.lr_scheduler = None, None
        set_seed(self._stage_seed(cycle, "train"))
        self.train()

    def _evaluate_stage(self) -> dict[str, float]:
        if self.eval_dataset is None:
            raise ValueError(
                "`run_cycles` needs `eval_dataset` (real validation examples) to measure each cycle and detect "
                "plateaus."
            )
        # Timings vary run to run; they go to `stage_seconds`, not into the metrics that decide plateaus.
        return {
            key: float(value)
            for key, value in self.evaluate().items()
            if isinstance(value, (int, float)) and key != "epoch" and not key.endswith(_TIMING_SUFFIXES)
        }

    def _estimate_stage(self, cycle: int) -> torch.Tensor:
        set_seed(self._stage_seed(cycle, "estimate"))
        self.estimator.fit(self)
        return self._target_logits(cycle)

    def _target_logits(self, cycle: int) -> torch.Tensor:
        """Member logits `[N, C, K]` of the rows targets are chosen from: the pool scored by the loop's estimator,
        or with `target_source="crossfit"` every labelled row scored by fold members that never trained on it."""
        if self.args.target_source != "crossfit":
            return self.predict_member_logits(self.pool_dataset)
        set_seed(self._stage_seed(cycle, "crossfit"))
        args = self.args

        def make_fold_estimator(seed: int) -> UncertaintyEstimator:
            return make_estimator(args.uncertainty_method, args.ensemble_size, seed)

        return crossfit_member_logits(self, make_fold_estimator, args.crossfit_folds, seed=args.seed)

    @contextmanager
    def restrict_real_rows(self, rows: Sequence[int]) -> Iterator[None]:
        """Inside the block, `train_dataset` (what `train_member` trains on) holds only the real training rows
        `rows` and every accepted synthetic row; it is restored on exit. Cross-fitting's hook.

        Real rows come first in `train_dataset` (see `merge_model_inputs`), so this is a `select`, not a re-encoding.
        """
        full, num_real = self.train_dataset, len(self._real_train_inputs)
        self.train_dataset = full.select([*rows, *range(num_real, len(full))])
        try:
            yield
        finally:
            self.train_dataset = full

    def _check_target_source(self) -> None:
        """Fails before any training when `target_source` does not fit the datasets the trainer was given."""
        source, own_pool = self.args.target_source, self.pool_dataset is self.real_train_dataset
        if not self.args.synthesizes or source == "train":
            return
        if source == "pool" and own_pool:
            raise ValueError(
                "`target_source='pool'` targets an unlabelled pool: pass `pool_dataset=` (real rows outside "
                "train_dataset; their labels are never read), or use target_source='train' or 'crossfit'."
            )
        if source == "pseudo_labelled_pool" and own_pool:
            raise ValueError(
                "`target_source='pseudo_labelled_pool'` targets pool rows labelled outside the loop: pass them as "
                "`pool_dataset=` (the image recipe does, from label spreading), or use target_source='pool'."
            )
        if source == "crossfit" and not own_pool:
            raise ValueError(
                "`target_source='crossfit'` targets the labelled training rows, so `pool_dataset` would go unused: "
                "drop it, or use target_source='pool' to target the pool."
            )
        if source == "crossfit":  # raises, naming the fix, when the folds do not fit the labelled rows
            fold_assignment(self.real_train_dataset[self.args.label_column], self.args.crossfit_folds, self.args.seed)

    def _choose_targets(self, pool_logits: torch.Tensor, cycle: int) -> list[SynthesisTarget]:
        """The most uncertain real examples of each class (random ones for `target_strategy="random"`, and in the
        first `random_target_cycles` cycles), among the rows `target_source` names (see `targeting.choose_targets`)."""
        settings = TargetingSettings.from_config(self.args, self.num_labels)
        if cycle <= self.args.random_target_cycles:
            settings = dataclasses.replace(settings, target_strategy="random")
        return choose_targets(pool_logits, self.pool_dataset, settings, seed=self._stage_seed(cycle, "select"))

    def _generate_stage(self, targets: list[SynthesisTarget], cycle: int) -> Dataset:
        """Generation sharded by target across processes; every process gets the merged, validated candidates.

        Every request carries the targets' examples as seed examples (random ones for random targets), so prompts
        and img2img anchoring are built the same way for every method; the estimator goes along, for gradient
        guidance, only when `guidance` is on (with `judge_members`, a view of its GUIDE members only).
        """

        def request_for(local_targets: list[SynthesisTarget]) -> GenerationRequest:
            return GenerationRequest(
                targets=local_targets,
                cycle=cycle,
                seed=process_seed(self._stage_seed(cycle, "generate"), self.accelerator.process_index),
                candidates_per_sample=self.args.candidates_per_sample,
                input_column=self.args.input_column,
                label_column=self.args.label_column,
                label_names=label_names(self.real_train_dataset, self.args.label_column, self.num_labels),
                seed_examples=seed_examples(targets),
                estimator=self._member_view("guide") if self.args.guidance else None,
            )

        candidates = generate_sharded(self.accelerator, self.generator, targets, request_for)
        validate_candidates(candidates, targets, self._generator_name, self._candidate_settings())
        return candidates

    def _candidate_settings(self) -> CandidateSettings:
        return CandidateSettings.from_config(self.args, self.num_labels)

    def _member_view(self, side: Literal["guide", "judge"]) -> UncertaintyEstimator:
        """The estimator, or with `judge_members` the view of its GUIDE or JUDGE members (see `split_members`)."""
        if not self.args.judge_members:
            return self.estimator
        guide, judge = split_members(self.estimator.num_members, self.args.judge_members)
        return MemberSubset(self.estimator, guide if side == "guide" else judge)

    def _filter_and_select(
        self, candidates: Dataset, targets: list[SynthesisTarget], cycle: int
    ) -> tuple[Dataset, dict[str, int]]:
        """Scores candidates (every process its share; with `judge_members`, by the JUDGE members only, so the
        score columns, the label filters and selection never see the members that guided), then filters and selects
        on the main process only and broadcasts the accepted samples and the per-filter counts."""
        settings, seed = self._candidate_settings(), self._stage_seed(cycle, "select")
        logits = self.predict_member_logits(candidates, self._member_view("judge"))
        scored = score_candidates(candidates, logits, targets, settings, seed)
        payload = None
        if self.is_world_process_zero():
            quotas, strategy = target_quotas(targets), settings.selection_strategy
            context = settings.filter_context(self.real_train_dataset, self.synthetic_dataset, sum(quotas.values()))
            payload = filter_and_select(
                scored, self.filters, context, quotas, strategy, seed, band=settings.selection_band
            )
        accepted, counts = broadcast_from_main(self.accelerator, payload)
        if len(accepted) == 0:
            raise NoCandidateSurvived(
                f"no candidate of cycle {cycle} survived the filters ({counts}); loosen the filter thresholds or "
                "raise `candidates_per_sample` (the completed cycles are kept)"
            )
        return accepted, counts

    def _add_synthetic(self, accepted: Dataset) -> None:
        """Appends a cycle's accepted samples; only the new rows are encoded (earlier ones already are)."""
        if self.synthetic_dataset is None:
            self.synthetic_dataset = accepted
        else:
            self.synthetic_dataset = concatenate_datasets([self.synthetic_dataset, accepted])
        self.train_dataset = merge_model_inputs(self.train_dataset, self._encode_synthetic(accepted))

    def _encode_synthetic(self, synthetic: Dataset | None) -> Dataset | None:
        if synthetic is None or len(synthetic) == 0:
            return None
        return to_model_inputs(synthetic, self.preprocess, label_column=self.args.label_column, is_synthetic=True)

    def _finish_cycle(
        self,
        store: CycleStore,
        history: ActiveSynthesisHistory,
        result: CycleResult,
        accepted: Dataset | None,
        pool_logits: torch.Tensor,
    ) -> None:
        history.cycles.append(result)
        staging = store.staging_dir(result.cycle)
        if self.is_world_process_zero():
            store.begin(result.cycle)
        self.accelerator.wait_for_everyone()
        # Every process calls save_model (sharded set-ups gather weights collectively); only the main one writes.
        with self.args.without_hub_token():
            self.save_model(str(staging / CHECKPOINT_DIR), _internal_call=True)
        if self.is_world_process_zero():
            cycle_dir = store.commit(result.cycle, staging, result, accepted, pool_logits)
            store.write_history(history, self._public_config())
            for callback in self.cycle_callbacks:
                callback.on_cycle_end(result, cycle_dir, history)
        self.accelerator.wait_for_everyone()
        logger.info(
            "cycle %d: %s=%.4f, accepted %d synthetic (total %d), stages %s",
            result.cycle,
            self.args.cycle_metric,
            result.metric(self.args.cycle_metric),
            result.num_accepted,
            result.num_synthetic_total,
            {k: round(v, 1) for k, v in result.stage_seconds.items()},
        )

    def _restore(self, store: CycleStore, last: int, history: ActiveSynthesisHistory) -> torch.Tensor:
        """Loads the last complete cycle: weights, every accepted sample, history, and the fitted estimator."""
        for cycle in range(last + 1):
            history.cycles.append(store.load_result(cycle))
        self._load_from_checkpoint(str(store.cycle_dir(last) / CHECKPOINT_DIR))
        self.synthetic_dataset = store.load_synthetic(last)
        # Real ∪ every accepted sample, encoded from scratch.
        self.train_dataset = merge_model_inputs(
            self._real_train_inputs, self._encode_synthetic(self.synthetic_dataset)
        )
        if self.args.synthesizes:
            # The estimator was fitted at the end of cycle `last` with this seed; refitting replays it exactly.
            set_seed(self._stage_seed(last, "estimate"))
            self.estimator.fit(self)
        logger.info("Resumed from %s (cycle %d).", store.cycle_dir(last), last)
        if store.has_pool_logits(last):
            return store.load_pool_logits(last)
        if not self.args.synthesizes:
            return torch.empty(0)
        # A run pulled from the Hub has no pool scores: score the pool with the refitted estimator (or cross-fit).
        return self._target_logits(last)

    def _hand_back_best_cycle(self, store: CycleStore, history: ActiveSynthesisHistory) -> None:
        """Records the best validation cycle and the cycles that lowered validation, and (with
        `load_best_cycle_at_end`) loads the best cycle's weights, as `load_best_model_at_end` does for epochs."""
        metric = self.args.cycle_metric
        history.best_validation_cycle = best = history.best_cycle(metric)
        history.cycles_lowering_validation = history.lowering_cycles(metric)
        last = history.loaded_cycle = history.cycles[-1].cycle
        if history.cycles_lowering_validation:
            logger.warning(
                "Validation %s fell in cycle(s) %s: the synthetic data of those cycles made the model worse on real "
                "validation data.",
                metric,
                history.cycles_lowering_validation,
            )
        if not self.args.load_best_cycle_at_end or best == last:
            return
        checkpoint = store.cycle_dir(best) / CHECKPOINT_DIR
        if not checkpoint.is_dir():
            # A run pulled from the Hub holds only its last cycle's checkpoint.
            logger.warning(
                "The best validation cycle (%d) has no checkpoint in %s: keeping the last cycle's (%d) weights.",
                best,
                store.output_dir,
                last,
            )
            return
        self._load_from_checkpoint(str(checkpoint))
        history.loaded_cycle = best
        logger.info(
            "Loaded the weights of cycle %d, the best by validation %s (%.4f; the last cycle, %d, has %.4f).",
            best,
            metric,
            history.cycles[best].metric(metric),
            last,
            history.cycles[-1].metric(metric),
        )

    def _public_config(self) -> dict[str, Any]:
        # `to_dict()` redacts `hub_token` and other secrets.
        return self.args.to_dict()

"""`ActiveSynthesisTrainer`: a `transformers.Trainer` that runs the active-synthesis loop.

The trainer owns the weighted loss, member training, scoring, and `run_cycles`, which wires the loop's stages
(`stages.CycleStagesMixin`); each stage's logic lives in its own module: `targeting` (targets and quotas),
`candidates` (validate, score, filter, select), `distributed` (sharding and broadcasts), `cycle` (the on-disk store)
and `callbacks` (what runs after each saved cycle). `checks` validates what users pass in; `run_output` is what a run
shows (its progress bar and closing summary).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase, Trainer, default_data_collator
from transformers.trainer_utils import set_seed

from .acquisition import uncertainty_summary
from .auditing import CycleAuditor
from .callbacks import CycleCallback, default_cycle_callbacks
from .checks import check_generator, check_model_returns_logits, check_trainer_inputs
from .columns import TARGET_ID_COLUMN
from .config import ActiveSynthesisConfig
from .cycle import ActiveSynthesisHistory, CycleResult, CycleStore, PlateauStopper
from .data import IS_SYNTHETIC_COLUMN, LABELS_COLUMN, Preprocess, make_preprocess, to_model_inputs
from .distributed import check_process_group, score_sharded
from .evaluation.audit import OracleAudit
from .filters import ExactDuplicateFilter, Filter, LabelAgreementFilter
from .generators.base import Generator
from .modeling import extract_logits
from .profiling import peak_memory_mb
from .run_output import RunProgress, library_progress_bars_disabled, log_training_at_debug
from .stages import CycleStagesMixin, NoCandidateSurvived
from .uncertainty import UncertaintyEstimator, make_estimator

logger = logging.getLogger(__name__)


class SyntheticWeightedLossMixin:
    """The weighted cross-entropy L = CE(real) + λ·CE(synth), for any model that returns logits.

    In a batch of B examples, each example's cross-entropy is weighted by 1 (real) or λ (synthetic) and the weighted
    sum is divided by B:

        loss = (Σ_{i real} CE_i + λ · Σ_{j synth} CE_j) / B

    So the gradient of a synthetic example is exactly λ times that of a real example with the same loss, whatever the
    mix of the batch, and over an epoch the loss averages (Σ_real CE + λ·Σ_synth CE) / |real ∪ synth|. The Trainer
    divides this per-batch mean by the gradient-accumulation steps (`loss_is_scaled_for_ga = False`).
    """

    synthetic_loss_weight: float

    def _use_weighted_loss(self, synthetic_loss_weight: float) -> None:
        """Called after `Trainer.__init__`: our loss reads `labels` itself and returns a per-batch mean, so the
        Trainer must neither pass loss kwargs nor assume the loss is already scaled for gradient accumulation."""
        self.synthetic_loss_weight = synthetic_loss_weight
        self.label_names = [LABELS_COLUMN]
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop(LABELS_COLUMN)
        is_synthetic = inputs.pop(IS_SYNTHETIC_COLUMN, None)
        logits = extract_logits(model(**inputs))
        per_example = F.cross_entropy(logits.float(), labels, reduction="none")
        if is_synthetic is not None:
            weights = torch.where(is_synthetic.bool(), self.synthetic_loss_weight, 1.0).to(per_example.dtype)
            per_example = per_example * weights
        loss = per_example.sum() / labels.numel()
        return (loss, {"logits": logits}) if return_outputs else loss


class NoLoneLastBatchMixin:
    """Drops the last training batch of an epoch when it would hold one example (the data set size is one more
    than a multiple of the batch size), and only then.

    A batch of one breaks BatchNorm in training mode ("Expected more than 1 value per channel") — the embedded
    digits ResNet has BatchNorm — and is a one-example gradient step for any model. Real ∪ synthetic sizes are not
    the user's choice (filters decide how many samples a cycle keeps), so any cycle can land on such a size. The
    order is reshuffled every epoch, so a different example sits out each time. `dataloader_drop_last=True` in the
    config drops every short batch, as in `transformers`.
    """

    def get_train_dataloader(self):
        size, batch = len(self.train_dataset), self._train_batch_size
        if self.args.dataloader_drop_last or size <= batch or size % batch != 1:
            return super().get_train_dataloader()
        self.args.dataloader_drop_last = True
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_drop_last = False


class _MemberTrainer(NoLoneLastBatchMixin, SyntheticWeightedLossMixin, Trainer):
    """Trains one ensemble member or adapter on the same data and loss as the main model."""

    def __init__(self, *args, synthetic_loss_weight: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._use_weighted_loss(synthetic_loss_weight)


class ActiveSynthesisTrainer(NoLoneLastBatchMixin, SyntheticWeightedLossMixin, CycleStagesMixin, Trainer):
    r"""
    A [`~transformers.Trainer`] that improves a classifier with targeted synthetic data.

    `train()` trains on the current real ∪ synthetic data with L = CE(real) + λ·CE(synth) (see
    [`SyntheticWeightedLossMixin`] for the exact averaging). [`~ActiveSynthesisTrainer.run_cycles`] runs the loop:
    train -> estimate uncertainty -> choose targets -> generate -> filter -> merge -> retrain -> evaluate.
    The trainer is the [`~uncertainty.FitContext`] its estimator fits against.

    Args:
        model (`nn.Module`): Any classifier that returns logits: `AutoModelForSequenceClassification`,
            `AutoModelForImageClassification`, a peft-wrapped model, or a plain `nn.Module` whose `forward` returns a
            tensor, an object with `.logits` or a dict with `"logits"`.
        args ([`ActiveSynthesisConfig`]): Training and loop settings.
        train_dataset (`datasets.Dataset`): Real labelled *raw* examples (`args.input_column`, `args.label_column`).
        eval_dataset (`datasets.Dataset`, *optional*): Real validation examples, same columns.
        processing_class (tokenizer or image processor, *optional*): Used to build the default `preprocess`.
        generator ([`Generator`], *optional*): Proposes synthetic candidates; needed by `run_cycles`.
        estimator ([`UncertaintyEstimator`], *optional*): Defaults to the one `args.uncertainty_method` names.
        filters (sequence of [`Filter`], *optional*): Applied in order to scored candidates. Defaults to
            `[LabelAgreementFilter(), ExactDuplicateFilter()]`.
        preprocess (`Callable`, *optional*): Batched function from raw columns to model inputs. Defaults to
            `make_preprocess(processing_class, args.input_column, args.max_length)`.
        pool_dataset (`datasets.Dataset`, *optional*): Labelled real examples scored for uncertainty each cycle.
            Defaults to `train_dataset`.
        cycle_callbacks (sequence of [`CycleCallback`], *optional*): Called on the main process when the run
            starts and after each cycle is saved. Defaults to [`callbacks.default_cycle_callbacks`]: a
            [`hub.HubPublisher`] built from `args` when `args.publish_cycles` or `args.push_cycles_to_hub`, and a
            [`callbacks.TensorBoardCycleCallback`] when `args.report_to` includes `"tensorboard"`; a sequence given
            here replaces that default (include `HubPublisher.from_training_args(args)` to keep publishing).
        label_oracle ([`evaluation.audit.OracleAudit`], *optional*): A fitted classifier of another kind, trained on
            real labelled data outside the test split, that audits every cycle's accepted samples
            (`CycleResult.label_audit["oracle_label_agreement"]`). With `args.heldout_audit_members > 0` a held-out
            estimator audits their disagreement too (see [`auditing.CycleAuditor`]).
        **kwargs: Passed to [`~transformers.Trainer`] (`compute_metrics`, `callbacks`, `model_init`, ...).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: ActiveSynthesisConfig | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | None = None,
        processing_class: Any = None,
        generator: Generator | None = None,
        estimator: UncertaintyEstimator | None = None,
        filters: Sequence[Filter] | None = None,
        preprocess: Preprocess | None = None,
        pool_dataset: Dataset | None = None,
        cycle_callbacks: Sequence[CycleCallback] | None = None,
        label_oracle: OracleAudit | None = None,
        data_collator: Callable | None = None,
        compute_metrics: Callable | None = None,
        **kwargs: Any,
    ):
        if args is None:
            args = ActiveSynthesisConfig(output_dir="active-synthesis")
        model_init = kwargs.get("model_init")
        self.num_labels = check_trainer_inputs(args, model, model_init, train_dataset, eval_dataset, pool_dataset)
        self.real_train_dataset = train_dataset
        self.real_eval_dataset = eval_dataset
        self.pool_dataset = pool_dataset if pool_dataset is not None else train_dataset
        self.preprocess = preprocess or make_preprocess(processing_class, args.input_column, args.max_length)
        self.generator = generator
        self.filters = list(filters) if filters is not None else [LabelAgreementFilter(), ExactDuplicateFilter()]
        self.synthetic_dataset: Dataset | None = None  # raw accepted samples of every cycle so far

        if data_collator is None:
            if isinstance(processing_class, PreTrainedTokenizerBase):
                data_collator = DataCollatorWithPadding(processing_class)
            else:
                data_collator = default_data_collator
        if compute_metrics is None:
            from .evaluation.metrics import make_compute_metrics

            compute_metrics = make_compute_metrics()

        with library_progress_bars_disabled():
            self._real_train_inputs = to_model_inputs(
                train_dataset, self.preprocess, label_column=args.label_column, is_synthetic=False
            )
            eval_inputs = (
                to_model_inputs(eval_dataset, self.preprocess, label_column=args.label_column, is_synthetic=False)
                if eval_dataset is not None
                else None
            )
        super().__init__(
            model=model,
            args=args,
            train_dataset=self._real_train_inputs,
            eval_dataset=eval_inputs,
            processing_class=processing_class,
            data_collator=data_collator,
            compute_metrics=compute_metrics,
            **kwargs,
        )
        self._use_weighted_loss(args.synthetic_loss_weight)
        log_training_at_debug(self, "model")
        if estimator is None:
            # Members are seeded apart from the main model (seeded with `args.seed`), so none of them is its twin.
            estimator = make_estimator(args.uncertainty_method, args.ensemble_size, seed=args.seed + 1)
        self.estimator = estimator
        if cycle_callbacks is None:
            cycle_callbacks = default_cycle_callbacks(
                self.args, self.current_model(), self.filters, preprocess, train_dataset, eval_dataset
            )
        self.cycle_callbacks: list[CycleCallback] = list(cycle_callbacks)
        heldout = args.heldout_audit_members
        self.auditor = CycleAuditor(
            oracle=label_oracle,
            # Seeded far from the guiding members (`seed + 1 ... seed + K`): none of them is a held-out member's twin.
            heldout_estimator=make_estimator(args.uncertainty_method, heldout, seed=args.seed + 10_000)
            if heldout
            else None,
            input_column=args.input_column,
            label_column=args.label_column,
        )

    # ------------------------------------------------------------------ what estimators use (`FitContext`)

    def current_model(self) -> nn.Module:
        """The model being trained, unwrapped from any distributed wrapper."""
        return self.accelerator.unwrap_model(self.model)

    def sample_model_inputs(self, num_rows: int = 2) -> dict[str, Any]:
        """A collated batch of the first `num_rows` real training examples, without labels (for probing the model)."""
        rows = self._real_train_inputs.select(range(min(num_rows, len(self._real_train_inputs))))
        batch = self.data_collator([rows[i] for i in range(len(rows))])
        return {k: v for k, v in batch.items() if k not in (LABELS_COLUMN, IS_SYNTHETIC_COLUMN)}

    def check_model_returns_logits(self) -> None:
        """Runs the model on two real examples and checks it returns `[batch, num_labels]` logits (cheap, up front)."""
        check_model_returns_logits(
            self.current_model(), self.sample_model_inputs(2), self.num_labels, self.args.device
        )

    def train_member(
        self, model: nn.Module, *, seed: int, name: str, training_args: ActiveSynthesisConfig | None = None
    ) -> nn.Module:
        """Trains an ensemble member (or the active peft adapter) on the current real ∪ synthetic data.

        Uses `training_args`, by default `args.member_args(seed, ...)`: the same Accelerate set-up, the member's seed
        and epochs, and no checkpoints, evaluation, logging to trackers or Hub pushes (cross-fitting passes its own,
        `crossfit.fold_model_args`). Trains on `train_dataset`, which `restrict_real_rows` can narrow.
        """
        if training_args is None:
            training_args = self.args.member_args(seed, output_dir=str(Path(self.args.output_dir) / "members" / name))
        member_trainer = _MemberTrainer(
            model=model,
            args=training_args,
            train_dataset=self.train_dataset,
            data_collator=self.data_collator,
            synthetic_loss_weight=self.synthetic_loss_weight,
        )
        log_training_at_debug(member_trainer, f"member {name}")
        member_trainer.train()
        return self.accelerator.unwrap_model(member_trainer.model)

    def predict_member_logits(self, dataset: Dataset, estimator: UncertaintyEstimator | None = None) -> torch.Tensor:
        """Member logits `[N, C, K]` from a fitted estimator, sharded across processes and gathered in order.

        Args:
            dataset (`datasets.Dataset`): Raw rows to score (preprocessed here, each process only its share).
            estimator ([`UncertaintyEstimator`], *optional*): Defaults to the loop's estimator.
        """
        estimator = estimator if estimator is not None else self.estimator

        def score_rows(rows: Dataset) -> torch.Tensor:
            inputs = to_model_inputs(rows, self.preprocess, label_column=None, is_synthetic=False)
            return estimator.predict(inputs)

        return score_sharded(self.accelerator, dataset, score_rows)

    # ------------------------------------------------------------------ the loop

    def run_cycles(self, resume: bool = False) -> ActiveSynthesisHistory:
        """Runs the active-synthesis loop and returns its history.

        Cycle 0 trains on the real data only. Each later cycle targets the most uncertain real examples, generates,
        filters and selects synthetic samples, retrains on real ∪ synthetic and evaluates, until `num_cycles` or a
        validation plateau. Every cycle is saved under `output_dir/cycle-k/` (see `cycle.py`).

        While it runs, one progress bar counts every stage of every cycle (`args.show_cycle_progress`); when it ends,
        a summary (per cycle: validation metric, accepted samples, uncertainty before -> after, seconds; where the
        artifacts are) is logged (see `run_output`).

        Args:
            resume (`bool`, defaults to `False`): Continue from the last complete cycle in `output_dir`. A resumed
                run produces the same history as an uninterrupted one.
        """
        self._check_ready_for_cycles()
        store = CycleStore(self.args.output_dir)
        completed = store.completed_cycles()
        if completed and not resume:
            raise ValueError(
                f"{self.args.output_dir} already holds cycles {completed}. To continue that run pass `resume=True` "
                "(`--resume true` on the command line), or choose a new `output_dir`; nothing there is overwritten."
            )
        with RunProgress(self.args, main_process=self.is_world_process_zero()) as progress:
            if self.is_world_process_zero():
                for callback in self.cycle_callbacks:
                    callback.on_run_start()
            history = ActiveSynthesisHistory()
            start = completed[-1] + 1 if completed else 0
            progress.plan(range(start, self.args.num_cycles + 1), audits=self.auditor.active)
            if completed:
                pool_logits = self._restore(store, completed[-1], history)
            else:
                pool_logits = self._run_cycle(0, store, history, torch.empty(0), progress)
            stopper = PlateauStopper(self.args.plateau_patience, self.args.plateau_min_delta, self.args.cycle_metric)
            history.stop_reason = f"completed {self.args.num_cycles} cycles"
            for cycle in range(max(start, 1), self.args.num_cycles + 1):
                if stopper.should_stop(history):
                    history.stop_reason = (
                        f"validation plateau: {self.args.cycle_metric} did not improve by more than "
                        f"{self.args.plateau_min_delta} for {self.args.plateau_patience} cycle(s)"
                    )
                    break
                try:
                    pool_logits = self._run_cycle(cycle, store, history, pool_logits, progress)
                except NoCandidateSurvived as empty:
                    # Raised before the cycle trains or writes anything: the run ends on its completed cycles.
                    history.stop_reason = str(empty)
                    logger.warning("Stopping before cycle %d: %s.", cycle, empty)
                    break
            self._hand_back_best_cycle(store, history)
            if self.is_world_process_zero():
                store.write_history(history, self._public_config())
            progress.finish(history, self.cycle_callbacks)
        return history

    def _check_ready_for_cycles(self) -> None:
        check_process_group(self.accelerator)
        self.check_model_returns_logits()
        self._check_target_source()
        if self.args.synthesizes:
            check_generator(self.generator)

    def _run_cycle(
        self,
        cycle: int,
        store: CycleStore,
        history: ActiveSynthesisHistory,
        pool_logits: torch.Tensor,
        progress: RunProgress,
    ) -> torch.Tensor:
        """One cycle; returns the pool's member logits after it (the targets of the next cycle).

        Cycles after 0 of a synthesizing run first choose targets, generate, filter and merge; every cycle then
        trains and evaluates, and a synthesizing run scores the pool. Cycle 0 and every cycle of the real-only
        baseline only train and evaluate."""
        timer = progress.stage_timer(cycle)
        synthesize, estimate = cycle > 0 and self.args.synthesizes, self.args.synthesizes
        if synthesize:
            targets = self._choose_targets(pool_logits, cycle)
            with timer("generate"):
                candidates = self._generate_stage(targets, cycle)
            with timer("filter"):
                accepted, filter_counts = self._filter_and_select(candidates, targets, cycle)
            if self.auditor.active:
                with timer("audit"):
                    set_seed(self._stage_seed(cycle, "audit"))
                    label_audit = self.auditor.audit(accepted, self, self.predict_member_logits)
            self._add_synthetic(accepted)
        with timer("train"):
            self._train_stage(cycle)
        with timer("evaluate"):
            metrics = self._evaluate_stage()
        new_pool_logits = torch.empty(0)
        if estimate:
            with timer("estimate"):
                new_pool_logits = self._estimate_stage(cycle)
                heldout = uncertainty_summary(self.predict_member_logits(self.real_eval_dataset))
        result = CycleResult(cycle=cycle, eval_metrics=metrics, stage_seconds=timer.seconds)
        if estimate:
            result.heldout_uncertainty = heldout
        if synthesize and self.auditor.active:
            result.label_audit = label_audit
        if synthesize:
            # A hard negative shares its image with the target it was split from: each image counts once.
            target_ids = list(dict.fromkeys(target.example_id for target in targets))
            labels = accepted[self.args.label_column]
            result.uncertainty_before = uncertainty_summary(pool_logits[target_ids])
            result.uncertainty_after = uncertainty_summary(new_pool_logits[target_ids])
            result.num_targets, result.candidates_generated = len(target_ids), len(candidates)
            result.filter_counts, result.num_accepted = filter_counts, len(accepted)
            result.num_synthetic_total = len(self.synthetic_dataset)
            result.accepted_per_class = {str(c): labels.count(c) for c in range(self.num_labels)}
            hard_negative_ids = {target.target_id for target in targets if target.is_hard_negative}
            result.num_hard_negatives = sum(t in hard_negative_ids for t in accepted[TARGET_ID_COLUMN])
            result.generator = self._generator_name
            stats = getattr(self.generator, "last_stats_", None)
            result.generation_stats = stats.to_dict() if hasattr(stats, "to_dict") else {}
        result.peak_memory_mb = peak_memory_mb()
        self._finish_cycle(
            store, history, result, accepted=accepted if synthesize else None, pool_logits=new_pool_logits
        )
        progress.cycle_finished(result)
        return new_pool_logits

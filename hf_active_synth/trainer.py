"""`ActiveSynthesisTrainer`: a `transformers.Trainer` that runs the active-synthesis loop."""

from __future__ import annotations

import dataclasses
import logging
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import broadcast_object_list, gather_object
from datasets import ClassLabel, Dataset, Value, concatenate_datasets
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase, Trainer, default_data_collator
from transformers.trainer_utils import set_seed

from .acquisition import mean_probabilities, score, select_per_class, uncertainty_summary
from .config import ActiveSynthesisConfig
from .cycle import CHECKPOINT_DIR, ActiveSynthesisHistory, CycleResult, CycleStore, PlateauStopper
from .data import (
    IS_SYNTHETIC_COLUMN,
    LABELS_COLUMN,
    Preprocess,
    infer_num_labels,
    label_names,
    make_preprocess,
    merge_model_inputs,
    to_model_inputs,
    validate_dataset,
)
from .filters import ExactDuplicateFilter, Filter, FilterContext, LabelAgreementFilter
from .filters.generic import PREDICTED_LABEL_COLUMN, PREDICTED_PROBABILITY_COLUMN
from .generators.base import (
    LABEL_PROBABILITY_COLUMN,
    REQUIRED_PROVENANCE_COLUMNS,
    SCORE_COLUMN,
    TARGET_ID_COLUMN,
    TARGET_UNCERTAINTY_COLUMN,
    GenerationRequest,
    Generator,
    SynthesisTarget,
)
from .modeling import extract_logits
from .selection import select_candidates
from .uncertainty import DeepEnsemble, LoRAEnsemble, MCDropout, UncertaintyEstimator

logger = logging.getLogger(__name__)

# Offsets that give every stage of every cycle its own seed, so a resumed run replays the same random streams.
_STAGE_SEED_OFFSETS = {"train": 0, "estimate": 1, "generate": 2, "select": 3}
# `_model_preparation_time`: the Trainer adds it to the first evaluation after wrapping the model (e.g. in DDP).
_TIMING_SUFFIXES = ("_runtime", "_per_second", "_preparation_time")


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


class _MemberTrainer(SyntheticWeightedLossMixin, Trainer):
    """Trains one ensemble member or adapter on the same data and loss as the main model."""

    def __init__(self, *args, synthetic_loss_weight: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._use_weighted_loss(synthetic_loss_weight)


class ActiveSynthesisTrainer(SyntheticWeightedLossMixin, Trainer):
    r"""
    A [`~transformers.Trainer`] that improves a classifier with targeted synthetic data.

    `train()` trains on the current real ∪ synthetic data with L = CE(real) + λ·CE(synth) (see
    [`SyntheticWeightedLossMixin`] for the exact averaging). [`~ActiveSynthesisTrainer.run_cycles`] runs the loop:
    train -> estimate uncertainty -> choose targets -> generate -> filter -> merge -> retrain -> evaluate.

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
        publisher (*optional*): An object with `publish_cycle(...)` and `retry_pending()` (see `hub.HubPublisher`),
            called on the main process after each cycle is saved.
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
        publisher: Any = None,
        data_collator: Callable | None = None,
        compute_metrics: Callable | None = None,
        **kwargs: Any,
    ):
        if args is None:
            args = ActiveSynthesisConfig(output_dir="active-synthesis")
        if not isinstance(args, ActiveSynthesisConfig):
            raise TypeError(
                f"`args` must be an ActiveSynthesisConfig, got {type(args).__name__}. Build one with "
                "`ActiveSynthesisConfig(output_dir=..., ...)` (it accepts every TrainingArguments field)."
            )
        if model is None and kwargs.get("model_init") is None:
            raise ValueError("Pass a `model` (or a `model_init`) to ActiveSynthesisTrainer.")
        probe_model = model if model is not None else kwargs["model_init"]()
        if train_dataset is None:
            raise ValueError("ActiveSynthesisTrainer needs `train_dataset`: the real labelled examples.")
        self.num_labels = infer_num_labels(probe_model, train_dataset, args.label_column)
        for name, dataset in (
            ("train_dataset", train_dataset),
            ("eval_dataset", eval_dataset),
            ("pool_dataset", pool_dataset),
        ):
            if dataset is not None:
                validate_dataset(
                    dataset,
                    name=name,
                    input_column=args.input_column,
                    label_column=args.label_column,
                    num_labels=self.num_labels,
                )
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
        self.estimator = estimator if estimator is not None else self._default_estimator()
        self.publisher = publisher if publisher is not None else self._default_publisher()

    def _default_publisher(self) -> Any:
        if not (self.args.publish_cycles or self.args.push_cycles_to_hub):
            return None
        from .hub import HubPublisher

        model = self.accelerator.unwrap_model(self.model)
        base_model = getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
        return HubPublisher.from_training_args(
            self.args, run_settings={"base_model": base_model, "command": " ".join(sys.argv)}
        )

    # ------------------------------------------------------------------ building blocks

    def _default_estimator(self) -> UncertaintyEstimator:
        # Members are seeded apart from the main model (seeded with `args.seed`), so none of them is its twin.
        seed = self.args.seed + 1
        estimators: dict[str, Callable[[], UncertaintyEstimator]] = {
            "deep_ensemble": lambda: DeepEnsemble(self.args.ensemble_size, seed=seed),
            "lora_ensemble": lambda: LoRAEnsemble(self.args.ensemble_size, seed=seed),
            "mc_dropout": lambda: MCDropout(self.args.ensemble_size, seed=seed),
        }
        return estimators[self.args.uncertainty_method]()

    def sample_model_inputs(self, num_rows: int = 2) -> dict[str, Any]:
        """A collated batch of the first `num_rows` real training examples, without labels (for probing the model)."""
        rows = self._real_train_inputs.select(range(min(num_rows, len(self._real_train_inputs))))
        batch = self.data_collator([rows[i] for i in range(len(rows))])
        return {k: v for k, v in batch.items() if k not in (LABELS_COLUMN, IS_SYNTHETIC_COLUMN)}

    def check_model_returns_logits(self) -> None:
        """Runs the model on two real examples and checks it returns `[batch, num_labels]` logits (cheap, up front)."""
        model = self.accelerator.unwrap_model(self.model)
        batch = {
            k: v.to(self.args.device) if isinstance(v, torch.Tensor) else v
            for k, v in self.sample_model_inputs(2).items()
        }
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                logits = extract_logits(model(**batch))
        finally:
            model.train(was_training)
        if logits.shape[-1] != self.num_labels:
            raise ValueError(
                f"The model returns {logits.shape[-1]} logits per example but the data has {self.num_labels} "
                "classes. Build the model with `num_labels` matching the label column."
            )

    def train_member(self, model: nn.Module, *, seed: int, name: str) -> nn.Module:
        """Trains an ensemble member (or the active peft adapter) on the current real ∪ synthetic data.

        Uses the same `TrainingArguments` (hence the same Accelerate set-up) with the member's seed and
        `member_num_train_epochs`, and no checkpoints, evaluation, logging to trackers or Hub pushes.
        """
        member_args = dataclasses.replace(
            self.args,
            output_dir=str(Path(self.args.output_dir) / "members" / name),
            seed=seed,
            data_seed=seed,
            num_train_epochs=self.args.effective_member_epochs,
            # LoRA adapters start at zero and usually want a larger step than full fine-tuning.
            learning_rate=self.args.member_learning_rate or self.args.learning_rate,
            max_steps=-1,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            push_to_hub=False,
            report_to="none",
            disable_tqdm=True,
        )
        member_trainer = _MemberTrainer(
            model=model,
            args=member_args,
            train_dataset=self.train_dataset,
            data_collator=self.data_collator,
            synthetic_loss_weight=self.synthetic_loss_weight,
        )
        member_trainer.train()
        return self.accelerator.unwrap_model(member_trainer.model)

    def predict_member_logits(self, dataset: Dataset) -> torch.Tensor:
        """Member logits `[N, C, K]` from the fitted estimator, sharded across processes and gathered in order.

        Args:
            dataset (`datasets.Dataset`): Raw rows to score (preprocessed here, each process only its share).
        """
        indices = list(range(len(dataset)))
        with self.accelerator.split_between_processes(indices) as shard:
            local = None
            if shard:
                # Each process preprocesses (not only scores) just its own contiguous share of the rows.
                rows = dataset if len(shard) == len(dataset) else dataset.select(shard)
                inputs = to_model_inputs(rows, self.preprocess, label_column=None, is_synthetic=False)
                local = self.estimator.predict(inputs)
        if self.accelerator.num_processes == 1:
            return local
        shards = [part for part in gather_object([local]) if part is not None]
        return torch.cat(shards, dim=0)

    # ------------------------------------------------------------------ the loop

    def run_cycles(self, resume: bool = False) -> ActiveSynthesisHistory:
        """Runs the active-synthesis loop and returns its history.

        Cycle 0 trains on the real data only. Each later cycle targets the most uncertain real examples, generates,
        filters and selects synthetic samples, retrains on real ∪ synthetic and evaluates, until `num_cycles` or a
        validation plateau. Every cycle is saved under `output_dir/cycle-k/` (see `cycle.py`).

        Args:
            resume (`bool`, defaults to `False`): Continue from the last complete cycle in `output_dir`. A resumed
                run produces the same history as an uninterrupted one.
        """
        self._check_ready_for_cycles()
        store = CycleStore(self.args.output_dir)
        completed = store.completed_cycles()
        if completed and not resume:
            raise ValueError(
                f"{self.args.output_dir} already holds cycles {completed}. Pass `resume=True` to continue that run, "
                "or choose a new `output_dir`; nothing there is overwritten."
            )
        if self.publisher is not None and self.is_world_process_zero():
            self.publisher.retry_pending()

        history = ActiveSynthesisHistory()
        if completed:
            pool_logits = self._restore(store, completed[-1], history)
            start = completed[-1] + 1
        else:
            pool_logits = self._run_training_only_cycle(0, store, history, estimate=self.args.synthesizes)
            start = 1
        stopper = PlateauStopper(self.args.plateau_patience, self.args.plateau_min_delta, self.args.cycle_metric)
        history.stop_reason = f"completed {self.args.num_cycles} cycles"
        for cycle in range(start, self.args.num_cycles + 1):
            if stopper.should_stop(history):
                history.stop_reason = (
                    f"validation plateau: {self.args.cycle_metric} did not improve by more than "
                    f"{self.args.plateau_min_delta} for {self.args.plateau_patience} cycle(s)"
                )
                break
            pool_logits = self._run_cycle(cycle, store, history, pool_logits)
        if self.is_world_process_zero():
            store.write_history(history, self._public_config())
        logger.info("Active synthesis finished: %s", history.stop_reason)
        return history

    def _check_ready_for_cycles(self) -> None:
        self._check_process_group()
        self.check_model_returns_logits()
        if not self.args.synthesizes:
            return
        if self.generator is None:
            raise ValueError("`run_cycles` needs a generator: pass `generator=` to ActiveSynthesisTrainer.")
        if not callable(getattr(self.generator, "generate", None)):
            raise TypeError(f"The generator {type(self.generator).__name__} has no `generate(request)` method.")

    def _check_process_group(self) -> None:
        """Refuses to run when this process was launched as one of several but Accelerate set up fewer.

        That happens, for instance, with `accelerate launch --multi_gpu` (torchrun) on a machine without GPUs and
        without `use_cpu`: each process then runs the whole loop alone and all of them write the same `output_dir`.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size > 1 and self.accelerator.num_processes != world_size:
            raise ValueError(
                f"This process was launched as one of {world_size} (WORLD_SIZE) but Accelerate set up "
                f"{self.accelerator.num_processes} process(es), so every process would run and save the whole loop. "
                "On a machine without GPUs pass `--use_cpu true` (or set ACCELERATE_USE_CPU=1) so the processes form "
                "one CPU process group; see recipes/accelerate_configs/cpu_2proc.yaml."
            )

    def _run_training_only_cycle(
        self, cycle: int, store: CycleStore, history: ActiveSynthesisHistory, estimate: bool
    ) -> torch.Tensor:
        """Train and evaluate on the current data, no synthesis: cycle 0, and every cycle of the real-only baseline.

        With `estimate`, the pool is scored afterwards (the targets of the next cycle)."""
        timer = _StageTimer()
        with timer("train"):
            self._train_stage(cycle)
        with timer("evaluate"):
            metrics = self._evaluate_stage()
        pool_logits = torch.empty(0)
        if estimate:
            with timer("estimate"):
                pool_logits = self._estimate_stage(cycle)
        result = CycleResult(
            cycle=cycle, eval_metrics=metrics, stage_seconds=timer.seconds, peak_memory_mb=_peak_memory_mb()
        )
        self._finish_cycle(store, history, result, accepted=None, pool_logits=pool_logits)
        return pool_logits

    def _run_cycle(
        self, cycle: int, store: CycleStore, history: ActiveSynthesisHistory, pool_logits: torch.Tensor
    ) -> torch.Tensor:
        if not self.args.synthesizes:
            return self._run_training_only_cycle(cycle, store, history, estimate=False)
        timer = _StageTimer()
        targets = self._choose_targets(pool_logits, cycle)
        target_ids = [target.example_id for target in targets]
        with timer("generate"):
            candidates = self._generate_stage(targets, cycle)
        with timer("filter"):
            accepted, filter_counts = self._filter_and_select(candidates, targets, cycle)
        self._add_synthetic(accepted)
        with timer("train"):
            self._train_stage(cycle)
        with timer("evaluate"):
            metrics = self._evaluate_stage()
        with timer("estimate"):
            new_pool_logits = self._estimate_stage(cycle)
        labels = accepted[self.args.label_column]
        result = CycleResult(
            cycle=cycle,
            eval_metrics=metrics,
            uncertainty_before=uncertainty_summary(pool_logits[target_ids]),
            uncertainty_after=uncertainty_summary(new_pool_logits[target_ids]),
            num_targets=len(targets),
            candidates_generated=len(candidates),
            filter_counts=filter_counts,
            num_accepted=len(accepted),
            num_synthetic_total=len(self.synthetic_dataset),
            accepted_per_class={str(c): labels.count(c) for c in range(self.num_labels)},
            stage_seconds=timer.seconds,
            peak_memory_mb=_peak_memory_mb(),
            generator=getattr(self.generator, "name", type(self.generator).__name__),
        )
        self._finish_cycle(store, history, result, accepted=accepted, pool_logits=new_pool_logits)
        return new_pool_logits

    def _stage_seed(self, cycle: int, stage: str) -> int:
        return self.args.seed + 1000 * cycle + _STAGE_SEED_OFFSETS[stage]

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
        return self.predict_member_logits(self.pool_dataset)

    def _choose_targets(self, pool_logits: torch.Tensor, cycle: int) -> list[SynthesisTarget]:
        """The most uncertain real examples of each class (random ones for the untargeted baseline)."""
        labels = torch.tensor(self.pool_dataset[self.args.label_column])
        if self.args.targeted:
            scores = score(pool_logits, self.args.acquisition_function, seed=self._stage_seed(cycle, "select"))
        else:
            scores = score(pool_logits, "random", seed=self._stage_seed(cycle, "select"))
        per_class = select_per_class(scores, labels, self.args.targets_per_class, self.num_labels)
        # Interleave classes by rank so that, when the budget does not divide evenly, the extra samples go to the
        # most uncertain target of each class first.
        ranked = [
            per_class[label][rank]
            for rank in range(self.args.targets_per_class)
            for label in range(self.num_labels)
            if rank < len(per_class[label])
        ]
        budget = self.args.synthetic_samples_per_cycle
        quotas = [budget // len(ranked) + (1 if i < budget % len(ranked) else 0) for i in range(len(ranked))]
        inputs = self.pool_dataset.select(ranked)[self.args.input_column]
        return [
            SynthesisTarget(
                target_id=i,
                label=int(labels[example_id]),
                example_id=int(example_id),
                example=inputs[i],
                score=float(scores[example_id]),
                num_samples=quota,
            )
            for i, (example_id, quota) in enumerate(zip(ranked, quotas))
            if quota > 0
        ]

    def _seed_examples(self, targets: list[SynthesisTarget]) -> dict[int, list[tuple[int, Any]]]:
        """Every target's `(example_id, example)`, grouped by label: few-shot material shared across processes."""
        examples: dict[int, list[tuple[int, Any]]] = {}
        for target in targets:
            examples.setdefault(target.label, []).append((target.example_id, target.example))
        return examples

    def _generate_stage(self, targets: list[SynthesisTarget], cycle: int) -> Dataset:
        """Generation sharded by target across processes; every process gets the merged candidates."""
        with self.accelerator.split_between_processes(targets) as local_targets:
            request = GenerationRequest(
                targets=list(local_targets),
                cycle=cycle,
                seed=self._generation_seed(cycle),
                candidates_per_sample=self.args.candidates_per_sample,
                input_column=self.args.input_column,
                label_column=self.args.label_column,
                label_names=label_names(self.real_train_dataset, self.args.label_column, self.num_labels),
                seed_examples=self._seed_examples(targets) if self.args.targeted else {},
                estimator=self.estimator if self.args.targeted else None,
                targeted=self.args.targeted,
            )
            local = self.generator.generate(request) if local_targets else None
            logger.info(
                "process %d/%d generated %d candidates for %d of %d targets",
                self.accelerator.process_index,
                self.accelerator.num_processes,
                0 if local is None else len(local),
                len(local_targets),
                len(targets),
            )
        if self.accelerator.num_processes > 1:
            parts = [part for part in gather_object([local]) if part is not None and len(part) > 0]
            candidates = concatenate_datasets(parts) if parts else local
        else:
            candidates = local
        self._validate_candidates(candidates, targets)
        return candidates

    def _generation_seed(self, cycle: int) -> int:
        """This process's generation seed: the stage seed on process 0 (a single-process run is unaffected) and one
        derived from (stage seed, process index) on the others, so shards never share a random stream (a generator
        that seeds per batch would otherwise replay the same noise on every process) and the merged candidates are
        deterministic for a given number of processes."""
        seed = self._stage_seed(cycle, "generate")
        process_index = self.accelerator.process_index
        if process_index == 0:
            return seed
        return int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])

    def _validate_candidates(self, candidates: Any, targets: list[SynthesisTarget]) -> None:
        name = getattr(self.generator, "name", type(self.generator).__name__)
        if not isinstance(candidates, Dataset):
            raise TypeError(f"Generator {name!r} returned {type(candidates).__name__}; it must return a Dataset.")
        if len(candidates) == 0:
            raise ValueError(
                f"Generator {name!r} returned no candidates for {len(targets)} targets. Check its output parsing "
                "and settings (max_new_tokens, prompts, guidance scales); the completed cycles are kept on disk."
            )
        missing = [
            column
            for column in (self.args.input_column, self.args.label_column, *REQUIRED_PROVENANCE_COLUMNS)
            if column not in candidates.column_names
        ]
        if missing:
            raise ValueError(
                f"Generator {name!r} returned rows without the column(s) {missing} (it returned "
                f"{candidates.column_names}). Every candidate needs its input, its label and provenance columns."
            )
        labels = candidates[self.args.label_column]
        bad = [label for label in labels if not isinstance(label, int) or not 0 <= label < self.num_labels]
        if bad:
            raise ValueError(
                f"Generator {name!r} returned rows with invalid labels {bad[:5]}: each needs an integer label in "
                f"[0, {self.num_labels})."
            )

    def _score_candidates(self, candidates: Dataset, targets: list[SynthesisTarget], cycle: int) -> Dataset:
        logits = self.predict_member_logits(candidates)
        scores = score(logits, self.args.acquisition_function, seed=self._stage_seed(cycle, "select"))
        probabilities = mean_probabilities(logits)
        labels = torch.tensor(candidates[self.args.label_column])
        predicted_probability, predicted = probabilities.max(dim=1)
        target_scores = {target.target_id: target.score for target in targets}
        columns = {
            SCORE_COLUMN: scores.tolist(),
            LABEL_PROBABILITY_COLUMN: probabilities[torch.arange(len(labels)), labels].tolist(),
            PREDICTED_LABEL_COLUMN: predicted.tolist(),
            PREDICTED_PROBABILITY_COLUMN: predicted_probability.tolist(),
            TARGET_UNCERTAINTY_COLUMN: [target_scores.get(t, float("nan")) for t in candidates[TARGET_ID_COLUMN]],
        }
        for column, values in columns.items():
            if column in candidates.column_names:
                candidates = candidates.remove_columns(column)
            candidates = candidates.add_column(column, values)
        return candidates

    def _filter_and_select(
        self, candidates: Dataset, targets: list[SynthesisTarget], cycle: int
    ) -> tuple[Dataset, dict[str, int]]:
        """Scores candidates, runs the filters and keeps the budget (main process; the result is broadcast)."""
        scored = self._score_candidates(candidates, targets, cycle)
        payload: list[Any] = [None]
        if self.is_world_process_zero():
            context = FilterContext(
                input_column=self.args.input_column,
                label_column=self.args.label_column,
                real_dataset=self.real_train_dataset,
                num_labels=self.num_labels,
                accepted_dataset=self.synthetic_dataset,
            )
            counts: dict[str, int] = {}
            kept = scored
            for candidate_filter in self.filters:
                kept = candidate_filter(kept, context)
                counts[candidate_filter.name] = len(kept)
            selected = select_candidates(
                kept,
                quotas={target.target_id: target.num_samples for target in targets},
                strategy=self.args.selection_strategy,
                seed=self._stage_seed(cycle, "select"),
            )
            counts["selected"] = len(selected)
            payload = [(self._cast_like_real(selected), counts)]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(payload, from_process=0)
        accepted, counts = payload[0]
        if len(accepted) == 0:
            raise ValueError(
                f"No candidate of cycle {cycle} survived the filters ({counts}). Loosen the filter thresholds or "
                "raise `candidates_per_sample`; the completed cycles are kept on disk."
            )
        return accepted, counts

    def _cast_like_real(self, synthetic: Dataset) -> Dataset:
        """Gives the label column the real data's feature (e.g. `ClassLabel`), so pushes carry class names."""
        feature = self.real_train_dataset.features[self.args.label_column]
        if isinstance(feature, (ClassLabel, Value)):
            synthetic = synthetic.cast_column(self.args.label_column, feature)
        return synthetic

    def _add_synthetic(self, accepted: Dataset) -> None:
        """Appends a cycle's accepted samples; only the new rows are encoded (earlier ones already are)."""
        if self.synthetic_dataset is None:
            self.synthetic_dataset = accepted
        else:
            self.synthetic_dataset = concatenate_datasets([self.synthetic_dataset, accepted])
        self.train_dataset = merge_model_inputs(self.train_dataset, self._encode_synthetic(accepted))

    def _rebuild_train_dataset(self) -> None:
        """Real ∪ every accepted sample, encoded from scratch (after a resume)."""
        self.train_dataset = merge_model_inputs(
            self._real_train_inputs, self._encode_synthetic(self.synthetic_dataset)
        )

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
        with _without_hub_token(self.args):
            self.save_model(str(staging / CHECKPOINT_DIR), _internal_call=True)
        if self.is_world_process_zero():
            cycle_dir = store.commit(result.cycle, staging, result, accepted, pool_logits)
            store.write_history(history, self._public_config())
            if self.publisher is not None:
                self.publisher.publish_cycle(
                    cycle_dir=cycle_dir,
                    history=[c.to_dict() for c in history.cycles],
                    best_cycle=history.best_cycle(self.args.cycle_metric),
                )
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
        self._rebuild_train_dataset()
        if self.args.synthesizes:
            # The estimator was fitted at the end of cycle `last` with this seed; refitting replays it exactly.
            set_seed(self._stage_seed(last, "estimate"))
            self.estimator.fit(self)
        logger.info("Resumed from %s (cycle %d).", store.cycle_dir(last), last)
        if store.has_pool_logits(last):
            return store.load_pool_logits(last)
        if not self.args.synthesizes:
            return torch.empty(0)
        # A run pulled from the Hub has no pool scores: score the pool with the refitted estimator.
        return self.predict_member_logits(self.pool_dataset)

    def _public_config(self) -> dict[str, Any]:
        # `to_dict()` redacts `hub_token` and other secrets.
        return self.args.to_dict()


@contextmanager
def _without_hub_token(args: ActiveSynthesisConfig):
    """Keeps the token out of `training_args.bin`, which `save_model` pickles next to the weights."""
    token, args.hub_token = args.hub_token, None
    try:
        yield
    finally:
        args.hub_token = token


class _StageTimer:
    """Accumulates wall time per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def _peak_memory_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS), plus GPU peak."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
    if torch.cuda.is_available():
        peak_mb += torch.cuda.max_memory_allocated() / (1024 * 1024)
    return peak_mb

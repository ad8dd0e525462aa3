"""The shape every recipe shares: parse arguments, build the task once, build one trainer per run, run or compare.

A recipe supplies only what differs: its argument dataclasses and defaults, `load_task` (data splits, classifier
factory, generator), `make_filters` and the corruptions of its robustness evaluation. [`Recipe`] turns those into the
`make_parser`, `build_trainer`, `main` and `cli` functions the recipe modules export.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from datasets import Dataset, concatenate_datasets
from transformers import HfArgumentParser

from ..config import ActiveSynthesisConfig
from ..data import Preprocess
from ..evaluation.audit import OracleAudit
from ..evaluation.compare import ComparisonTask, run_comparison
from ..evaluation.previews import save_real_examples
from ..filters import Filter
from ..generators.base import Generator
from ..run_output import SUMMARY_LOGGER
from ..trainer import ActiveSynthesisTrainer
from .parsing import parse_args_and_config, traceback_requested
from .running import RunModeArguments, command_line_errors, configure_logging

summary_logger = logging.getLogger(SUMMARY_LOGGER)  # shown without --verbose

ScriptArgs = TypeVar("ScriptArgs", bound=RunModeArguments)
ModelArgs = TypeVar("ModelArgs")

ModelFactory = Callable[[int], torch.nn.Module]
"""Builds the classifier of one run from the run's seed."""


@dataclass
class RecipeTask:
    """Everything one run needs besides its config: data splits, classifier factory, preprocessing, generator.

    Args:
        train (`datasets.Dataset`): The labelled real training rows.
        validation (`datasets.Dataset`): Real rows measured after every cycle.
        pool (`datasets.Dataset`): Held-back labelled real rows (the BALD active-learning baseline acquires them).
        test (`datasets.Dataset`): The held-out test split of `--compare`.
        label_names (`list[str]`): Class names, in label order.
        make_model (`Callable[[int], nn.Module]`): The classifier of a run, seeded with the run's seed.
        generator ([`Generator`]): Writes the synthetic candidates.
        processing_class (tokenizer or image processor, *optional*): Passed to the trainer.
        preprocess (`Callable`, *optional*): A batched raw-rows-to-model-inputs function, when the processing class
            does not give one.
        audit_data (`datasets.Dataset`, *optional*): Real labelled rows outside the test split that the independent
            label oracle learns from; defaults to train ∪ validation ∪ pool.
        oracle ([`OracleAudit`], *optional*): The fitted label oracle (set by [`Recipe.prepare_task`]).
        pseudo_labelled_pool (`datasets.Dataset`, *optional*): Pool rows whose label column holds a pseudo-label
            from a labeller outside the loop (the image recipe's label spreading): the targets of
            `target_source="pseudo_labelled_pool"`.
    """

    train: Dataset
    validation: Dataset
    pool: Dataset
    test: Dataset
    label_names: list[str]
    make_model: ModelFactory
    generator: Generator
    processing_class: Any = None
    preprocess: Preprocess | None = None
    audit_data: Dataset | None = None
    oracle: OracleAudit | None = None
    pseudo_labelled_pool: Dataset | None = None

    def oracle_training_rows(self) -> Dataset:
        """The rows the label oracle is fitted on: `audit_data`, or train ∪ validation ∪ pool."""
        if self.audit_data is not None:
            return self.audit_data
        return concatenate_datasets([self.train, self.validation, self.pool])


def pretrained_classifier(
    auto_class: Any, name_or_path: str, label_names: Sequence[str], **kwargs: Any
) -> ModelFactory:
    """A factory loading `name_or_path` with `auto_class.from_pretrained` and a head for `label_names`.

    Each call seeds torch's global generator with the run's seed first, so a newly initialised head is the same for
    the same seed.

    Args:
        auto_class: An `AutoModelFor...Classification` class.
        name_or_path (`str`): A Hub id or local checkpoint folder.
        label_names (`Sequence[str]`): Class names, in label order.
        kwargs: More `from_pretrained` arguments (e.g. `ignore_mismatched_sizes=True`).
    """

    def make_model(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return auto_class.from_pretrained(
            name_or_path,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            **kwargs,
        )

    return make_model


@dataclass(frozen=True)
class Recipe(Generic[ScriptArgs, ModelArgs]):
    """What one recipe supplies; its methods are the recipe module's `make_parser`, `build_trainer`, `main`, `cli`.

    Args:
        script_arguments (`type`): The data, generator and run-mode arguments (a [`RunModeArguments`] dataclass).
        model_arguments (`type`): The classifier arguments (a dataclass).
        defaults (`Mapping[str, Any]`): Recipe defaults on top of `ActiveSynthesisConfig`'s (a `--config` file and
            the command line override them).
        load_task (`Callable`): `(script_args, config, model_args) -> RecipeTask`, called once per command.
        make_filters (`Callable`): `(script_args, task) -> filters`, called for every run (a fresh list each); the
            task lets a filter reuse what `load_task` built (the image recipe's DDPM scores realism).
        corruptions (`Mapping[str, Sequence[int]]`): Corruption name -> severities for the robustness evaluation of
            `--compare`.
        make_oracle (`Callable[[], OracleAudit]`): An unfitted independent label oracle for the task's inputs.
    """

    script_arguments: type[ScriptArgs]
    model_arguments: type[ModelArgs]
    defaults: Mapping[str, Any]
    load_task: Callable[[ScriptArgs, ActiveSynthesisConfig, ModelArgs], RecipeTask]
    make_filters: Callable[[ScriptArgs, RecipeTask], list[Filter]]
    corruptions: Mapping[str, Sequence[int]]
    make_oracle: Callable[[], OracleAudit]

    def make_parser(self) -> HfArgumentParser:
        """The recipe's parser: its script arguments, `ActiveSynthesisConfig` and its model arguments."""
        parser = HfArgumentParser((self.script_arguments, ActiveSynthesisConfig, self.model_arguments))
        parser.set_defaults(**self.defaults)
        return parser

    def build_trainer(
        self,
        task: RecipeTask,
        config: ActiveSynthesisConfig,
        script_args: ScriptArgs,
        train_dataset: Dataset | None = None,
    ) -> ActiveSynthesisTrainer:
        """The trainer of one run (the model is seeded with the run's seed); `train_dataset` replaces the task's
        real training rows (the synthetic-only models of `--compare`)."""
        return ActiveSynthesisTrainer(
            model=task.make_model(config.seed),
            args=config,
            train_dataset=task.train if train_dataset is None else train_dataset,
            eval_dataset=task.validation,
            processing_class=task.processing_class,
            preprocess=task.preprocess,
            generator=task.generator,
            filters=self.make_filters(script_args, task),
            label_oracle=task.oracle,
            pool_dataset=self.target_pool(task, config),
        )

    @staticmethod
    def target_pool(task: RecipeTask, config: ActiveSynthesisConfig) -> Dataset | None:
        """The rows targets come from besides the labelled ones: the pool for `target_source="pool"` (its labels
        are never read), its pseudo-labelled part for `"pseudo_labelled_pool"`, else none."""
        if config.target_source == "pool":
            return task.pool
        if config.target_source != "pseudo_labelled_pool":
            return None
        if task.pseudo_labelled_pool is None:
            raise ValueError(
                "target_source='pseudo_labelled_pool' needs a pool labelled outside the loop, which only the image "
                "recipe's embedded DDPM path makes (label spreading); use target_source='pool' here."
            )
        return task.pseudo_labelled_pool

    def prepare_task(
        self, script_args: ScriptArgs, config: ActiveSynthesisConfig, model_args: ModelArgs
    ) -> RecipeTask:
        """`load_task`, then (with `--audit_labels`) the label oracle fitted on real rows outside the test split."""
        task = self.load_task(script_args, config, model_args)
        if script_args.audit_labels:
            rows = task.oracle_training_rows()
            task.oracle = self.make_oracle().fit(rows[config.input_column], rows[config.label_column])
        return task

    def main(self, script_args: ScriptArgs, config: ActiveSynthesisConfig, model_args: ModelArgs) -> Any:
        """Runs active synthesis once, or (with `--compare`) every method on every (seed, split) pair.

        Returns:
            The run's [`ActiveSynthesisHistory`], or the `Path` of the comparison's `report.md`.
        """
        if not script_args.compare:
            task = self.prepare_task(script_args, config, model_args)
            trainer = self.build_trainer(task, config, script_args)
            if trainer.is_world_process_zero():
                # A few real examples per class beside the run, for the previews (they stay local).
                save_real_examples(task.train, config.output_dir, config.label_column)
            return trainer.run_cycles(resume=script_args.resume)

        def task_for_split(split: int) -> ComparisonTask:
            # Each split draws its own labelled rows, validation, pool and test (and trains its own generator:
            # generator caches are keyed by their training data, so splits never share one).
            split_args = dataclasses.replace(script_args, split_seed=split)
            task = self.prepare_task(split_args, config, model_args)
            return ComparisonTask(
                build_trainer=lambda run_config: self.build_trainer(task, run_config, split_args),
                test_dataset=task.test,
                acquisition_pool=task.pool,
                label_names=task.label_names,
                train_dataset=task.train,
                validation_dataset=task.validation,
                build_plain_trainer=lambda run_config, rows: self.build_trainer(task, run_config, split_args, rows),
            )

        seeds, splits = script_args.comparison_pairs()
        report = run_comparison(
            task_for_split,
            config,
            config.output_dir,
            methods=script_args.compare_methods,
            seeds=seeds,
            splits=splits,
            corruptions=self.corruptions,
        )
        summary_logger.info(
            "Comparison report: %s (open it with `hf-active-synth report %s`)", report, config.output_dir
        )
        return report

    def cli(self, args: list[str] | None = None) -> Any:
        """Parses `args` (default: `sys.argv[1:]`, with `--config FILE` support) and runs [`Recipe.main`].

        An expected error ([`running.EXPECTED_ERRORS`]: a bad option, file or checkpoint) prints one line,
        `error: <message>`, and exits with status 2; `--traceback` shows its traceback instead. `--verbose` logs the
        library's INFO messages and every training run's metrics (see [`running.configure_logging`]).
        """
        args = list(sys.argv[1:] if args is None else args)
        with command_line_errors(traceback_requested(args)) as errors:
            script_args, config, model_args = parse_args_and_config(self.make_parser(), args)
            errors.traceback = script_args.traceback
            configure_logging(verbose=script_args.verbose)
            return self.main(script_args, config, model_args)

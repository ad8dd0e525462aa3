"""`ActiveSynthesisConfig`: every knob of the active-synthesis loop, on top of `transformers.TrainingArguments`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, get_args

from transformers import TrainingArguments
from transformers.trainer_utils import SaveStrategy

from .acquisition import ACQUISITION_FUNCTIONS
from .config_checks import accelerator_available, check_finite_floats, check_share, dataclass_values, one_of
from .targeting import (
    CLASS_BUDGETS,
    LABEL_LOSS_STRATEGIES,
    TARGET_SOURCES,
    TARGET_STRATEGIES,
    ClassBudget,
    TargetSource,
    TargetStrategy,
)
from .uncertainty.registry import ESTIMATORS, UncertaintyMethod
from .uncertainty.subset import split_members

SelectionStrategy = Literal["top", "random", "band"]


@dataclass
class ActiveSynthesisConfig(TrainingArguments):
    r"""
    Configuration of [`ActiveSynthesisTrainer`]: the `TrainingArguments` of each training stage plus the loop's own
    settings. Works with `HfArgumentParser` (command line, `--config file.yaml` through the recipes, or
    `parse_yaml_file`).

    One cycle: estimate uncertainty on the real pool -> pick the `targets_per_class` most uncertain real examples of
    each class -> ask the generator for `candidates_per_sample` candidates per requested sample -> score and filter
    them -> keep `synthetic_samples_per_cycle` of the survivors (highest disagreement first) -> retrain on
    real ∪ synthetic with loss CE(real) + λ·CE(synth) -> evaluate. Cycles stop after `num_cycles` or when the
    validation metric has not improved by `plateau_min_delta` for `plateau_patience` cycles.
    """

    # Loop.
    num_cycles: int = field(default=3, metadata={"help": "Number of synthesis cycles after the real-only cycle 0."})
    synthetic_samples_per_cycle: int = field(
        default=64,
        metadata={
            "help": "Synthetic samples accepted into the training data per cycle. 0 retrains on the real data only "
            "(the real-only baseline: same cycles, same training, no generator needed)."
        },
    )
    targets_per_class: int = field(
        default=4,
        metadata={"help": "Most-uncertain real examples chosen per class as synthesis targets each cycle."},
    )
    candidates_per_sample: int = field(
        default=4,
        metadata={
            "help": "Candidates generated per accepted sample; the most uncertain survivors of the filters are kept."
        },
    )
    synthetic_loss_weight: float = field(
        default=0.3,
        metadata={"help": "λ in L = CE(real) + λ·CE(synth): the weight of each synthetic example's loss."},
    )
    selection_strategy: SelectionStrategy = field(
        default="top",
        metadata={
            "help": "How surviving candidates are kept per target: 'top' (highest acquisition score, the targeted "
            "product), 'random' (the random-synthetic baseline) or 'band' (scores within the target's "
            "[selection_band_low, selection_band_high] quantile band, closest to the band's middle first)."
        },
    )
    selection_band_low: float = field(
        default=0.25,
        metadata={"help": "selection_strategy='band': lower quantile of the band, among each target's candidates."},
    )
    selection_band_high: float = field(
        default=0.75,
        metadata={"help": "selection_strategy='band': upper quantile of the band, among each target's candidates."},
    )
    judge_members: int = field(
        default=0,
        metadata={
            "help": "J: the estimator's last J members only score, filter and select candidates (JUDGE members) "
            "and the first K - J only guide generation (GUIDE members), so selection never rewards samples that "
            "fool the members that produced the gradient. Targets use all members. 0: every member does both."
        },
    )
    target_strategy: TargetStrategy = field(
        default="uncertain",
        metadata={
            "help": "Which real examples become synthesis targets (and the generator's seed examples): 'uncertain' "
            "(the targets_per_class highest acquisition scores of each class), 'unlearned' (the highest ensemble "
            "cross-entropy of each row's label: examples not yet learned; not with target_source 'pool') or "
            "'random' (seeded random examples of each class, the random baselines)."
        },
    )
    random_target_cycles: int = field(
        default=0,
        metadata={
            "help": "The first N synthesis cycles target random real examples instead of by target_strategy (a cold "
            "start: the cycle-0 ensemble, fitted on the labelled rows alone, may be too weak for its uncertainty to "
            "pick useful targets; selection, guidance and filters are unchanged). 0: every cycle targets by "
            "target_strategy."
        },
    )
    guidance: bool = field(
        default=True,
        metadata={
            "help": "Steer generation with the estimator's gradients where the generator can (e.g. diffusion). "
            "False: sample without guidance (the same seeds, prompts and img2img anchoring otherwise)."
        },
    )
    targeted: bool | None = field(
        default=None,
        metadata={
            "help": "Deprecated: set target_strategy, guidance and selection_strategy instead. False stands for "
            "target_strategy='random', guidance=False, selection_strategy='random'; True changes nothing."
        },
    )
    target_source: TargetSource = field(
        default="train",
        metadata={
            "help": "Where targets come from: 'train' (the labelled rows, scored by the estimator fitted on them), "
            "'crossfit' (each labelled row scored by a fresh estimator fitted on the other crossfit_folds - 1 folds "
            "and every synthetic row: crossfit_folds extra fits per cycle, see crossfit.py) or 'pool' (the "
            "unlabelled pool_dataset, which the recipes pass: targets carry the ensemble's pseudo-label) or "
            "'pseudo_labelled_pool' (a pool_dataset labelled outside the loop: the image recipe's label spreading)."
        },
    )
    crossfit_folds: int = field(default=5, metadata={"help": "target_source='crossfit': number of folds, k."})
    pseudo_label_min_confidence: float = field(
        default=0.5,
        metadata={
            "help": "target_source='pool': least ensemble-mean probability of a row's pseudo-label for the row to "
            "be a target (uncertain yet not hopeless)."
        },
    )
    class_budget: ClassBudget = field(
        default="equal",
        metadata={
            "help": "Split of the cycle's budget over classes: 'equal', or 'uncertainty' (by each class's mean "
            "acquisition score over its candidate targets, above class_budget_floor times the equal quota)."
        },
    )
    class_budget_floor: float = field(
        default=0.5, metadata={"help": "class_budget='uncertainty': share of the equal quota every class keeps."}
    )
    hard_negative_share: float = field(
        default=0.0,
        metadata={
            "help": "Share of each cycle's budget spent on hard negatives (GeNIe): samples of the class the ensemble "
            "confuses a target with most, drawn from the target's own image (needs an img2img generator, e.g. the "
            "image recipe's --strength; text: the 'edit' prompt style). 0: every sample keeps its target's class."
        },
    )

    # Uncertainty.
    uncertainty_method: UncertaintyMethod = field(
        default="mc_dropout",
        metadata={"help": f"Uncertainty estimator: {', '.join(ESTIMATORS)}."},
    )
    ensemble_size: int = field(
        default=5, metadata={"help": "Ensemble members (or stochastic passes for MC dropout), K."}
    )
    acquisition_function: str = field(
        default="bald",
        metadata={"help": f"Uncertainty score used for targets and re-ranking: {', '.join(ACQUISITION_FUNCTIONS)}."},
    )
    member_num_train_epochs: float | None = field(
        default=None,
        metadata={"help": "Epochs to train each ensemble member or LoRA adapter (default: num_train_epochs)."},
    )

    member_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of each ensemble member or LoRA adapter (default: learning_rate)."},
    )

    # Stopping.
    plateau_patience: int = field(
        default=1,
        metadata={"help": "Stop after this many consecutive cycles without improving the validation metric."},
    )
    plateau_min_delta: float = field(
        default=0.0, metadata={"help": "Minimum improvement of the validation metric that counts as progress."}
    )
    cycle_metric: str = field(
        default="eval_accuracy",
        metadata={"help": "Validation metric that decides plateaus and the best cycle (higher is better)."},
    )
    load_best_cycle_at_end: bool = field(
        default=True,
        metadata={
            "help": "End `run_cycles` with the weights of the best validation cycle (by `cycle_metric`), as "
            "`load_best_model_at_end` does for epochs; False keeps the last cycle's weights."
        },
    )
    heldout_audit_members: int = field(
        default=0,
        metadata={
            "help": "Members of a second, held-out estimator (same kind, seeded apart) refitted every cycle to "
            "measure the disagreement of the accepted samples independently of the ensemble that guided and "
            "selected them (0: off)."
        },
    )

    # Data.
    input_column: str = field(
        default="text", metadata={"help": "Dataset column with the inputs (text or image) the generator produces."}
    )
    label_column: str = field(default="label", metadata={"help": "Dataset column with integer class labels."})
    max_length: int = field(default=128, metadata={"help": "Max tokens per text input when tokenizing."})

    # Hub.
    hub_dataset_id: str | None = field(
        default=None,
        metadata={"help": "Hub dataset repository for each cycle's synthetic data (config `cycle_k`)."},
    )
    publish_cycles: bool = field(
        default=True,
        metadata={
            "help": "Write every cycle's synthetic dataset and checkpoint in Hub layout under output_dir/hub "
            "(loadable with load_dataset / from_pretrained), with cards."
        },
    )
    push_cycles_to_hub: bool = field(
        default=False,
        metadata={
            "help": "Push each cycle's synthetic data and checkpoint to the Hub; otherwise they are written to "
            "`output_dir/hub/` in Hub layout."
        },
    )

    # Privacy (see `hf_active_synth.privacy`).
    privacy_audit: bool = field(
        default=True,
        metadata={
            "help": "Audit every cycle's accepted samples against the real training data: distance to the closest "
            "real record (DCR) against held-out real rows' DCR, near-copies (CycleResult.privacy_audit, dataset card)."
        },
    )
    privacy_max_closer_share: float | None = field(
        default=None,
        metadata={
            "help": "Refuse to push the synthetic dataset when more than this share of its samples is closer to a "
            "real training record than 95 percent of held-out real rows are (about 0.05 if the samples were fresh "
            "real data; e.g. 0.10). Unset: off. Local files are kept."
        },
    )
    privacy_max_near_copy_share: float | None = field(
        default=None,
        metadata={
            "help": "Refuse to push the synthetic dataset when more than this share of its samples are near-copies "
            "of a real training record at the near-copy filter's threshold (0: refuse any). Unset: off."
        },
    )

    # Output.
    show_cycle_progress: bool = field(
        default=True,
        metadata={
            "help": "Show one progress bar over every stage of every cycle, with the ETA, and silence the "
            "per-operation bars of datasets and transformers meanwhile. Independent of disable_tqdm (the Trainer's "
            "per-step bars, which the recipes turn off)."
        },
    )

    # Trainer defaults that differ from TrainingArguments.
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: the trainer builds model inputs itself and needs its `is_synthetic` column."},
    )
    save_strategy: SaveStrategy | str = field(
        default="no",
        metadata={"help": "Intermediate checkpoints inside a stage; each cycle is saved under output_dir/cycle-k."},
    )

    def __post_init__(self):
        check_finite_floats(dataclass_values(self))
        super().__post_init__()
        if self.dataloader_pin_memory and not accelerator_available():
            # Pinned memory only helps copies to an accelerator; without one torch warns at every DataLoader.
            self.dataloader_pin_memory = False
        if self.synthetic_samples_per_cycle < 0:
            raise ValueError(f"`synthetic_samples_per_cycle` must be >= 0, got {self.synthetic_samples_per_cycle}.")
        positive = {
            "num_cycles": self.num_cycles,
            "targets_per_class": self.targets_per_class,
            "candidates_per_sample": self.candidates_per_sample,
            "plateau_patience": self.plateau_patience,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}.")
        if self.ensemble_size < 2:
            raise ValueError(
                f"`ensemble_size` must be >= 2 to measure disagreement, got {self.ensemble_size}. Use 5 (the "
                "proposal's setting) unless memory is tight."
            )
        if self.synthetic_loss_weight < 0:
            raise ValueError(
                f"`synthetic_loss_weight` (λ) must be >= 0, got {self.synthetic_loss_weight}. 0.3 is the default."
            )
        if self.plateau_min_delta < 0:
            raise ValueError(f"`plateau_min_delta` must be >= 0, got {self.plateau_min_delta}.")
        if self.uncertainty_method not in ESTIMATORS:
            raise ValueError(
                f"Unknown `uncertainty_method` {self.uncertainty_method!r}; choose one of {list(ESTIMATORS)}."
            )
        if self.acquisition_function not in ACQUISITION_FUNCTIONS:
            raise ValueError(
                f"Unknown `acquisition_function` {self.acquisition_function!r}; choose one of "
                f"{list(ACQUISITION_FUNCTIONS)}."
            )
        if self.selection_strategy not in get_args(SelectionStrategy):
            raise ValueError(f"`selection_strategy` must be 'top', 'random' or 'band': {self.selection_strategy!r}.")
        if not 0.0 <= self.selection_band_low < self.selection_band_high <= 1.0:
            raise ValueError(
                f"Need 0 <= selection_band_low < selection_band_high <= 1 (quantiles), got "
                f"{self.selection_band_low} and {self.selection_band_high}."
            )
        if self.judge_members:
            split_members(self.ensemble_size, self.judge_members)  # raises with the fix when a side has < 2
        if self.heldout_audit_members < 0 or self.heldout_audit_members == 1:
            raise ValueError(
                f"`heldout_audit_members` must be 0 (off) or >= 2 (one model has no disagreement), got "
                f"{self.heldout_audit_members}."
            )
        if self.member_learning_rate is not None and self.member_learning_rate <= 0:
            raise ValueError(f"`member_learning_rate` must be > 0, got {self.member_learning_rate}.")
        if self.member_num_train_epochs is not None and self.member_num_train_epochs <= 0:
            raise ValueError(f"`member_num_train_epochs` must be > 0, got {self.member_num_train_epochs}.")
        if self.push_cycles_to_hub and not (self.hub_model_id or self.hub_dataset_id):
            raise ValueError(
                "`push_cycles_to_hub=True` needs somewhere to push: set `hub_model_id` and/or `hub_dataset_id`."
            )
        if self.input_column == self.label_column:
            raise ValueError(f"`input_column` and `label_column` are both {self.input_column!r}; they must differ.")
        if self.targeted is not None:
            import warnings

            warnings.warn(
                "`targeted` is deprecated: set `target_strategy`, `guidance` and `selection_strategy` instead "
                "(`targeted=False` is target_strategy='random', guidance=False, selection_strategy='random').",
                FutureWarning,
                stacklevel=2,
            )
            if not self.targeted:
                self.target_strategy, self.guidance, self.selection_strategy = "random", False, "random"
            # Translated once: later `dataclasses.replace` copies keep the new fields and do not re-apply it.
            self.targeted = None
        if not isinstance(self.random_target_cycles, int) or self.random_target_cycles < 0:
            raise ValueError(
                f"`random_target_cycles` must be a whole number of cycles >= 0, got {self.random_target_cycles!r}."
            )
        if self.target_strategy not in TARGET_STRATEGIES:
            raise ValueError(f"`target_strategy` must be {one_of(TARGET_STRATEGIES)}, got {self.target_strategy!r}.")
        if self.target_source not in TARGET_SOURCES:
            raise ValueError(f"`target_source` must be {one_of(TARGET_SOURCES)}, got {self.target_source!r}.")
        if self.target_strategy in LABEL_LOSS_STRATEGIES and self.target_source == "pool":
            # With 'pool' a row's class is the ensemble's own argmax, so its label loss is just its least confidence.
            raise ValueError(
                f"`target_strategy={self.target_strategy!r}` ranks targets by how little the ensemble believes their "
                "label, which needs labels from outside the ensemble; `target_source='pool'` labels rows with the "
                "ensemble's own argmax. Use target_source 'train', 'crossfit' or 'pseudo_labelled_pool', or "
                "target_strategy 'uncertain'."
            )
        if self.crossfit_folds < 2:
            raise ValueError(f"`crossfit_folds` must be >= 2, got {self.crossfit_folds}.")
        if self.class_budget not in CLASS_BUDGETS:
            raise ValueError(f"`class_budget` must be {one_of(CLASS_BUDGETS)}, got {self.class_budget!r}.")
        for name in ("privacy_max_closer_share", "privacy_max_near_copy_share"):
            check_share(name, getattr(self, name))
        for name in ("pseudo_label_min_confidence", "class_budget_floor", "hard_negative_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {getattr(self, name)}.")

    @property
    def synthesizes(self) -> bool:
        """Whether cycles generate synthetic data (False for the real-only baseline)."""
        return self.synthetic_samples_per_cycle > 0

    @property
    def effective_member_epochs(self) -> float:
        """Epochs per ensemble member: `member_num_train_epochs`, or `num_train_epochs` when unset."""
        return self.member_num_train_epochs if self.member_num_train_epochs is not None else self.num_train_epochs

    def member_args(self, seed: int, output_dir: str) -> ActiveSynthesisConfig:
        """The settings that train one ensemble member (or LoRA adapter): these, with the member's seed,
        `member_num_train_epochs` and `member_learning_rate`, and no checkpoints, evaluation, logging to trackers
        or Hub pushes (the same Accelerate set-up, since every other field is kept).

        Args:
            seed (`int`): The member's seed (also its data-order seed).
            output_dir (`str`): Where the member's Trainer may write (nothing is saved there).
        """
        return dataclasses.replace(
            self,
            output_dir=output_dir,
            seed=seed,
            data_seed=seed,
            num_train_epochs=self.effective_member_epochs,
            # LoRA adapters start at zero and usually want a larger step than full fine-tuning.
            learning_rate=self.member_learning_rate or self.learning_rate,
            max_steps=-1,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            push_to_hub=False,
            report_to="none",
            disable_tqdm=True,
        )

    @contextmanager
    def without_hub_token(self) -> Iterator[ActiveSynthesisConfig]:
        """Sets `hub_token` to `None` inside the block, so the token stays out of `training_args.bin` (which
        `Trainer.save_model` pickles next to the weights); restores it on exit."""
        token, self.hub_token = self.hub_token, None
        try:
            yield self
        finally:
            self.hub_token = token

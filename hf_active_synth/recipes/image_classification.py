"""Image classification with diffusion-based active synthesis (the code behind `recipes/image_classification.py`).

Default (offline, embedded): scikit-learn's 8x8 digits with 10 labelled images per class, a tiny ResNet classifier,
a deep ensemble, and a class-conditional DDPM (cached in the output dir). `recipes/configs/digits.yaml` trains that
DDPM on the labelled images and on the unlabelled pool (`--ddpm_training_images labelled_and_pool`: pool images with a
confident label-spreading pseudo-label), targets the pool images the ensemble is least sure of
(`target_source: pseudo_labelled_pool`) and draws each synthetic image as an SDEdit of its target (`--strength`);
ensemble-disagreement guidance during sampling (`guidance`, `--guidance_scale`, `--label_scale`) is available and off
there, because it lowered validation accuracy in the sweep (`recipes/results/digits/sweep.md`).

With hardware and network: `--dataset_name` (a Hub id or a local `imagefolder`), `--model_name_or_path` (any
`AutoModelForImageClassification` checkpoint) and `--pipeline_name_or_path` (a Stable Diffusion checkpoint; prompts
from `--prompt_template`, img2img from the uncertain real images with `--strength`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import PartialState
from datasets import ClassLabel, Dataset, concatenate_datasets, load_dataset
from transformers import AutoImageProcessor, AutoModelForImageClassification

from ..config import ActiveSynthesisConfig
from ..evaluation.audit import ImageOracle
from ..filters import ExactDuplicateFilter, Filter, label_filters
from ..filters.denoising import DenoisingRealismFilter, denoiser_components
from ..filters.image import NearCopyFilter, NearDuplicateFilter, RealismFilter
from ..generators.diffusion import DiffusionGenerator
from ..generators.diffusion_guidance import check_label_safety
from ..tasks.digits import (
    DIGITS_LABEL_NAMES,
    digits_to_model_inputs,
    make_digits_classifier,
    preprocess_digits,
    split_digits,
    train_class_conditional_ddpm,
)
from ..tasks.pseudo_labels import pseudo_label_images
from .base import Recipe, RecipeTask, pretrained_classifier
from .parsing import check_optional_probabilities
from .running import RunModeArguments

logger = logging.getLogger(__name__)

IMAGE_CORRUPTIONS = {
    "gaussian_noise": [1, 3, 5],
    "gaussian_blur": [1, 3, 5],
    "occlusion": [1, 3, 5],
    "rotation": [1, 3, 5],
}

# Recipe defaults on top of ActiveSynthesisConfig's (every one can be overridden by --config or the command line).
RECIPE_DEFAULTS: dict[str, Any] = {
    "output_dir": "runs/digits",
    "input_column": "image",
    "num_cycles": 3,
    "synthetic_samples_per_cycle": 100,
    "targets_per_class": 5,
    "candidates_per_sample": 3,
    "synthetic_loss_weight": 0.3,
    "uncertainty_method": "deep_ensemble",
    "ensemble_size": 5,
    "acquisition_function": "bald",
    "heldout_audit_members": 3,
    "plateau_patience": 3,
    "num_train_epochs": 15,
    "member_num_train_epochs": 15,
    "learning_rate": 3e-3,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 256,
    "logging_strategy": "no",
    "disable_tqdm": True,
    "dataloader_num_workers": 0,
}


@dataclass
class ImageScriptArguments(RunModeArguments):
    """Data, generator and run-mode arguments of the image recipe."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub id or local folder of an image-classification dataset; default: scikit-learn digits."},
    )
    train_split: str = field(default="train", metadata={"help": "Split with the labelled training images."})
    test_split: str = field(default="test", metadata={"help": "Split with the held-out test images."})
    train_per_class: int = field(default=10, metadata={"help": "Labelled real training images kept per class."})
    eval_fraction: float = field(
        default=0.25, metadata={"help": "Share of the non-training images used for validation (the rest is the pool)."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the data splits (shared by every method and seed)."})
    pipeline_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A diffusers (Stable Diffusion) checkpoint; default: train a class-conditional DDPM."},
    )
    prompt_template: str = field(
        default="a photo of {label_name}", metadata={"help": "Stable Diffusion prompt per class."}
    )
    strength: float | None = field(
        default=None, metadata={"help": "img2img strength from the uncertain real image; default: from noise."}
    )
    ddpm_train_steps: int = field(default=600, metadata={"help": "Training steps of the digits DDPM."})
    ddpm_training_images: Literal["labelled", "labelled_and_pool"] = field(
        default="labelled",
        metadata={
            "help": "What the embedded DDPM learns from: the 'labelled' training images, or also the unlabelled "
            "pool ('labelled_and_pool'), each pool image with its label-spreading pseudo-label when confident "
            "enough (never validation or test images; the pool's labels are never read)."
        },
    )
    label_spreading_min_confidence: float = field(
        default=0.9,
        metadata={
            "help": "Label spreading (for the DDPM's labelled_and_pool and target_source 'pseudo_labelled_pool'): "
            "keep a pool image when its pseudo-label has at least this probability."
        },
    )
    num_inference_steps: int = field(default=25, metadata={"help": "Denoising steps per sample."})
    guidance_scale: float = field(default=0.2, metadata={"help": "Weight of the ensemble-disagreement gradient."})
    label_scale: float = field(default=0.1, metadata={"help": "Weight of the label-keeping gradient."})
    label_floor: float | None = field(
        default=None,
        metadata={
            "help": "Label-safe guidance: the disagreement gradient acts on a sample only while the guiding "
            "members give its label at least this probability (at the predicted clean image); default: always."
        },
    )
    guidance_window: float = field(
        # 0.5: on the digits validation sweep (recipes/results/digits/guidance_sweep.md) guiding the first half of the
        # steps gave the same accuracy as guiding all of them (-0.0008, 4 pairs) at 1.37x instead of 1.69x the
        # unguided sampling time (benchmarks/README.md).
        default=0.5,
        metadata={
            "help": "With guidance on: guide only the first this share of the denoising steps; 1.0: every step."
        },
    )
    guidance_normalization: Literal["separate", "joint"] = field(
        default="separate",
        metadata={
            "help": "RMS-normalise the disagreement and label gradients 'separate'ly (the scales then fix their "
            "ratio) or their weighted sum once ('joint')."
        },
    )
    min_label_probability: float | None = field(
        default=None,
        metadata={
            "help": "Reject samples whose intended label gets less mean probability than this from the judging "
            "members (a label-probability floor filter); default: no floor."
        },
    )
    min_label_probability_top_up: bool = field(
        default=True,
        metadata={
            "help": "When fewer samples than the cycle requests reach --min_label_probability (a weak ensemble, a "
            "harder data set), also keep the most probable of the others up to that number instead of leaving the "
            "cycle short or empty; false: drop everything under the floor."
        },
    )
    realism_quantile: float | None = field(
        default=None,
        metadata={
            "help": "Reject samples that look less real to the realism discriminator than this quantile of held-out "
            "real images (e.g. 0.05); default: realism is only recorded."
        },
    )
    denoising_realism_quantile: float | None = field(
        default=None,
        metadata={
            "help": "Also reject samples the recipe's class-conditional DDPM denoises worse (noise-prediction error "
            "at mid noise, under their label) than all but this share of the real training images (e.g. 0.05); "
            "default: off."
        },
    )
    max_other_probability: float = field(
        default=0.9,
        metadata={"help": "Label agreement: reject a sample the ensemble gives another class above this."},
    )
    near_copy_threshold: float = field(
        default=0.04, metadata={"help": "Privacy: reject samples closer than this (RMS pixel distance) to a real one."}
    )

    def __post_init__(self):
        super().__post_init__()
        # Checked here, before any training: the generator and filters would only fail at the first cycle.
        check_label_safety(self.label_floor, self.guidance_normalization)
        if not 0.0 < self.guidance_window <= 1.0:
            raise ValueError(f"`--guidance_window` is a share of the steps in (0, 1], got {self.guidance_window}.")
        if not 0.0 <= self.label_spreading_min_confidence < 1.0:
            raise ValueError(
                f"`--label_spreading_min_confidence` must be in [0, 1), got {self.label_spreading_min_confidence}."
            )
        check_optional_probabilities(self, "min_label_probability", "realism_quantile", "denoising_realism_quantile")


@dataclass
class ImageModelArguments:
    """Which classifier to train."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "An image-classification checkpoint; default: a tiny digits classifier."}
    )
    architecture: Literal["resnet", "convnext"] = field(
        default="resnet", metadata={"help": "Tiny digits classifier architecture (when no checkpoint is given)."}
    )


def _split_validation(rest: Dataset, fraction: float, seed: int, label_column: str) -> tuple[Dataset, Dataset]:
    parts = rest.train_test_split(test_size=fraction, seed=seed, stratify_by_column=label_column)
    return parts["test"], parts["train"]


def load_task(
    script_args: ImageScriptArguments, config: ActiveSynthesisConfig, model_args: ImageModelArguments
) -> RecipeTask:
    """Builds the data splits, the classifier factory and the guided diffusion generator."""
    label_column = config.label_column
    if script_args.dataset_name is None:
        splits = split_digits(train_per_class=script_args.train_per_class, seed=script_args.split_seed)
        validation, pool = _split_validation(
            splits["pool"], script_args.eval_fraction, script_args.split_seed, label_column
        )
        train, test, label_names = splits["train"], splits["test"], list(DIGITS_LABEL_NAMES)
    else:
        dataset = load_dataset(script_args.dataset_name)
        full_train = dataset[script_args.train_split]
        if not isinstance(full_train.features.get(label_column), ClassLabel):
            raise ValueError(f"{script_args.dataset_name} needs a ClassLabel column {label_column!r}.")
        label_names = list(full_train.features[label_column].names)
        per_class = script_args.train_per_class * len(label_names)
        parts = full_train.train_test_split(
            train_size=per_class, seed=script_args.split_seed, stratify_by_column=label_column
        )
        train = parts["train"]
        validation, pool = _split_validation(
            parts["test"], script_args.eval_fraction, script_args.split_seed, label_column
        )
        test = dataset[script_args.test_split]

    if model_args.model_name_or_path is None:

        def make_model(seed: int) -> torch.nn.Module:
            return make_digits_classifier(model_args.architecture, seed=seed, label_names=label_names)

        processing_class = None

        # A partial of an importable function (not a closure): the model card can print how to preprocess.
        preprocess = functools.partial(preprocess_digits, image_column=config.input_column)

        to_model_inputs = digits_to_model_inputs
    else:
        processing_class = AutoImageProcessor.from_pretrained(model_args.model_name_or_path)
        make_model = pretrained_classifier(
            AutoModelForImageClassification, model_args.model_name_or_path, label_names, ignore_mismatched_sizes=True
        )
        preprocess = None
        to_model_inputs = _differentiable_processor(processing_class)

    pseudo_labelled = _pseudo_labelled_pool(script_args, config, train, pool)
    generator = _make_generator(script_args, config, train, pseudo_labelled, to_model_inputs, len(label_names))
    return RecipeTask(
        train,
        validation,
        pool,
        test,
        label_names,
        make_model,
        generator,
        processing_class=processing_class,
        preprocess=preprocess,
        pseudo_labelled_pool=pseudo_labelled,
    )


def _differentiable_processor(processor: Any):
    """Resize + normalise like `processor`, in torch, so guidance gradients reach the pixels."""
    size = processor.size
    height, width = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
    mean = torch.tensor(processor.image_mean).view(1, -1, 1, 1)
    std = torch.tensor(processor.image_std).view(1, -1, 1, 1)

    def to_model_inputs(images: torch.Tensor) -> dict[str, torch.Tensor]:
        images = torch.nn.functional.interpolate(images, size=(height, width), mode="bilinear", antialias=True)
        if images.shape[1] == 1 and mean.shape[1] == 3:
            images = images.expand(-1, 3, -1, -1)
        return {"pixel_values": (images - mean.to(images)) / std.to(images)}

    return to_model_inputs


def _pseudo_labelled_pool(script_args, config, train: Dataset, pool: Dataset) -> Dataset | None:
    """The pool images whose label-spreading pseudo-label is confident enough, labelled with it, when the DDPM or
    the targets need them (`--ddpm_training_images labelled_and_pool` with the embedded DDPM, `target_source:
    pseudo_labelled_pool`); a pretrained `--pipeline_name_or_path` trains nothing on them."""
    trains_ddpm_on_pool = (
        script_args.pipeline_name_or_path is None and script_args.ddpm_training_images == "labelled_and_pool"
    )
    needed = trains_ddpm_on_pool or config.target_source == "pseudo_labelled_pool"
    if not needed:
        return None
    columns = [config.input_column, config.label_column]
    pseudo = pseudo_label_images(
        train.select_columns(columns),
        pool.select_columns([config.input_column]),  # the pool's labels are never handed over
        image_column=config.input_column,
        label_column=config.label_column,
        min_confidence=script_args.label_spreading_min_confidence,
    )
    logger.info(
        "Label spreading kept %d of %d pool images (pseudo-label confidence >= %.2f).",
        len(pseudo.rows),
        pseudo.num_unlabelled,
        script_args.label_spreading_min_confidence,
    )
    return pseudo.dataset.cast(train.select_columns(columns).features)


def _ddpm_training_images(script_args, config, train: Dataset, pseudo_labelled: Dataset | None) -> Dataset:
    """The labelled images, plus the confidently pseudo-labelled pool with `labelled_and_pool`."""
    if script_args.ddpm_training_images == "labelled":
        return train
    return concatenate_datasets([train.select_columns([config.input_column, config.label_column]), pseudo_labelled])


def _make_generator(
    script_args, config, train: Dataset, pseudo_labelled: Dataset | None, to_model_inputs, num_labels: int
) -> DiffusionGenerator:
    if script_args.pipeline_name_or_path is None:
        images = _ddpm_training_images(script_args, config, train, pseudo_labelled)
        # Train once (main process first), then every process loads the cached pipeline.
        with PartialState().main_process_first():
            pipeline = train_class_conditional_ddpm(
                images,
                Path(config.output_dir) / "ddpm",
                image_column=config.input_column,
                label_column=config.label_column,
                num_train_steps=script_args.ddpm_train_steps,
                seed=script_args.split_seed,
                num_labels=num_labels,
            )
        prompts = None
    else:
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

        auto = AutoPipelineForImage2Image if script_args.strength is not None else AutoPipelineForText2Image
        pipeline = auto.from_pretrained(script_args.pipeline_name_or_path)
        prompts = script_args.prompt_template
    return DiffusionGenerator(
        pipeline,
        to_model_inputs,
        prompts=prompts,
        strength=script_args.strength,
        guidance_scale=script_args.guidance_scale,
        label_scale=script_args.label_scale,
        acquisition="variance",
        guidance_end=script_args.guidance_window,
        label_floor=script_args.label_floor,
        guidance_normalization=script_args.guidance_normalization,
        num_inference_steps=script_args.num_inference_steps,
        name=f"diffusion:{script_args.pipeline_name_or_path or 'digits-ddpm'}",
        show_progress=not config.disable_tqdm,
    )


def make_filters(script_args: ImageScriptArguments, task: RecipeTask | None = None) -> list[Filter]:
    """Label agreement (and, with `--min_label_probability`, a label-probability floor), exact and near duplicates,
    privacy near-copies of real images, realism (a threshold with `--realism_quantile`, calibrated at every cycle on
    the real training images, each scored by a discriminator that did not see it), and with
    `--denoising_realism_quantile` the DDPM's own denoising error (calibrated at every cycle on the real training
    images): that one needs the `task`, whose generator's pipeline it scores with (loaded once, shared)."""
    quantile = script_args.realism_quantile
    filters = [
        *label_filters(
            script_args.max_other_probability,
            script_args.min_label_probability,
            top_up=script_args.min_label_probability_top_up,
        ),
        ExactDuplicateFilter(),
        NearDuplicateFilter(),
        NearCopyFilter(threshold=script_args.near_copy_threshold),
        RealismFilter() if quantile is None else RealismFilter.calibrated(quantile),
    ]
    if script_args.denoising_realism_quantile is not None:
        pipeline = _denoising_pipeline(task)
        filters.append(DenoisingRealismFilter.calibrated(pipeline, script_args.denoising_realism_quantile))
    return filters


def _denoising_pipeline(task: RecipeTask | None) -> Any:
    """The task generator's pipeline, checked to be one `DenoisingRealismFilter` can score."""
    if task is None:
        raise ValueError(
            "`--denoising_realism_quantile` scores candidates with the recipe's DDPM: call make_filters(script_args, "
            "task) with the task load_task built."
        )
    pipeline = getattr(task.generator, "pipeline", None)
    try:
        denoiser_components(pipeline)
    except ValueError as error:
        raise ValueError(
            f"`--denoising_realism_quantile` needs a class-conditional pixel-space DDPM (the embedded digits one, or a "
            f"ClassConditionalImagePipeline); this generator's {type(pipeline).__name__} cannot be scored: {error} "
            "Use `--realism_quantile` for other pipelines."
        ) from error
    return pipeline


RECIPE = Recipe(
    ImageScriptArguments, ImageModelArguments, RECIPE_DEFAULTS, load_task, make_filters, IMAGE_CORRUPTIONS, ImageOracle
)
make_parser, build_trainer, main, cli = RECIPE.make_parser, RECIPE.build_trainer, RECIPE.main, RECIPE.cli

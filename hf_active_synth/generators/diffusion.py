"""`DiffusionGenerator`: class-conditional diffusion sampling steered by ensemble disagreement.

It wraps a diffusers pipeline and, for requests that carry an estimator (`guidance=True`), passes an
`EnsembleGuidanceCallback` as `callback_on_step_end`, so every denoising step pushes the latents towards inputs the
current ensemble disagrees on while keeping the intended class. Supported pipelines:

* `ClassConditionalImagePipeline` (a class-conditional `UNet2DModel` + DDPM/DDIM scheduler), from noise or, with
  `strength`, from the target's real image (SDEdit);
* the Stable Diffusion family: `StableDiffusionPipeline` with one prompt per class, and with `strength`
  `StableDiffusionImg2ImgPipeline` starting from the target's real image (either pipeline is converted to the
  other with `from_pipe` as needed, sharing weights).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from datasets import ClassLabel, Dataset, Value
from datasets import Image as ImageFeature
from tqdm.auto import tqdm

from ..acquisition import AcquisitionFunction
from ..columns import (  # noqa: F401  (the column names stay importable from here)
    ACQUISITION_COLUMN,
    GUIDANCE_SCALE_COLUMN,
    LABEL_SCALE_COLUMN,
    NUM_STEPS_COLUMN,
    PROMPT_COLUMN,
    SAMPLE_SEED_COLUMN,
    STRENGTH_COLUMN,
    build_candidates,
)
from ..image_utils import pil_to_tensor, tensor_to_pil
from .base import GenerationRequest, SynthesisTarget
from .diffusion_guidance import (
    EnsembleGuidanceCallback,
    GuidanceNormalization,
    ImagesToModelInputs,
    check_label_safety,
    resolve_acquisition,
)
from .diffusion_pipeline import ClassConditionalImagePipeline


def derive_sample_seed(seed: int, target_id: int, candidate_index: int) -> int:
    """The seed of one candidate's noise, from the request seed, its target and its index within the target.

    It depends on nothing else (not the batch, not the guidance settings), so guided and unguided runs with the same
    request seed start from the same noise, and re-batching does not change a sample.
    """
    return int(np.random.SeedSequence([seed, target_id, candidate_index]).generate_state(1, dtype=np.uint64)[0] >> 1)


@dataclass(frozen=True)
class _Job:
    target: SynthesisTarget
    candidate_index: int
    seed: int


class DiffusionGenerator:
    r"""Proposes images for synthesis targets with a diffusers pipeline guided by ensemble disagreement.

    Each target yields `target.num_samples * request.candidates_per_sample` images of `target.label`. Guidance is
    on if and only if `request.estimator` is given (and `guidance_scale` or `label_scale` is > 0): then sampling
    runs with an `EnsembleGuidanceCallback` built from it; without it the same code samples unguided. Anchoring does
    not depend on guidance: with `strength` set, every candidate starts from its target's real image (random targets
    for the random baselines), otherwise from pure noise. Every candidate's noise is seeded by `derive_sample_seed`,
    so a guided and an unguided request with the same seed and targets start from the same noise and image.

    Args:
        pipeline (`DiffusionPipeline`): A `ClassConditionalImagePipeline`, or a Stable Diffusion text-to-image or
            image-to-image pipeline.
        to_model_inputs (`Callable[[Tensor], Mapping[str, Tensor]]`): Differentiable map from the pipeline's
            images (`[B, C, H, W]` in `[0, 1]`) to the estimator's inputs, e.g. `{"pixel_values": ...}`.
        prompts (`str` or `Sequence[str]`, *optional*): Stable Diffusion only: one prompt per class id, or a template
            formatted with `label` (the id) and `label_name`. Defaults to `"a photo of {label_name}"`.
        strength (`float`, *optional*): If set, every candidate starts from its target's real image noised to this
            strength (img2img / SDEdit), guided or not; if `None`, from pure noise.
        guidance_scale (`float`, defaults to 0.2): Weight of the disagreement gradient (see
            `EnsembleGuidanceCallback`). Stable Diffusion's classifier-free guidance scale goes in
            `pipeline_kwargs={"guidance_scale": ...}`.
        label_scale (`float`, defaults to 0.1): Weight of the `log p̄(y=c|x̂0)` gradient that keeps the label.
        label_floor (`float`, *optional*): Label-safe guidance: the disagreement step only acts on a sample while
            the estimator's `p̄(y=c|x̂0)` is at least this; `None` (default) always.
        guidance_normalization (`str`, defaults to `"separate"`): `"separate"` RMS-normalizes each gradient term,
            `"joint"` their weighted sum (see `EnsembleGuidanceCallback`).
        acquisition (`str` or `Callable`, defaults to `"variance"`): The disagreement measure guided on.
        guidance_start (`float`, defaults to 0.0): First guided fraction of the schedule.
        guidance_end (`float`, defaults to 1.0): Guidance stops from this fraction of the schedule on: the guidance
            window (0.5 guides the first half of the denoising steps only, the early steps that set the layout).
        guidance_decay (`float`, defaults to 1.0): Exponent of the `(1 - i/N)` step-size decay.
        normalize_gradient (`bool`, defaults to `True`): RMS-normalize each gradient per sample.
        backprop_through_denoiser (`bool`, defaults to `False`): Also differentiate `x̂0` through the denoiser
            (slower; see `EnsembleGuidanceCallback`).
        reuse_denoiser_prediction (`bool`, *optional*): Score the step's own `x̂0` instead of re-running the
            denoiser on the new latents; `None` (default) does wherever the pipeline hands it over
            (`ClassConditionalImagePipeline`, not Stable Diffusion) and `backprop_through_denoiser` is off, so a
            guided step costs one denoiser call. `False` forces the re-prediction (see `EnsembleGuidanceCallback`).
        num_inference_steps (`int`, defaults to 25): Denoising steps.
        batch_size (`int`, defaults to 32): Images per pipeline call.
        pipeline_kwargs (`dict`, *optional*): Extra keyword arguments for every pipeline call (`eta`,
            `guidance_scale`, `negative_prompt`, `height`, ...).
        to_image (`Callable[[Tensor], PIL.Image.Image]`, *optional*): Converts one `[C, H, W]` image in `[0, 1]` to
            the stored image; defaults to an 8-bit `"L"`/`"RGB"` PIL image.
        name (`str`, defaults to `"diffusion"`): Recorded in the `synth_generator` column.
        show_progress (`bool`, defaults to `True`): Show a tqdm bar over candidates.

    Example:

    ```py
    >>> generator = DiffusionGenerator(pipeline, to_model_inputs=digits_to_model_inputs, guidance_scale=0.2)
    >>> candidates = generator.generate(request)  # a datasets.Dataset with image, label and synth_* columns
    ```
    """

    def __init__(
        self,
        pipeline: Any,
        to_model_inputs: ImagesToModelInputs,
        *,
        prompts: str | Sequence[str] | None = None,
        strength: float | None = None,
        guidance_scale: float = 0.2,
        label_scale: float = 0.1,
        label_floor: float | None = None,
        guidance_normalization: GuidanceNormalization = "separate",
        acquisition: str | AcquisitionFunction = "variance",
        guidance_start: float = 0.0,
        guidance_end: float = 1.0,
        guidance_decay: float = 1.0,
        normalize_gradient: bool = True,
        backprop_through_denoiser: bool = False,
        reuse_denoiser_prediction: bool | None = None,
        num_inference_steps: int = 25,
        batch_size: int = 32,
        pipeline_kwargs: Mapping[str, Any] | None = None,
        to_image: Callable[[torch.Tensor], PIL.Image.Image] | None = None,
        name: str = "diffusion",
        show_progress: bool = True,
    ):
        self.pipeline = pipeline
        self.to_model_inputs = to_model_inputs
        self.prompts = prompts
        self.strength = strength
        self.guidance_scale = guidance_scale
        self.label_scale = label_scale
        self.acquisition = acquisition
        self.guidance_start = guidance_start
        self.guidance_end = guidance_end
        self.guidance_decay = guidance_decay
        self.normalize_gradient = normalize_gradient
        self.backprop_through_denoiser = backprop_through_denoiser
        self.reuse_denoiser_prediction = reuse_denoiser_prediction
        self.label_floor = label_floor
        self.guidance_normalization = guidance_normalization
        self.num_inference_steps = num_inference_steps
        self.batch_size = batch_size
        self.pipeline_kwargs = pipeline_kwargs
        self.to_image = to_image
        self.name = name
        self.show_progress = show_progress

    # ----------------------------------------------------------------------------------------------- validation
    @property
    def is_class_conditional(self) -> bool:
        """Whether the pipeline is conditioned on class ids (else on prompts, the Stable Diffusion family)."""
        return isinstance(self.pipeline, ClassConditionalImagePipeline)

    def _validate(self, request: GenerationRequest) -> None:
        if not callable(self.to_model_inputs):
            raise TypeError("`to_model_inputs` must be a callable mapping images [B, C, H, W] to model inputs.")
        if self.batch_size < 1 or self.num_inference_steps < 1:
            raise ValueError("`batch_size` and `num_inference_steps` must be >= 1.")
        if self.strength is not None and not 0.0 < self.strength <= 1.0:
            raise ValueError(f"`strength` must be in (0, 1] or None (start from noise), got {self.strength}.")
        hard_negatives = request.hard_negative_ids
        if hard_negatives and self.strength is None:
            raise ValueError(
                f"Targets {hard_negatives[:5]} are hard negatives (samples of another class drawn from the target's "
                "image), but this generator samples from noise: set `strength` (img2img / SDEdit, e.g. 0.7) or "
                "`hard_negative_share=0`."
            )
        if self.guidance_scale < 0 or self.label_scale < 0:
            raise ValueError("`guidance_scale` and `label_scale` must be >= 0 (0 disables that term).")
        resolve_acquisition(self.acquisition)
        check_label_safety(self.label_floor, self.guidance_normalization, self.normalize_gradient)
        if not self.is_class_conditional and not hasattr(self.pipeline, "encode_prompt"):
            raise TypeError(
                f"{type(self.pipeline).__name__} is not supported: use ClassConditionalImagePipeline or a Stable "
                "Diffusion (text-to-image or image-to-image) pipeline."
            )
        if not request.targets:
            raise ValueError("The request has no targets: nothing to generate.")
        if request.candidates_per_sample < 1:
            raise ValueError(f"candidates_per_sample must be >= 1, got {request.candidates_per_sample}.")
        if self.is_class_conditional:
            num_classes = self.pipeline.unet.config.num_class_embeds
            bad = sorted({t.label for t in request.targets if not 0 <= t.label < (num_classes or 0)})
            if bad:
                raise ValueError(f"Target labels {bad} are outside the pipeline's {num_classes} class embeddings.")

    def _guided(self, request: GenerationRequest) -> bool:
        """Guidance iff the request carries an estimator and a guidance term is on."""
        return request.estimator is not None and (self.guidance_scale > 0 or self.label_scale > 0)

    def _from_image(self, request: GenerationRequest) -> bool:
        """img2img from the target's image whenever `strength` is set, for every request."""
        return self.strength is not None

    # ---------------------------------------------------------------------------------------------- pipelines
    def _resolve_pipeline(self, from_image: bool) -> Any:
        """The pipeline to call: SD text-to-image and image-to-image are swapped with `from_pipe` as needed."""
        if self.is_class_conditional:
            return self.pipeline
        takes_image = "strength" in inspect.signature(self.pipeline.__call__).parameters
        if from_image == takes_image:
            return self.pipeline
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

        auto = AutoPipelineForImage2Image if from_image else AutoPipelineForText2Image
        return auto.from_pipe(self.pipeline)

    def _prompt(self, label: int, label_names: list[str] | None) -> str:
        prompts = "a photo of {label_name}" if self.prompts is None else self.prompts
        label_name = label_names[label] if label_names is not None else str(label)
        if isinstance(prompts, str):
            return prompts.format(label=label, label_name=label_name)
        if label >= len(prompts):
            raise ValueError(f"`prompts` has {len(prompts)} entries but a target has label {label}.")
        return prompts[label]

    def _image_geometry(self, pipeline: Any) -> tuple[int, tuple[int, int]]:
        """`(channels, (height, width))` of the pipeline's images."""
        if self.is_class_conditional:
            channels, height, width = pipeline.image_shape
            return channels, (height, width)
        kwargs = dict(self.pipeline_kwargs or {})
        size = pipeline.unet.config.sample_size
        default = size * pipeline.vae_scale_factor if isinstance(size, int) else size[0] * pipeline.vae_scale_factor
        return 3, (kwargs.get("height", default), kwargs.get("width", default))

    def _call_pipeline(
        self, pipeline: Any, jobs: list[_Job], request: GenerationRequest, guided: bool, from_image: bool
    ) -> torch.Tensor:
        labels = torch.tensor([job.target.label for job in jobs], dtype=torch.long)
        generators = [torch.Generator().manual_seed(job.seed) for job in jobs]
        kwargs: dict[str, Any] = dict(self.pipeline_kwargs or {})
        kwargs.update(num_inference_steps=self.num_inference_steps, generator=generators, output_type="pt")
        if guided:
            kwargs["callback_on_step_end"] = EnsembleGuidanceCallback(
                estimator=request.estimator,
                to_model_inputs=self.to_model_inputs,
                class_labels=labels,
                conditioning="class_labels" if self.is_class_conditional else "prompt_embeds",
                guidance_scale=self.guidance_scale,
                label_scale=self.label_scale,
                acquisition=self.acquisition,
                guidance_start=self.guidance_start,
                guidance_end=self.guidance_end,
                guidance_decay=self.guidance_decay,
                normalize_gradient=self.normalize_gradient,
                backprop_through_denoiser=self.backprop_through_denoiser,
                reuse_denoiser_prediction=self.reuse_denoiser_prediction,
                label_floor=self.label_floor,
                guidance_normalization=self.guidance_normalization,
            )
        if from_image:
            channels, size = self._image_geometry(pipeline)
            images = torch.stack([pil_to_tensor(job.target.example, channels, size) for job in jobs])
            kwargs.update(image=images, strength=self.strength)
        if self.is_class_conditional:
            return pipeline(class_labels=labels, **kwargs).images
        prompts = [self._prompt(job.target.label, request.label_names) for job in jobs]
        return pipeline(prompt=prompts, **kwargs).images

    # ----------------------------------------------------------------------------------------------- generate
    def generate(self, request: GenerationRequest) -> Dataset:
        """Samples `target.num_samples * request.candidates_per_sample` images per target.

        Returns:
            `datasets.Dataset`: columns `request.input_column` (images), `request.label_column`, the provenance
            columns of `generators.base`, and `synth_guidance_scale`, `synth_label_scale`,
            `synth_guidance_acquisition`, `synth_strength`, `synth_num_inference_steps`, `synth_sample_seed`
            (plus `synth_prompt` for Stable Diffusion).
        """
        self._validate(request)
        guided, from_image = self._guided(request), self._from_image(request)
        pipeline = self._resolve_pipeline(from_image)
        jobs = [
            _Job(target, index, derive_sample_seed(request.seed, target.target_id, index))
            for target in request.targets
            for index in range(target.num_samples * request.candidates_per_sample)
        ]
        to_image = self.to_image or tensor_to_pil
        previous_bar_config = getattr(pipeline, "_progress_bar_config", None)
        pipeline.set_progress_bar_config(disable=True)
        images: list[PIL.Image.Image] = []
        try:
            with tqdm(
                total=len(jobs), desc=f"{self.name} cycle {request.cycle}", disable=not self.show_progress
            ) as bar:
                for start in range(0, len(jobs), self.batch_size):
                    batch = jobs[start : start + self.batch_size]
                    batch_images = self._call_pipeline(pipeline, batch, request, guided, from_image)
                    images.extend(to_image(image) for image in batch_images)
                    bar.update(len(batch))
        finally:
            if previous_bar_config is None:
                del pipeline._progress_bar_config
            else:
                pipeline._progress_bar_config = previous_bar_config
        return self._to_dataset(request, jobs, images, guided, from_image)

    def _to_dataset(
        self,
        request: GenerationRequest,
        jobs: list[_Job],
        images: list[PIL.Image.Image],
        guided: bool,
        from_image: bool,
    ) -> Dataset:
        label_feature = ClassLabel(names=list(request.label_names)) if request.label_names else Value("int64")
        acquisition = self.acquisition if isinstance(self.acquisition, str) else self.acquisition.__name__
        size = len(jobs)
        extra: dict[str, list] = {
            GUIDANCE_SCALE_COLUMN: [self.guidance_scale if guided else 0.0] * size,
            LABEL_SCALE_COLUMN: [self.label_scale if guided else 0.0] * size,
            ACQUISITION_COLUMN: [acquisition if guided else None] * size,
            STRENGTH_COLUMN: [self.strength if from_image else None] * size,
            NUM_STEPS_COLUMN: [self.num_inference_steps] * size,
            SAMPLE_SEED_COLUMN: [job.seed for job in jobs],
        }
        if not self.is_class_conditional:
            extra[PROMPT_COLUMN] = [self._prompt(job.target.label, request.label_names) for job in jobs]
        return build_candidates(
            {request.input_column: images, request.label_column: [job.target.label for job in jobs]},
            features={request.input_column: ImageFeature(), request.label_column: label_feature},
            cycle=request.cycle,
            generator=self.name,
            target_ids=[job.target.target_id for job in jobs],
            target_labels=[job.target.label for job in jobs],
            seed_example_ids=[[job.target.example_id] if from_image else [] for job in jobs],
            extra=extra,
        )

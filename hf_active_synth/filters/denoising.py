"""A realism filter that asks the class-conditional DDPM itself: how well does it denoise the candidate?

A diffusion model predicts the noise of images from its training distribution well and of off-manifold images
(artefacts, wrong-class shapes, pure noise) badly. Noising a candidate to a mid noise level and measuring the
denoiser's noise-prediction error, conditioned on the candidate's intended label, gives a realism score that needs
no extra model: the generator's own DDPM is the judge. Its threshold is calibrated on real images scored the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..columns import DENOISING_ERROR_COLUMN, column_feature, set_column
from ..image_utils import pil_to_tensor
from .base import FilterContext

if TYPE_CHECKING:
    from datasets import Dataset

_PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def denoiser_components(pipeline: Any) -> tuple[Any, Any]:
    """The `(unet, scheduler)` of a pipeline that `DenoisingRealismFilter` can score, or a `ValueError` naming the fix.

    Scorable: any object with `unet` and `scheduler` attributes (a diffusers pipeline such as
    `ClassConditionalImagePipeline`, or a `types.SimpleNamespace`) whose `unet` is a pixel-space `UNet2DModel` with a
    class embedding (`num_class_embeds`) and whose scheduler is variance-preserving with `add_noise` (DDPM, DDIM).
    """
    from diffusers import UNet2DModel

    unet, scheduler = getattr(pipeline, "unet", None), getattr(pipeline, "scheduler", None)
    if unet is None or scheduler is None:
        raise ValueError(
            f"{type(pipeline).__name__} has no `unet` and `scheduler`: pass a diffusers pipeline (e.g. "
            "ClassConditionalImagePipeline) or an object with both attributes."
        )
    if not isinstance(unet, UNet2DModel):
        raise ValueError(
            f"The denoising realism score needs a pixel-space class-conditional UNet2DModel, got "
            f"{type(unet).__name__} (a latent or text-conditioned pipeline such as Stable Diffusion cannot be scored): "
            "use the discriminator-based RealismFilter instead."
        )
    if unet.config.num_class_embeds is None or unet.config.class_embed_type is not None:
        raise ValueError(
            "The UNet has no class embedding, so it cannot be conditioned on a candidate's label: build it with "
            "`num_class_embeds=<number of classes>` and train it with `class_labels`, or use RealismFilter instead."
        )
    if unet.config.in_channels not in (1, 3):
        raise ValueError(
            f"The UNet must take grayscale or RGB pixels (1 or 3 channels), got {unet.config.in_channels}."
        )
    # Sigma-space schedulers (Euler, Karras) have `alphas_cumprod` too but noise as `x + σ·ε` (init_noise_sigma > 1).
    variance_preserving = getattr(scheduler, "alphas_cumprod", None) is not None and (
        float(getattr(scheduler, "init_noise_sigma", 1.0)) == 1.0
    )
    if not hasattr(scheduler, "add_noise") or not variance_preserving:
        raise ValueError(
            f"{type(scheduler).__name__} is not a variance-preserving scheduler with `add_noise`: pass a "
            "DDPMScheduler or DDIMScheduler built from the same config (`DDIMScheduler.from_config(...)`)."
        )
    prediction_type = scheduler.config.get("prediction_type", "epsilon")
    if prediction_type not in _PREDICTION_TYPES:
        raise ValueError(f"Unsupported prediction_type {prediction_type!r}: use one of {_PREDICTION_TYPES}.")
    return unet, scheduler


class DenoisingRealismFilter:
    r"""Drops candidates the class-conditional DDPM denoises badly: its noise-prediction error at mid noise.

    Each image (converted and resized to the UNet's channels and `sample_size`, scaled to `[-1, 1]` as the pipeline
    does) is noised with the scheduler's `add_noise` to timestep `round(timestep_fraction * (T - 1))` of its `T`
    training timesteps, with each of `num_draws` noise tensors drawn once from `seed`; the UNet predicts the noise
    conditioned on the image's label (the candidate's intended label), and the score is the mean squared error
    between the predicted and the true noise, averaged over the draws (outputs of `v_prediction` and `sample` models
    are converted to a noise estimate first). It is recorded in `synth_denoising_error`; higher means less realistic.
    The same noise serves every image, so a score depends on the image and label only (not on the batch), and
    candidates and real images are compared under the same draws.

    The threshold is a fixed `max_error`, or calibrated at every call on real images: with
    `calibration_quantile=q` it is the `(1 - q)`-quantile of the real images' errors (each scored with its own
    label), so `q=0.05` rejects candidates less realistic than 95% of real images, i.e. what would reject 5% of them.
    The real images are `calibration_dataset` when given, else `context.real_dataset`. A DDPM trained on the real
    training images denoises them better than unseen real images, so calibrating on them gives a stricter threshold;
    pass held-out images (e.g. validation, never test) for the nominal rate. A candidate whose score is NaN is kept.
    The threshold of the last call is kept in `threshold_`.

    Args:
        pipeline (`DiffusionPipeline` or `Callable[[], DiffusionPipeline]`): The denoiser: an object with a
            class-conditional `UNet2DModel` `unet` and a DDPM/DDIM `scheduler` (see [`denoiser_components`]), or a
            zero-argument callable returning one, called at the first use (so building the filter loads nothing).
        max_error (`float`, *optional*): Drop candidates whose error exceeds this; `None` (default) only records
            scores (unless `calibration_quantile` is set).
        timestep_fraction (`float`, defaults to 0.5): Noise level as a fraction, in `(0, 1]`, of the training
            timesteps. Mid noise keeps enough of the image for the error to depend on it, and enough noise for
            the denoiser's prior to matter.
        num_draws (`int`, defaults to 4): Noise draws averaged per image (fewer: faster, noisier scores).
        seed (`int`, defaults to 0): Seeds the noise draws.
        batch_size (`int`, defaults to 256): Images per UNet call.
        calibration_quantile (`float`, *optional*): The share, in `(0, 1)`, of real images the calibrated threshold
            would reject; exclusive with `max_error`.
        calibration_dataset (`Dataset`, *optional*): Real images and labels (the context's input and label columns)
            to calibrate on; defaults to `context.real_dataset`.

    Example:

    ```py
    >>> realism = DenoisingRealismFilter.calibrated(pipeline, quantile=0.05)
    >>> kept = realism(candidates, context)  # candidates gain a synth_denoising_error column
    ```
    """

    name = "denoising_realism"
    # It looks at the real images to calibrate, but drops candidates for looking unreal, not for being close to one.
    checks_real_data = False

    def __init__(
        self,
        pipeline: Any | Callable[[], Any],
        max_error: float | None = None,
        *,
        timestep_fraction: float = 0.5,
        num_draws: int = 4,
        seed: int = 0,
        batch_size: int = 256,
        calibration_quantile: float | None = None,
        calibration_dataset: Dataset | None = None,
    ):
        self.pipeline = pipeline
        self.max_error = max_error
        self.timestep_fraction = timestep_fraction
        self.num_draws = num_draws
        self.seed = seed
        self.batch_size = batch_size
        self.calibration_quantile = calibration_quantile
        self.calibration_dataset = calibration_dataset

    @classmethod
    def calibrated(
        cls,
        pipeline: Any | Callable[[], Any],
        quantile: float = 0.05,
        calibration_dataset: Dataset | None = None,
        **kwargs: Any,
    ) -> DenoisingRealismFilter:
        """A filter rejecting candidates less realistic (higher error) than all but `quantile` of real images.

        Args:
            pipeline (`DiffusionPipeline` or `Callable[[], DiffusionPipeline]`): The denoiser (see the class).
            quantile (`float`, defaults to 0.05): The share of real images that would be rejected.
            calibration_dataset (`Dataset`, *optional*): Held-out real images and labels; defaults to
                `context.real_dataset`.
            kwargs: The other constructor arguments (`timestep_fraction`, `num_draws`, `seed`, `batch_size`).
        """
        return cls(pipeline, calibration_quantile=quantile, calibration_dataset=calibration_dataset, **kwargs)

    def _components(self) -> tuple[Any, Any]:
        if not hasattr(self, "pipeline_"):
            # A pipeline is itself callable (sampling), so only an object without a `unet` is taken for a loader.
            pipeline = self.pipeline
            if not hasattr(pipeline, "unet") and callable(pipeline):
                pipeline = pipeline()
            denoiser_components(pipeline)
            self.pipeline_ = pipeline
        return self.pipeline_.unet, self.pipeline_.scheduler

    def _check_options(self) -> None:
        if self.max_error is not None and not (np.isfinite(self.max_error) and self.max_error >= 0):
            raise ValueError(f"max_error is a squared error: pass a finite value >= 0 or None, got {self.max_error}.")
        if self.calibration_quantile is not None:
            if not 0.0 < self.calibration_quantile < 1.0:
                raise ValueError(f"calibration_quantile must be in (0, 1), got {self.calibration_quantile}.")
            if self.max_error is not None:
                raise ValueError("Pass max_error (a fixed threshold) or calibration_quantile, not both.")
        if not 0.0 < self.timestep_fraction <= 1.0:
            raise ValueError(
                f"timestep_fraction is a share of the training timesteps in (0, 1], got {self.timestep_fraction}."
            )
        if int(self.num_draws) != self.num_draws or self.num_draws < 1:
            raise ValueError(f"num_draws must be an integer >= 1, got {self.num_draws}.")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size}.")

    @torch.no_grad()
    def denoising_errors(self, images: Sequence[Any], labels: Sequence[int]) -> np.ndarray:
        """The denoising error of each image under its label, shape `[len(images)]` (see the class docstring).

        Args:
            images (`Sequence`): Anything `pil_to_tensor` reads (PIL images, `datasets` image dicts, arrays).
            labels (`Sequence[int]`): One class per image, in `[0, num_class_embeds)`.
        """
        self._check_options()
        unet, scheduler = self._components()
        if len(images) != len(labels):
            raise ValueError(f"Got {len(images)} images but {len(labels)} labels: pass one label per image.")
        if len(images) == 0:
            return np.zeros(0)
        num_classes = unet.config.num_class_embeds
        labels = torch.as_tensor(list(labels), dtype=torch.long)
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"Labels must lie in [0, {num_classes}) (the UNet's classes), got {labels.unique().tolist()}."
            )
        channels = unet.config.in_channels
        size = unet.config.sample_size
        if size is None:  # a UNet without a declared size: score at the first image's size
            first = pil_to_tensor(images[0], channels)
            size = tuple(first.shape[1:])
        size = (size, size) if isinstance(size, int) else tuple(size)
        device, dtype = unet.device, unet.dtype
        num_train_timesteps = scheduler.config.num_train_timesteps
        timestep = round(self.timestep_fraction * (num_train_timesteps - 1))
        alpha = scheduler.alphas_cumprod[timestep].to(device=device, dtype=torch.float32)
        prediction_type = scheduler.config.get("prediction_type", "epsilon")
        # Fixed draws, shared by every image: a score does not depend on the batch it was computed in.
        generator = torch.Generator().manual_seed(self.seed)
        noises = torch.randn((self.num_draws, channels, *size), generator=generator).to(device)
        errors = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            clean = torch.stack([pil_to_tensor(image, channels, size) for image in batch]).to(device) * 2.0 - 1.0
            class_labels = labels[start : start + len(batch)].to(device)
            timesteps = torch.full((len(batch),), timestep, dtype=torch.long, device=device)
            batch_error = torch.zeros(len(batch), device=device)
            for noise in noises:
                noise = noise.expand_as(clean)
                noisy = scheduler.add_noise(clean, noise, timesteps)
                output = unet(noisy.to(dtype), timesteps, class_labels=class_labels).sample.float()
                if prediction_type == "v_prediction":
                    output = alpha.sqrt() * output + (1 - alpha).sqrt() * noisy
                elif prediction_type == "sample":
                    output = (noisy - alpha.sqrt() * output) / (1 - alpha).sqrt()
                batch_error += (output - noise).pow(2).flatten(1).mean(dim=1)
            errors.append(batch_error / len(noises))
        return torch.cat(errors).cpu().numpy().astype(np.float64)

    def _real_errors(self, context: FilterContext) -> np.ndarray:
        real = self.calibration_dataset if self.calibration_dataset is not None else context.real_dataset
        if len(real) == 0:
            raise ValueError("No real images to calibrate on: context.real_dataset (or calibration_dataset) is empty.")
        return self.denoising_errors(list(real[context.input_column]), list(real[context.label_column]))

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset:
        self._check_options()
        self.threshold_ = self.max_error
        if len(candidates) == 0:
            return set_column(candidates, DENOISING_ERROR_COLUMN, [], feature=column_feature(DENOISING_ERROR_COLUMN))
        errors = self.denoising_errors(list(candidates[context.input_column]), list(candidates[context.label_column]))
        candidates = set_column(
            candidates, DENOISING_ERROR_COLUMN, errors.tolist(), feature=column_feature(DENOISING_ERROR_COLUMN)
        )
        if self.calibration_quantile is not None:
            real = self._real_errors(context)
            finite = real[np.isfinite(real)]
            self.threshold_ = float(np.quantile(finite, 1.0 - self.calibration_quantile)) if len(finite) else None
        if self.threshold_ is None:
            return candidates
        return candidates.select(np.flatnonzero(~(errors > self.threshold_)))  # NaN (unknown) is kept

"""A diffusers pipeline for class-conditional `UNet2DModel`s, which diffusers itself has no pipeline for.

It is a plain DDPM/DDIM sampling loop with the two extension points active synthesis needs: `class_labels` (one
per sample) and `callback_on_step_end` (a `PipelineCallback` may return new `latents` after every step, which is how
`EnsembleGuidanceCallback` steers sampling). Passing `image` and `strength` starts from noised real images instead
of pure noise (SDEdit, the class-conditional counterpart of `StableDiffusionImg2ImgPipeline`).

Unlike the Stable Diffusion pipelines, it also hands the step's own denoiser output to callbacks (`"noise_pred"`,
`"pred_original_sample"`), so a guidance callback can score the step's clean-sample estimate `x̂0` instead of
running the denoiser a second time on the new latents.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor

from .diffusion_guidance import predict_original_sample


class ClassConditionalImagePipeline(DiffusionPipeline):
    """Samples images of given classes from a class-conditional `UNet2DModel` (`num_class_embeds` set).

    Args:
        unet (`UNet2DModel`): A UNet trained with `class_labels` (its config has `num_class_embeds`).
        scheduler (`DDPMScheduler` or `DDIMScheduler`): The noise scheduler used for sampling.

    Example:

    ```py
    >>> pipeline = ClassConditionalImagePipeline(unet=unet, scheduler=DDIMScheduler.from_config(ddpm_config))
    >>> images = pipeline(class_labels=[3, 3, 7], num_inference_steps=50, output_type="pt").images
    ```
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "class_labels", "noise_pred", "pred_original_sample"]
    """`latents` (after the step), `class_labels`, and this step's `noise_pred` (the raw denoiser output at the
    step's input latents and timestep) and `pred_original_sample` (the scheduler's `x̂0` from it)."""

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler | DDIMScheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """`(channels, height, width)` of the images this pipeline samples."""
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return self.unet.config.in_channels, height, width

    def _check_inputs(self, class_labels: torch.Tensor, generator: Any, image: torch.Tensor | None, strength: float):
        if self.unet.config.num_class_embeds is None:
            raise ValueError(
                "The UNet has no class embedding: build it with `num_class_embeds=<number of classes>` and train it "
                "with `class_labels`, or use diffusers' unconditional `DDPMPipeline`/`DDIMPipeline` instead."
            )
        if class_labels.ndim != 1 or len(class_labels) == 0:
            raise ValueError(
                f"`class_labels` must be a non-empty 1-D sequence of ints, got shape {class_labels.shape}."
            )
        if class_labels.min() < 0 or class_labels.max() >= self.unet.config.num_class_embeds:
            raise ValueError(
                f"`class_labels` must lie in [0, {self.unet.config.num_class_embeds}), got {class_labels.tolist()}."
            )
        if isinstance(generator, list) and len(generator) != len(class_labels):
            raise ValueError(
                f"Got {len(generator)} generators for {len(class_labels)} class labels: pass one per sample or one in all."
            )
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"`strength` must be in (0, 1], got {strength}.")
        if image is not None and tuple(image.shape) != (len(class_labels), *self.image_shape):
            raise ValueError(
                f"`image` must be shaped {(len(class_labels), *self.image_shape)} (one [0, 1] image per class label), "
                f"got {tuple(image.shape)}."
            )

    def _extra_step_kwargs(self, generator: Any, eta: float) -> dict[str, Any]:
        # Same trick as the Stable Diffusion pipelines: only pass what this scheduler's `step` accepts.
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in accepted:
            kwargs["eta"] = eta
        if "generator" in accepted:
            kwargs["generator"] = generator
        return kwargs

    def _pred_original_sample(
        self, step_output: Any, noise_pred: torch.Tensor, sample: torch.Tensor, timestep: torch.Tensor
    ) -> torch.Tensor:
        """The scheduler's `x̂0` for this step (DDPM, DDIM), else the variance-preserving `x̂0` from `noise_pred`."""
        original = getattr(step_output, "pred_original_sample", None)
        if original is not None:
            return original
        # Schedulers whose `step` returns only `prev_sample` (PNDM, DPM-Solver, ...).
        alpha_prod = self.scheduler.alphas_cumprod[int(timestep)].to(device=sample.device, dtype=torch.float32)
        return predict_original_sample(noise_pred, sample, alpha_prod, self.scheduler.config.prediction_type).to(
            sample.dtype
        )

    @torch.no_grad()
    def __call__(
        self,
        class_labels: Sequence[int] | torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int = 50,
        eta: float = 0.0,
        image: torch.Tensor | None = None,
        strength: float = 1.0,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""Samples one image per entry of `class_labels`.

        Args:
            class_labels (`Sequence[int]` or `torch.Tensor`): The class of each image to sample.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): One generator for the batch, or one
                per sample (then each image depends only on its own generator, whatever the batch).
            num_inference_steps (`int`, defaults to 50): Denoising steps.
            eta (`float`, defaults to 0.0): DDIM's η (0 = deterministic DDIM, 1 = DDPM-like); ignored by
                schedulers whose `step` has no `eta`.
            image (`torch.Tensor`, *optional*): Images in `[0, 1]` shaped `[B, C, H, W]` to start from (SDEdit):
                they are noised to `strength` and denoised from there.
            strength (`float`, defaults to 1.0): With `image`, the fraction of the schedule to run (1.0 = from pure
                noise, the image then barely matters).
            latents (`torch.Tensor`, *optional*): Initial noise `[B, C, H, W]`; drawn from `generator` if omitted.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"` (`[B, H, W, C]` in `[0, 1]`) or `"pt"`
                (`[B, C, H, W]` in `[0, 1]`).
            return_dict (`bool`, defaults to `True`): Return an `ImagePipelineOutput` rather than a tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*): Called
                after every step as `callback(pipeline, step_index, timestep, callback_kwargs)`; may return new
                `latents`.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*): Tensors put in `callback_kwargs`, from
                `["latents", "class_labels", "noise_pred", "pred_original_sample"]` (defaults to the callback's
                `tensor_inputs`, else `["latents"]`). `latents` are the step's output; `noise_pred` is the denoiser
                output at the step's *input* latents and timestep and `pred_original_sample` the clean-sample
                estimate `x̂0` the scheduler derived from it (clipped as the scheduler clips it).

        Returns:
            [`~pipelines.ImagePipelineOutput`] or `tuple`: the sampled images.
        """
        device = self._execution_device
        class_labels = torch.as_tensor(class_labels, dtype=torch.long).to(device)
        self._check_inputs(class_labels, generator, image, strength)
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        unknown = [name for name in callback_on_step_end_tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` must be in {self._callback_tensor_inputs}: {unknown}."
            )

        batch_shape = (len(class_labels), *self.image_shape)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if image is not None:
            # Same arithmetic as StableDiffusionImg2ImgPipeline.get_timesteps.
            t_start = num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)
            timesteps = timesteps[t_start * self.scheduler.order :]
            if len(timesteps) == 0:
                raise ValueError(f"strength={strength} leaves no denoising step of {num_inference_steps}: raise it.")
        if latents is None:
            latents = randn_tensor(batch_shape, generator=generator, device=device, dtype=self.unet.dtype)
        else:
            latents = latents.to(device=device, dtype=self.unet.dtype)
        if image is not None:
            clean = image.to(device=device, dtype=self.unet.dtype) * 2.0 - 1.0
            latents = self.scheduler.add_noise(clean, latents, timesteps[:1].repeat(len(class_labels)))
        latents = latents * self.scheduler.init_noise_sigma
        extra_step_kwargs = self._extra_step_kwargs(generator, eta)

        self._num_timesteps = len(timesteps)
        for step_index, timestep in enumerate(self.progress_bar(timesteps)):
            model_input = self.scheduler.scale_model_input(latents, timestep)
            noise_pred = self.unet(model_input, timestep, class_labels=class_labels).sample
            step_output = self.scheduler.step(noise_pred, timestep, latents, **extra_step_kwargs)
            if callback_on_step_end is not None:
                available = {
                    "latents": step_output.prev_sample,
                    "class_labels": class_labels,
                    "noise_pred": noise_pred,
                }
                if "pred_original_sample" in callback_on_step_end_tensor_inputs:
                    available["pred_original_sample"] = self._pred_original_sample(
                        step_output, noise_pred, latents, timestep
                    )
                callback_kwargs = {name: available[name] for name in callback_on_step_end_tensor_inputs}
                callback_outputs = callback_on_step_end(self, step_index, timestep, callback_kwargs)
                latents = callback_outputs.pop("latents", step_output.prev_sample)
            else:
                latents = step_output.prev_sample

        images = (latents / 2 + 0.5).clamp(0, 1)
        if output_type != "pt":
            images = images.cpu().permute(0, 2, 3, 1).float().numpy()
            if output_type == "pil":
                images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

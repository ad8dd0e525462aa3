"""Ensemble-disagreement guidance for diffusers pipelines, as a `PipelineCallback` for `callback_on_step_end`.

After each denoising step the callback estimates the clean sample `x̂0(x_t)` of the new latents `x_t`, scores it
with the ensemble and moves the latents up the gradient of

    guidance_scale · disagreement(x̂0) + label_scale · log p̄(y = c | x̂0)

(the proposal's L_G = Var(y|x) plus a term that keeps the intended class `c`). It works like the CLIP-guided
community pipeline: gradients are taken under `torch.enable_grad()` inside the pipeline's no-grad `__call__`,
through the denoiser and, for latent diffusion, through the VAE decoder. Because it only returns new `latents`, the
same callback steers any pipeline whose scheduler is variance-preserving (DDPM, DDIM, PNDM, DPM-Solver):
`ClassConditionalImagePipeline`, `StableDiffusionPipeline`, `StableDiffusionImg2ImgPipeline`.

`x̂0` comes from one of two places. Pipelines that hand their step's own prediction to callbacks
(`ClassConditionalImagePipeline`: `"pred_original_sample"`) cost one denoiser call per step, guided or not: the
callback reuses that prediction. Others (the Stable Diffusion pipelines) expose only the latents, so the callback
re-predicts the noise of the new latents with a second denoiser call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from diffusers.callbacks import PipelineCallback
from diffusers.configuration_utils import register_to_config

from ..acquisition import AcquisitionFunction, get_acquisition_function

ImagesToModelInputs = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
"""Differentiable map from images in `[0, 1]` shaped `[B, C, H, W]` to the classifier's keyword inputs."""

Conditioning = Literal["class_labels", "prompt_embeds"]
GuidanceNormalization = Literal["separate", "joint"]


def resolve_acquisition(acquisition: str | AcquisitionFunction) -> AcquisitionFunction:
    """An acquisition function from its name in `hf_active_synth.acquisition` or the function itself."""
    if callable(acquisition):
        return acquisition
    if not isinstance(acquisition, str):
        raise TypeError(f"`acquisition` must be a name or a function of logits [N, C, K], got {acquisition!r}.")
    function = get_acquisition_function(acquisition)
    if acquisition == "random":
        raise ValueError("The 'random' acquisition function has no gradient: guide with 'variance', 'bald', ...")
    return function


def label_log_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`log p̄(y = labels | x)` under the ensemble-mean prediction, from member logits `[B, C, K]`. Shape `[B]`."""
    log_probabilities = torch.log_softmax(logits.float(), dim=1)
    log_mean = torch.logsumexp(log_probabilities, dim=2) - math.log(logits.shape[2])
    return log_mean.gather(1, labels.view(-1, 1).to(log_mean.device)).squeeze(1)


def predict_original_sample(
    model_output: torch.Tensor, sample: torch.Tensor, alpha_prod: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """`x̂0` from a denoiser output at noise level `alpha_prod` (ᾱ_t), for a variance-preserving scheduler."""
    if prediction_type == "epsilon":
        return (sample - (1 - alpha_prod).sqrt() * model_output) / alpha_prod.sqrt()
    if prediction_type == "v_prediction":
        return alpha_prod.sqrt() * sample - (1 - alpha_prod).sqrt() * model_output
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"Unsupported prediction_type {prediction_type!r}: use epsilon, v_prediction or sample.")


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`[B]` values shaped to broadcast over a `[B, ...]` tensor."""
    return values.to(like).view(-1, *([1] * (like.ndim - 1)))


def _rms_normalize(gradient: torch.Tensor) -> torch.Tensor:
    # Per-sample unit root-mean-square, so a scale reads as "fraction of the current noise level per step".
    rms = gradient.flatten(1).pow(2).mean(dim=1).sqrt().clamp_min(1e-12)
    return gradient / rms.view(-1, *([1] * (gradient.ndim - 1)))


def check_label_safety(
    label_floor: float | None, guidance_normalization: str, normalize_gradient: bool = True
) -> None:
    """Validates the label-safe guidance options (see [`EnsembleGuidanceCallback`]); raises `ValueError`."""
    if label_floor is not None and not 0.0 < label_floor < 1.0:
        raise ValueError(f"`label_floor` is a probability in (0, 1) or None (off), got {label_floor}.")
    if guidance_normalization not in ("separate", "joint"):
        raise ValueError(f"`guidance_normalization` must be 'separate' or 'joint', got {guidance_normalization!r}.")
    if guidance_normalization == "joint" and not normalize_gradient:
        raise ValueError(
            "`guidance_normalization='joint'` RMS-normalizes the summed gradient: set normalize_gradient."
        )


class EnsembleGuidanceCallback(PipelineCallback):
    r"""Steers sampling towards inputs the ensemble disagrees on, while keeping the intended class.

    One instance guides one pipeline call (it holds that batch's `class_labels`). Every step `i` of `N` with
    `guidance_start <= i / N < guidance_end` (the last step excepted: its latents are already noise-free) moves the
    latents by `w_i · (guidance_scale · ĝ_D + label_scale · ĝ_L)`, where `ĝ_D`, `ĝ_L` are the gradients of the
    disagreement and of `log p̄(y=c|x̂0)` w.r.t. the latents, `w_i = (1 - i/N) ** guidance_decay` times `σ_t`
    (per-sample RMS-normalized gradients, the default) or `σ_t²` (raw gradients, classifier-guidance scaling), with
    `σ_t = sqrt(1 - ᾱ_t)` the noise level of the latents. With both scales 0 it returns the latents untouched.
    Steps outside the window cost nothing: no `x̂0`, no ensemble pass.

    Where `x̂0` comes from (`reuse_denoiser_prediction`). Step `i` denoises `x_s` (timestep `s`) into `x_t` (the
    previous timestep `t`, where the callback runs). The re-prediction path calls the denoiser again at `(x_t, t)`
    and forms `x̂0(x_t)` from that output held constant (`backprop_through_denoiser=False`), so
    `∂x̂0/∂x_t = 1/sqrt(ᾱ_t)` for ε-prediction. The reuse path takes the value of `x̂0` from the step that produced
    `x_t`: the scheduler's `pred_original_sample` from the denoiser output at `(x_s, s)` (clipped as the scheduler
    clips it), with the same `∂x̂0/∂x_t` as the re-prediction path (the derivative of `x̂0(x_t)` at noise level
    `ᾱ_t` with the output held constant). Either way the gradient is taken w.r.t. `x_t` and the step is scaled by
    `σ_t` of `x_t`'s noise level `t`, so the two paths differ only in which denoiser output `x̂0` is built from. For
    deterministic DDIM (η=0) with ε-prediction, `x_t = sqrt(ᾱ_t) x̂0 + sqrt(1-ᾱ_t) ε(x_s, s)`, so re-predicting
    with the noise held at `ε(x_s, s)` gives back the step's `x̂0` exactly: the reuse path is the re-prediction path
    with the noise prediction lagging one step (exactly equal for a denoiser that ignores its input and
    timestep). For stochastic samplers (DDPM, η>0) the reused `x̂0` ignores the fresh noise in `x_t`, which is
    independent of the clean sample, rather than reading it as signal.

    Label-safe options (off by default): `label_floor` switches the disagreement term off, per sample and step,
    whenever `p̄(y=c|x̂0)` under the estimator has fallen below the floor, so only the label term pulls the sample
    back; `guidance_normalization="joint"` RMS-normalizes the weighted sum `guidance_scale · g_D + label_scale · g_L`
    once (step size `guidance_scale + label_scale` per sample, the label scale alone where the floor switched
    disagreement off) instead of each gradient separately: the split between the terms then follows their raw
    gradients weighted by the scales, where separate normalization fixes it at the ratio of the scales (at the
    defaults, disagreement steps twice as far as the label term whatever the gradients say).
    To guide only the early steps (as ActGen does), set `guidance_end` below 1.

    Args:
        estimator (`UncertaintyEstimator`): Anything with `member_logits(inputs) -> Tensor [B, C, K]`,
            differentiable w.r.t. the input tensors.
        to_model_inputs (`Callable[[Tensor], Mapping[str, Tensor]]`): Differentiable map from images in `[0, 1]`
            (`[B, C, H, W]`, the pipeline's image space) to the estimator's inputs.
        class_labels (`torch.Tensor`): Intended class of each sample in the batch, shape `[B]`.
        conditioning (`str`, defaults to `"class_labels"`): What conditions the denoiser: `"class_labels"`
            (`ClassConditionalImagePipeline`) or `"prompt_embeds"` (Stable Diffusion pipelines).
        guidance_scale (`float`, defaults to 0.2): Weight of the disagreement gradient.
        label_scale (`float`, defaults to 0.1): Weight of the `log p̄(y=c|x̂0)` gradient.
        acquisition (`str` or `Callable`, defaults to `"variance"`): Disagreement measure, a name in
            `hf_active_synth.acquisition.ACQUISITION_FUNCTIONS` or a function of logits `[N, C, K]` → `[N]`.
        guidance_start (`float`, defaults to 0.0): First fraction of the schedule that is guided.
        guidance_end (`float`, defaults to 1.0): Guidance stops from this fraction of the schedule on.
        guidance_decay (`float`, defaults to 1.0): Exponent of the `(1 - i/N)` decay of the step size (0 = flat).
        normalize_gradient (`bool`, defaults to `True`): RMS-normalize each gradient per sample.
        backprop_through_denoiser (`bool`, defaults to `False`): Differentiate `x̂0` through the denoiser too (as
            the CLIP-guided pipeline does). `False` treats the noise prediction as constant, so `∂x̂0/∂x_t =
            1/sqrt(ᾱ_t)`: about twice as fast, and on 8x8 digits it raised disagreement as much at equal label
            agreement. The VAE decoder of latent pipelines is differentiated either way.
        reuse_denoiser_prediction (`bool`, *optional*): Build `x̂0` from the step's own denoiser prediction (the
            pipeline's `"pred_original_sample"` callback tensor) instead of a second denoiser call (see above).
            `None` (default): wherever possible, i.e. with `conditioning="class_labels"`, without
            `backprop_through_denoiser` (which needs the denoiser's graph at `x_t`), and whenever the pipeline put
            the tensor in `callback_kwargs` (else the call re-predicts). `True` requires it (`ValueError` where
            the tensor is missing); `False` always re-predicts.
        label_floor (`float`, *optional*): A probability in `(0, 1)`: the disagreement step is applied to a sample
            only while `log p̄(y=c|x̂0) >= log(label_floor)`; `None` (default) always applies it.
        guidance_normalization (`str`, defaults to `"separate"`): `"separate"` RMS-normalizes each gradient,
            `"joint"` their weighted sum (needs `normalize_gradient=True`).
    """

    ignore_for_config = ["estimator", "to_model_inputs", "class_labels", "acquisition"]

    @register_to_config
    def __init__(
        self,
        *,
        estimator: Any,
        to_model_inputs: ImagesToModelInputs,
        class_labels: torch.Tensor,
        conditioning: Conditioning = "class_labels",
        guidance_scale: float = 0.2,
        label_scale: float = 0.1,
        acquisition: str | AcquisitionFunction = "variance",
        guidance_start: float = 0.0,
        guidance_end: float = 1.0,
        guidance_decay: float = 1.0,
        normalize_gradient: bool = True,
        backprop_through_denoiser: bool = False,
        reuse_denoiser_prediction: bool | None = None,
        label_floor: float | None = None,
        guidance_normalization: GuidanceNormalization = "separate",
    ):
        # `PipelineCallback.__init__` only registers its CFG-cutoff options, which mean nothing here.
        if not hasattr(estimator, "member_logits"):
            raise TypeError(f"`estimator` needs a `member_logits(inputs)` method; got {type(estimator).__name__}.")
        if conditioning not in ("class_labels", "prompt_embeds"):
            raise ValueError(f"`conditioning` must be 'class_labels' or 'prompt_embeds', got {conditioning!r}.")
        if guidance_scale < 0 or label_scale < 0:
            raise ValueError("`guidance_scale` and `label_scale` must be >= 0 (0 disables that term).")
        if not 0.0 <= guidance_start <= guidance_end <= 1.0:
            raise ValueError("Need 0 <= guidance_start <= guidance_end <= 1 (fractions of the denoising schedule).")
        if guidance_decay < 0:
            raise ValueError(f"`guidance_decay` must be >= 0, got {guidance_decay}.")
        if reuse_denoiser_prediction and backprop_through_denoiser:
            raise ValueError(
                "`backprop_through_denoiser=True` differentiates a fresh denoiser call at the new latents: it cannot "
                "reuse the step's prediction (set `reuse_denoiser_prediction` to None or False)."
            )
        check_label_safety(label_floor, guidance_normalization, normalize_gradient)
        resolve_acquisition(acquisition)  # fail at construction, not mid-sampling
        self.estimator = estimator
        self.to_model_inputs = to_model_inputs
        self.class_labels = torch.as_tensor(class_labels, dtype=torch.long)
        self.acquisition = acquisition
        self._trace: list[dict[str, float]] = []
        # Per-step statistics stay on the device until `trace` is read: an `.item()` per step would sync (GPU).
        self._pending_trace: list[tuple[int, torch.Tensor]] = []

    @property
    def trace(self) -> list[dict[str, float]]:
        """Per guided step: `{"step", "disagreement", "label_log_probability"}` batch means at `x̂0`, and
        `"disagreement_off"`, the share of samples whose disagreement step `label_floor` switched off."""
        if self._pending_trace:
            values = torch.stack([stats for _, stats in self._pending_trace]).tolist()
            for (step, _), (disagreement, label, off) in zip(self._pending_trace, values):
                self._trace.append(
                    {
                        "step": step,
                        "disagreement": disagreement,
                        "label_log_probability": label,
                        "disagreement_off": off,
                    }
                )
            self._pending_trace.clear()
        return self._trace

    @property
    def reuses_denoiser_prediction(self) -> bool:
        """Whether the callback asks the pipeline for the step's `pred_original_sample` (see the class docstring)."""
        reuse = self.config.reuse_denoiser_prediction
        if reuse is None:
            # Only class-conditional pipelines (ours) expose it; Stable Diffusion pipelines reject unknown names.
            return self.config.conditioning == "class_labels" and not self.config.backprop_through_denoiser
        return reuse

    @property
    def tensor_inputs(self) -> list[str]:
        names = ["latents", self.config.conditioning]
        return names + ["pred_original_sample"] if self.reuses_denoiser_prediction else names

    def step_weight(self, step_index: int, num_steps: int) -> float:
        """The schedule factor `(1 - i/N) ** guidance_decay` inside the guided window, else 0."""
        if self.config.guidance_scale == 0 and self.config.label_scale == 0:
            return 0.0
        progress = step_index / num_steps
        if not self.config.guidance_start <= progress < self.config.guidance_end:
            return 0.0
        return (1.0 - progress) ** self.config.guidance_decay

    def callback_fn(
        self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        num_steps = getattr(pipeline, "_num_timesteps", None) or len(pipeline.scheduler.timesteps)
        weight = self.step_weight(step_index, num_steps)
        scheduler = pipeline.scheduler
        # The latents are now at the *previous* timestep of `timestep`; negative means fully denoised.
        if hasattr(scheduler, "previous_timestep"):
            noise_timestep = int(scheduler.previous_timestep(timestep))
        else:
            noise_timestep = int(timestep) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        if weight == 0.0 or noise_timestep < 0:
            return callback_kwargs
        latents = callback_kwargs["latents"]
        with torch.enable_grad():
            gradients, sigma, gate = self._gradients(pipeline, latents, noise_timestep, callback_kwargs)
        callback_kwargs["latents"] = (latents + weight * self._step(latents, gradients, sigma, gate)).to(latents.dtype)
        return callback_kwargs

    @property
    def _combines_terms(self) -> bool:
        """Whether the step only needs `Σ scale · gradient` (joint normalization, raw gradients), not each term."""
        return self.config.guidance_normalization == "joint" or not self.config.normalize_gradient

    def _step(
        self,
        latents: torch.Tensor,
        gradients: tuple[torch.Tensor | None, ...],
        sigma: torch.Tensor,
        gate: torch.Tensor | None,
    ) -> torch.Tensor:
        """The guidance step before the schedule weight; `gate` (`[B]`, 1 or 0) switches disagreement per sample."""
        scales = (self.config.guidance_scale, self.config.label_scale)
        if self._combines_terms:
            (combined,) = gradients
            if not self.config.normalize_gradient:
                return sigma**2 * combined
            # Step size `Σ scale` per sample, less the disagreement scale where the gate is shut.
            budget = torch.full((len(latents),), float(scales[1]), device=latents.device)
            if scales[0] > 0:
                budget = budget + scales[0] * (torch.ones_like(budget) if gate is None else gate.to(budget))
            return sigma * _per_sample(budget, combined) * _rms_normalize(combined)
        step = torch.zeros_like(latents)
        for index, (scale, gradient) in enumerate(zip(scales, gradients)):
            if gradient is None:
                continue
            term = scale * sigma * _rms_normalize(gradient)
            if index == 0 and gate is not None:
                term = term * _per_sample(gate, term)
            step = step + term
        return step

    def _step_prediction(self, callback_kwargs: dict[str, Any]) -> torch.Tensor | None:
        """The step's `pred_original_sample` when reused, `None` to re-predict."""
        if not self.reuses_denoiser_prediction:
            return None
        original = callback_kwargs.get("pred_original_sample")
        if original is None and self.config.reuse_denoiser_prediction:
            raise ValueError(
                "`reuse_denoiser_prediction=True` needs the pipeline's `pred_original_sample` in `callback_kwargs` "
                "(ClassConditionalImagePipeline hands it over; pass it in `callback_on_step_end_tensor_inputs`)."
            )
        return original

    def _denoiser_kwargs(self, pipeline: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.config.conditioning == "class_labels":
            return {"class_labels": callback_kwargs["class_labels"]}
        prompt_embeds = callback_kwargs["prompt_embeds"]
        if getattr(pipeline, "do_classifier_free_guidance", False):
            prompt_embeds = prompt_embeds.chunk(2)[1]  # [negative, positive]: guide with the conditional half
        return {"encoder_hidden_states": prompt_embeds}

    def _decode(self, pipeline: Any, original: torch.Tensor) -> torch.Tensor:
        vae = getattr(pipeline, "vae", None)
        if vae is not None:  # latent diffusion: x̂0 is a VAE latent
            shift = getattr(vae.config, "shift_factor", None) or 0.0
            original = vae.decode(original / vae.config.scaling_factor + shift, return_dict=False)[0]
        images = original / 2 + 0.5
        # Straight-through clamp: the ensemble sees valid [0, 1] images, but saturated pixels (common in early, noisy
        # x̂0 estimates) still pass gradient; a plain clamp would zero it there.
        return images + (images.clamp(0, 1) - images).detach()

    def _gradients(
        self, pipeline: Any, latents: torch.Tensor, noise_timestep: int, callback_kwargs: dict[str, Any]
    ) -> tuple[tuple[torch.Tensor | None, ...], torch.Tensor, torch.Tensor | None]:
        """`((∇ disagreement, ∇ log p̄(y=c)), σ_t, gate)`, or `((∇ Σ scale · gated term,), σ_t, gate)` where only
        that sum is used (`_combines_terms`): `gate` is `None` without `label_floor`, else `[B]` (1 where the
        sample's label probability is at or above the floor)."""
        scheduler = pipeline.scheduler
        alpha_prod = scheduler.alphas_cumprod[noise_timestep].to(device=latents.device, dtype=torch.float32)
        latents = latents.detach().requires_grad_(True)
        step_original = self._step_prediction(callback_kwargs)
        if step_original is not None:
            # Value: the step's own x̂0. Gradient: that of x̂0(x_t) with the denoiser output held constant, i.e. the
            # part of `predict_original_sample` linear in the latents (its output term is constant).
            linear = predict_original_sample(
                torch.zeros_like(latents), latents, alpha_prod, scheduler.config.prediction_type
            )
            original = (step_original.detach() + (linear - linear.detach())).to(latents.dtype)
        else:
            timestep = torch.tensor(noise_timestep, device=latents.device)
            model_input = scheduler.scale_model_input(latents, timestep)
            denoiser_kwargs = self._denoiser_kwargs(pipeline, callback_kwargs)
            with torch.set_grad_enabled(self.config.backprop_through_denoiser):
                model_output = pipeline.unet(model_input, timestep, **denoiser_kwargs, return_dict=False)[0]
            original = predict_original_sample(model_output, latents, alpha_prod, scheduler.config.prediction_type).to(
                latents.dtype
            )
        images = self._decode(pipeline, original)
        logits = self.estimator.member_logits(dict(self.to_model_inputs(images)))
        disagreement = resolve_acquisition(self.acquisition)(logits)
        label_term = label_log_probability(logits, self.class_labels)
        gate = None
        if self.config.label_floor is not None:
            gate = (label_term.detach() >= math.log(self.config.label_floor)).float()
        off = torch.zeros((), device=latents.device) if gate is None else 1.0 - gate.mean()
        stats = torch.stack([disagreement.detach().float().mean(), label_term.detach().float().mean(), off.float()])
        self._pending_trace.append((noise_timestep, stats))
        sigma = (1 - alpha_prod).sqrt()
        scales = (self.config.guidance_scale, self.config.label_scale)
        if self._combines_terms:
            # Only `Σ scale · (gated) gradient` is used: one backward pass through the ensemble instead of two. The
            # per-sample gate inside the objective gates that sample's gradient (samples are scored independently).
            gated = disagreement if gate is None else disagreement * gate
            objective = sum(scale * term.sum() for scale, term in zip(scales, (gated, label_term)) if scale > 0)
            (combined,) = torch.autograd.grad(objective, latents)
            return (combined,), sigma, gate
        objectives = (disagreement.sum(), label_term.sum())
        wanted = [index for index, scale in enumerate(scales) if scale > 0]
        gradients: list[torch.Tensor | None] = [None, None]
        for position, index in enumerate(wanted):
            retain = position < len(wanted) - 1
            (gradients[index],) = torch.autograd.grad(objectives[index], latents, retain_graph=retain)
        return (gradients[0], gradients[1]), sigma, gate

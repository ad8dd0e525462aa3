"""Guidance fast paths: reusing the step's own `x̂0` instead of a second denoiser call, and one backward pass where
only the weighted sum of the two gradients is used. Each fast path is checked against the path it replaces."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.models.unets.unet_2d import UNet2DOutput
from image_helpers import LinearPixelEnsemble, tiny_class_conditional_pipeline, tiny_stable_diffusion

from hf_active_synth.acquisition import ensemble_variance
from hf_active_synth.generators.base import GenerationRequest, SynthesisTarget
from hf_active_synth.generators.diffusion import DiffusionGenerator
from hf_active_synth.generators.diffusion_guidance import (
    EnsembleGuidanceCallback,
    label_log_probability,
    predict_original_sample,
)
from hf_active_synth.tasks.digits import digits_to_model_inputs

# Tiny models on shared cores: one thread is several times faster than two contended ones.
pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def ensemble():
    # Unfitted members are differently seeded random projections: they disagree, which is all guidance needs.
    return LinearPixelEnsemble(num_members=4, seed=0)


class CountingEnsemble:
    """Wraps an estimator and counts its `member_logits` calls (one per guided step)."""

    def __init__(self, estimator):
        self.estimator, self.num_members, self.calls = estimator, estimator.num_members, 0

    def member_logits(self, inputs):
        self.calls += 1
        return self.estimator.member_logits(inputs)


def count_unet_calls(unet, constant: torch.Tensor | None = None) -> list[int]:
    """Counts the calls of `unet` (returns the live counter); with `constant` (`[num_labels, C, H, W]`) the UNet
    becomes a test double whose output is `constant[class_labels]`, independent of its input and timestep."""
    calls, forward = [0], unet.forward

    def counted(sample, timestep, class_labels=None, return_dict=True, **kwargs):
        calls[0] += 1
        if constant is None:
            return forward(sample, timestep, class_labels=class_labels, return_dict=return_dict, **kwargs)
        output = constant[class_labels].to(sample)
        return UNet2DOutput(sample=output) if return_dict else (output,)

    unet.forward = counted
    return calls


def _callback(estimator, labels, **kwargs):
    return EnsembleGuidanceCallback(
        estimator=estimator, to_model_inputs=digits_to_model_inputs, class_labels=labels, **kwargs
    )


def _sample(pipeline, labels, callback=None, steps=10, eta=0.0):
    pipeline.set_progress_bar_config(disable=True)
    return pipeline(
        class_labels=labels,
        generator=[torch.Generator().manual_seed(index) for index in range(len(labels))],
        num_inference_steps=steps,
        eta=eta,
        output_type="pt",
        callback_on_step_end=callback,
    ).images


# ------------------------------------------------------------------------------------------ reused prediction
def test_reuse_is_the_default_where_the_pipeline_hands_the_prediction_over(ensemble):
    labels = torch.tensor([1])
    assert _callback(ensemble, labels).tensor_inputs == ["latents", "class_labels", "pred_original_sample"]
    for kwargs in ({"reuse_denoiser_prediction": False}, {"backprop_through_denoiser": True}):
        assert _callback(ensemble, labels, **kwargs).tensor_inputs == ["latents", "class_labels"]
    # Stable Diffusion pipelines reject tensor names they do not know: they keep the re-prediction path.
    assert _callback(ensemble, labels, conditioning="prompt_embeds").tensor_inputs == ["latents", "prompt_embeds"]
    with pytest.raises(ValueError, match="backprop_through_denoiser"):
        _callback(ensemble, labels, reuse_denoiser_prediction=True, backprop_through_denoiser=True)


@pytest.fixture
def float64():
    """Float64 by default for one test (float32 rounding, amplified by x̂0's `1/sqrt(ᾱ_t)`, would blur equality)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize(
    "options",
    [
        {"guidance_scale": 0.3, "label_scale": 0.1},
        {"guidance_scale": 0.3, "label_scale": 0.1, "label_floor": 0.15},
        # Raw gradients: the step's size, so the x̂0 derivative too, must match, not only its direction.
        {"guidance_scale": 30.0, "label_scale": 10.0, "normalize_gradient": False},
    ],
)
def test_reused_prediction_equals_the_reprediction_for_a_denoiser_that_ignores_its_input(float64, options):
    # DDIM with eta=0 and a constant noise prediction: re-predicting x̂0 of the stepped latents gives back the step's
    # own x̂0, so both paths take the same steps (clip_sample, on in this scheduler, clips both alike).
    pipeline, labels = tiny_class_conditional_pipeline(), torch.arange(10)
    pipeline.unet.double()
    estimator = LinearPixelEnsemble(num_members=4, seed=0)
    constant = torch.randn(10, *pipeline.image_shape, generator=torch.Generator().manual_seed(1))
    calls = count_unet_calls(pipeline.unet, constant)
    fast = _callback(estimator, labels, **options)
    reused = _sample(pipeline, labels, fast)
    assert calls[0] == 10 and reused.dtype == torch.float64
    repredicted = _sample(pipeline, labels, _callback(estimator, labels, reuse_denoiser_prediction=False, **options))
    assert calls[0] == 10 + 10 + 9
    torch.testing.assert_close(reused, repredicted)
    assert (reused - _sample(pipeline, labels)).abs().max() > 0.1  # and guidance did move the samples
    assert len(fast.trace) == 9 and isinstance(fast.trace[0]["step"], int)
    assert all(isinstance(fast.trace[0][key], float) for key in ("disagreement", "label_log_probability"))
    if "label_floor" in options:  # the gate was shut for some samples, open for others
        assert 0 < sum(entry["disagreement_off"] for entry in fast.trace) < len(fast.trace)


def test_fast_path_calls_the_unet_once_per_step_and_skipped_steps_cost_nothing(ensemble):
    pipeline, labels = tiny_class_conditional_pipeline(), torch.tensor([2, 5])
    calls = count_unet_calls(pipeline.unet)
    counted = CountingEnsemble(ensemble)
    # (reuse, guidance_end) -> UNet calls, ensemble passes over 10 steps (the last, noise-free step is never guided).
    expected = {(None, 1.0): (10, 9), (False, 1.0): (19, 9), (None, 0.5): (10, 5), (False, 0.5): (15, 5)}
    for (reuse, guidance_end), (unet_calls, ensemble_calls) in expected.items():
        calls[0], counted.calls = 0, 0
        callback = _callback(counted, labels, reuse_denoiser_prediction=reuse, guidance_end=guidance_end)
        _sample(pipeline, labels, callback)
        assert (calls[0], counted.calls) == (unet_calls, ensemble_calls), (reuse, guidance_end)
        assert len(callback.trace) == ensemble_calls


def test_without_the_tensor_the_default_repredicts_and_reuse_true_raises(ensemble):
    pipeline, labels = tiny_class_conditional_pipeline(), torch.tensor([3, 7])
    pipeline.scheduler.set_timesteps(10)
    calls = count_unet_calls(pipeline.unet)
    latents = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    timestep = pipeline.scheduler.timesteps[2]
    kwargs = {"latents": latents.clone(), "class_labels": labels}  # no "pred_original_sample"
    moved = _callback(ensemble, labels)(pipeline, 2, timestep, dict(kwargs))["latents"]
    assert calls[0] == 1 and not torch.allclose(moved, latents)
    with pytest.raises(ValueError, match="pred_original_sample"):
        _callback(ensemble, labels, reuse_denoiser_prediction=True)(pipeline, 2, timestep, dict(kwargs))


@pytest.mark.parametrize("reuse", [None, False])
def test_both_paths_raise_disagreement_and_keep_the_label(ensemble, reuse):
    pipeline, labels = tiny_class_conditional_pipeline(), torch.arange(10).repeat(2)
    unguided = _sample(pipeline, labels)
    guided = _sample(pipeline, labels, _callback(ensemble, labels, reuse_denoiser_prediction=reuse))
    logits_unguided = ensemble.member_logits(digits_to_model_inputs(unguided))
    logits_guided = ensemble.member_logits(digits_to_model_inputs(guided))
    assert ensemble_variance(logits_guided).mean() > 2 * ensemble_variance(logits_unguided).mean()
    assert (logits_guided.softmax(1).mean(2).argmax(1) == labels).float().mean() >= 0.5


def test_fast_path_guides_stochastic_ddpm_sampling(ensemble):
    pipeline, labels = tiny_class_conditional_pipeline(), torch.tensor([0, 4, 9])
    pipeline.scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    calls = count_unet_calls(pipeline.unet)
    unguided = _sample(pipeline, labels, steps=6)
    guided = _sample(pipeline, labels, _callback(ensemble, labels, guidance_scale=0.3), steps=6)
    assert calls[0] == 12 and guided.isfinite().all()
    assert not torch.allclose(guided, unguided)


@pytest.mark.parametrize("scheduler_cls", [DDIMScheduler, DPMSolverMultistepScheduler])
def test_pipeline_hands_over_the_steps_own_prediction(scheduler_cls):
    # DDIM's `step` returns `pred_original_sample`; DPM-Solver's does not, so the pipeline derives it.
    pipeline, labels = tiny_class_conditional_pipeline(), torch.tensor([1, 6])
    pipeline.scheduler = scheduler_cls.from_config(pipeline.scheduler.config, clip_sample=False)
    records: list[dict[str, torch.Tensor]] = []

    def record(pipe, step_index, timestep, callback_kwargs):
        records.append({"timestep": timestep, **{name: value.clone() for name, value in callback_kwargs.items()}})
        return callback_kwargs

    pipeline.set_progress_bar_config(disable=True)
    pipeline(
        class_labels=labels,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=4,
        output_type="pt",
        callback_on_step_end=record,
        callback_on_step_end_tensor_inputs=["latents", "noise_pred", "pred_original_sample"],
    )
    for previous, current in zip(records, records[1:]):  # each step starts from the previous step's latents
        alpha_prod = pipeline.scheduler.alphas_cumprod[int(current["timestep"])]
        expected = predict_original_sample(current["noise_pred"], previous["latents"], alpha_prod, "epsilon")
        torch.testing.assert_close(current["pred_original_sample"], expected, rtol=1e-4, atol=1e-5)


def test_stable_diffusion_keeps_the_reprediction_path(ensemble):
    pipeline = tiny_stable_diffusion()
    calls = count_unet_calls(pipeline.unet)
    targets = [SynthesisTarget(target_id=0, label=3, example_id=0, example=None, score=0.5, num_samples=2)]
    request = GenerationRequest(targets, 1, 0, 1, "image", "label", estimator=ensemble)
    generator = DiffusionGenerator(pipeline, digits_to_model_inputs, num_inference_steps=4, show_progress=False)
    assert len(generator.generate(request)) == 2
    assert calls[0] == 4 + 3  # one call per step plus a re-prediction per guided step
    forced = DiffusionGenerator(
        pipeline, digits_to_model_inputs, num_inference_steps=4, show_progress=False, reuse_denoiser_prediction=True
    )
    with pytest.raises(ValueError, match="pred_original_sample"):  # diffusers rejects the unknown tensor name
        forced.generate(request)


# ------------------------------------------------------------------------------------------- one backward pass
@pytest.mark.parametrize("options", [{"guidance_normalization": "joint"}, {"normalize_gradient": False}])
def test_combined_objective_gives_the_step_of_the_two_separate_gradients(ensemble, options):
    # Joint normalization and raw gradients only use `gs · gate · ∇D + ls · ∇L`: one backward pass of the weighted
    # objective must give the same step as the two gradients taken separately.
    pipeline, labels = tiny_class_conditional_pipeline(), torch.arange(8)
    pipeline.scheduler.set_timesteps(10)
    latents = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    step_index, timestep = 2, pipeline.scheduler.timesteps[2]
    scales, floor = (0.3, 0.1), 0.12
    callback = _callback(
        ensemble, labels, guidance_scale=scales[0], label_scale=scales[1], label_floor=floor, **options
    )
    moved = callback(pipeline, step_index, timestep, {"latents": latents.clone(), "class_labels": labels})["latents"]

    noise_timestep = callback.trace[0]["step"]
    alpha_prod = pipeline.scheduler.alphas_cumprod[noise_timestep]
    sigma = (1 - alpha_prod).sqrt()
    with torch.no_grad():
        noise = pipeline.unet(latents, torch.tensor(noise_timestep), class_labels=labels).sample
    x = latents.clone().requires_grad_(True)
    images = predict_original_sample(noise, x, alpha_prod, "epsilon") / 2 + 0.5
    logits = ensemble.member_logits(digits_to_model_inputs(images + (images.clamp(0, 1) - images).detach()))
    label_term = label_log_probability(logits, labels)
    gate = (label_term.detach() >= torch.log(torch.tensor(floor))).float().view(-1, 1, 1, 1)
    assert 0 < gate.sum() < len(labels)  # the gate is shut for some samples only
    (disagreement_gradient,) = torch.autograd.grad(ensemble_variance(logits).sum(), x, retain_graph=True)
    (label_gradient,) = torch.autograd.grad(label_term.sum(), x)
    combined = scales[0] * gate * disagreement_gradient + scales[1] * label_gradient
    if options.get("normalize_gradient", True):
        rms = combined.flatten(1).pow(2).mean(1).sqrt().view(-1, 1, 1, 1)
        step = sigma * (scales[0] * gate + scales[1]) * combined / rms
    else:
        step = sigma**2 * combined
    weight = callback.step_weight(step_index, 10)
    torch.testing.assert_close(moved, latents + weight * step, rtol=1e-4, atol=1e-6)

"""Guided diffusion: the class-conditional pipeline, the ensemble-guidance callback and `DiffusionGenerator`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Image
from image_helpers import LinearPixelEnsemble, tiny_class_conditional_pipeline, tiny_stable_diffusion

from hf_active_synth.acquisition import ensemble_variance
from hf_active_synth.columns import PROVENANCE_COLUMNS
from hf_active_synth.generators.base import REQUIRED_PROVENANCE_COLUMNS, GenerationRequest, SynthesisTarget
from hf_active_synth.generators.diffusion import DiffusionGenerator, derive_sample_seed
from hf_active_synth.generators.diffusion_guidance import EnsembleGuidanceCallback, label_log_probability
from hf_active_synth.tasks.digits import digits_to_model_inputs, images_to_tensor, split_digits

# Tiny models on shared cores: one thread is several times faster than two contended ones.
pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def digits_train():
    return split_digits(train_per_class=30, seed=0)["train"]


@pytest.fixture(scope="module")
def ensemble(digits_train):
    pixels = digits_to_model_inputs(images_to_tensor(list(digits_train["image"])))["pixel_values"]
    return LinearPixelEnsemble(num_members=4, seed=0).fit(pixels, torch.tensor(digits_train["label"]))


def _generators(count: int, offset: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(offset + index) for index in range(count)]


def _sample(pipeline, labels, callback=None, steps=10, offset=0):
    pipeline.set_progress_bar_config(disable=True)
    return pipeline(
        class_labels=labels,
        generator=_generators(len(labels), offset),
        num_inference_steps=steps,
        output_type="pt",
        callback_on_step_end=callback,
    ).images


def _callback(ensemble, labels, **kwargs):
    return EnsembleGuidanceCallback(
        estimator=ensemble, to_model_inputs=digits_to_model_inputs, class_labels=labels, **kwargs
    )


def _request(estimator=None, seed=0, num_samples=2, candidates_per_sample=2, examples=None):
    labels = [3, 7]
    targets = [
        SynthesisTarget(
            target_id=index,
            label=label,
            example_id=100 + index,
            example=None if examples is None else examples[index],
            score=0.5,
            num_samples=num_samples,
        )
        for index, label in enumerate(labels)
    ]
    return GenerationRequest(
        targets=targets,
        cycle=1,
        seed=seed,
        candidates_per_sample=candidates_per_sample,
        input_column="image",
        label_column="label",
        label_names=[str(digit) for digit in range(10)],
        estimator=estimator,
    )


# --------------------------------------------------------------------------------------------------- pipeline
def test_pipeline_samples_in_range_and_per_sample_seeding():
    pipeline = tiny_class_conditional_pipeline()
    images = _sample(pipeline, [0, 1, 2], steps=5)
    assert images.shape == (3, 1, 8, 8)
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, _sample(pipeline, [0, 1, 2], steps=5))
    # One generator per sample: a sample does not depend on the rest of its batch.
    alone = _sample(pipeline, [1], steps=5, offset=1)
    torch.testing.assert_close(alone[0], images[1])


def test_pipeline_rejects_bad_labels_and_unconditional_unets():
    pipeline = tiny_class_conditional_pipeline()
    with pytest.raises(ValueError, match="class_labels"):
        pipeline(class_labels=[12], num_inference_steps=2)
    pipeline.unet.register_to_config(num_class_embeds=None)
    with pytest.raises(ValueError, match="num_class_embeds"):
        pipeline(class_labels=[1], num_inference_steps=2)


def test_pipeline_img2img_stays_closer_to_the_start_image():
    pipeline = tiny_class_conditional_pipeline()
    start = torch.zeros(2, 1, 8, 8)
    start[:, :, 2:6, 3:5] = 1.0
    pipeline.set_progress_bar_config(disable=True)
    edited = pipeline(
        class_labels=[1, 1],
        image=start,
        strength=0.3,
        generator=_generators(2),
        num_inference_steps=10,
        output_type="pt",
    ).images
    fresh = _sample(pipeline, [1, 1])
    assert (edited - start).abs().mean() < (fresh - start).abs().mean()


# --------------------------------------------------------------------------------------------------- callback
def test_callback_changes_latents_only_when_scaled(ensemble):
    pipeline = tiny_class_conditional_pipeline()
    pipeline.scheduler.set_timesteps(10)
    latents = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([3, 7])
    timestep = pipeline.scheduler.timesteps[2]
    moved = []
    for guidance_scale, label_scale, backprop in [(0.3, 0.0, False), (0.0, 0.3, False), (0.3, 0.0, True)]:
        callback = _callback(
            ensemble,
            labels,
            guidance_scale=guidance_scale,
            label_scale=label_scale,
            backprop_through_denoiser=backprop,
        )
        out = callback(pipeline, 2, timestep, {"latents": latents.clone(), "class_labels": labels})
        assert not torch.allclose(out["latents"], latents)
        moved.append(out["latents"] - latents)
    assert not torch.allclose(moved[0], moved[2])  # differentiating through the UNet changes the direction
    callback = _callback(ensemble, labels, guidance_scale=0.0, label_scale=0.0)
    out = callback(pipeline, 2, timestep, {"latents": latents.clone(), "class_labels": labels})
    assert torch.equal(out["latents"], latents)
    assert callback.trace == []


def test_callback_schedule_window_and_decay(ensemble):
    callback = _callback(ensemble, torch.tensor([1]), guidance_start=0.2, guidance_end=0.6, guidance_decay=1.0)
    weights = [callback.step_weight(step, 10) for step in range(10)]
    assert weights[:2] == [0.0, 0.0] and weights[6:] == [0.0] * 4
    assert weights[2] == pytest.approx(0.8) and weights[5] == pytest.approx(0.5)


def test_scale_zero_callback_gives_the_unguided_samples(ensemble):
    pipeline = tiny_class_conditional_pipeline()
    labels = torch.tensor([2, 5, 8])
    plain = _sample(pipeline, labels)
    zero = _sample(pipeline, labels, _callback(ensemble, labels, guidance_scale=0.0, label_scale=0.0))
    guided = _sample(pipeline, labels, _callback(ensemble, labels, guidance_scale=0.3, label_scale=0.1))
    assert torch.equal(plain, zero)
    assert not torch.allclose(plain, guided)


def test_guided_samples_have_more_disagreement_and_keep_their_label(ensemble):
    pipeline = tiny_class_conditional_pipeline()
    labels = torch.arange(10).repeat(2)
    unguided = _sample(pipeline, labels)
    callback = _callback(ensemble, labels, guidance_scale=0.3, label_scale=0.1)
    guided = _sample(pipeline, labels, callback)
    logits_unguided = ensemble.member_logits(digits_to_model_inputs(unguided))
    logits_guided = ensemble.member_logits(digits_to_model_inputs(guided))
    assert ensemble_variance(logits_guided).mean() > 2 * ensemble_variance(logits_unguided).mean()
    agreement = (logits_guided.softmax(1).mean(2).argmax(1) == labels).float().mean()
    assert agreement >= 0.5  # the untrained UNet alone gives chance level; the label term keeps the class
    assert len(callback.trace) == 9  # 10 steps, the last one (noise-free) unguided


def test_label_log_probability_is_the_log_of_the_mean_member_probability():
    logits = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 3])
    expected = logits.softmax(1).mean(2)[torch.arange(3), labels].log()
    torch.testing.assert_close(label_log_probability(logits, labels), expected)


def test_callback_validates_its_arguments(ensemble):
    with pytest.raises(TypeError, match="member_logits"):
        _callback(object(), torch.tensor([1]))
    with pytest.raises(ValueError, match="guidance_start"):
        _callback(ensemble, torch.tensor([1]), guidance_start=0.8, guidance_end=0.2)
    with pytest.raises(ValueError, match="random"):
        _callback(ensemble, torch.tensor([1]), acquisition="random")


# -------------------------------------------------------------------------------------------------- generator
def _generator(pipeline, **kwargs):
    defaults = {"num_inference_steps": 5, "batch_size": 3, "show_progress": False}
    return DiffusionGenerator(pipeline, digits_to_model_inputs, **{**defaults, **kwargs})


def test_generator_output_rows_columns_and_provenance(ensemble):
    request = _request(estimator=ensemble)
    dataset = _generator(tiny_class_conditional_pipeline(), guidance_scale=0.3, label_scale=0.1).generate(request)
    assert len(dataset) == request.num_candidates == 8
    for column in (*REQUIRED_PROVENANCE_COLUMNS, "image", "label", "synth_guidance_scale", "synth_label_scale"):
        assert column in dataset.column_names
    assert isinstance(dataset.features["image"], Image)
    assert isinstance(dataset.features["label"], ClassLabel)
    assert dataset["label"] == [3] * 4 + [7] * 4
    assert dataset["synth_target_id"] == [0] * 4 + [1] * 4
    assert dataset["synth_target_label"] == dataset["label"]
    assert set(dataset["synth_cycle"]) == {1} and set(dataset["synth_generator"]) == {"diffusion"}
    assert set(dataset["synth_guidance_scale"]) == {0.3} and set(dataset["synth_label_scale"]) == {0.1}
    assert list(dataset["synth_seed_example_ids"]) == [[]] * 8  # sampled from noise, no real image used
    image = dataset[0]["image"]
    assert image.size == (8, 8) and image.mode == "L"
    assert dataset["synth_sample_seed"][1] == derive_sample_seed(0, 0, 1)
    # Column order and types come from `hf_active_synth.columns`: input, label, required provenance, then extras.
    assert dataset.column_names[:7] == ["image", "label", *REQUIRED_PROVENANCE_COLUMNS]
    for name in dataset.column_names[2:]:
        assert dataset.features[name] == PROVENANCE_COLUMNS[name].feature, name


def test_generator_is_deterministic_per_seed(ensemble):
    generator = _generator(tiny_class_conditional_pipeline(), guidance_scale=0.3, label_scale=0.1)
    first = [np.asarray(image) for image in generator.generate(_request(estimator=ensemble, seed=4))["image"]]
    again = [np.asarray(image) for image in generator.generate(_request(estimator=ensemble, seed=4))["image"]]
    other = [np.asarray(image) for image in generator.generate(_request(estimator=ensemble, seed=5))["image"]]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    # Re-batching does not change a sample either.
    rebatched = _generator(tiny_class_conditional_pipeline(), guidance_scale=0.3, label_scale=0.1, batch_size=8)
    regrouped = [np.asarray(image) for image in rebatched.generate(_request(estimator=ensemble, seed=4))["image"]]
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(first, regrouped))


def _pixels(dataset) -> list[list]:
    return [np.asarray(image).tolist() for image in dataset["image"]]


def test_guidance_iff_the_request_carries_an_estimator(ensemble):
    pipeline = tiny_class_conditional_pipeline()
    generator = _generator(pipeline, guidance_scale=0.3, label_scale=0.1)
    guided = generator.generate(_request(estimator=ensemble))
    unguided = generator.generate(_request(estimator=None))  # guidance=False: no estimator, no error
    plain = _generator(pipeline, guidance_scale=0.0, label_scale=0.0).generate(_request(estimator=ensemble))
    assert _pixels(unguided) == _pixels(plain)  # the same noise, sampled without guidance
    assert _pixels(guided) != _pixels(unguided)
    assert set(guided["synth_guidance_scale"]) == {0.3} and set(unguided["synth_guidance_scale"]) == {0.0}
    assert set(unguided["synth_guidance_acquisition"]) == {None}


def test_unguided_requests_are_anchored_on_the_target_image_too(ensemble):
    # The random baselines keep active synthesis's img2img anchoring: only the guidance is off.
    pipeline = tiny_class_conditional_pipeline()
    white = [np.full((8, 8), 255, dtype=np.uint8)] * 2
    black = [np.zeros((8, 8), dtype=np.uint8)] * 2
    anchored = _generator(pipeline, strength=0.5).generate(_request(estimator=None, examples=white))
    from_noise = _generator(pipeline).generate(_request(estimator=None, examples=white))
    other_anchor = _generator(pipeline, strength=0.5).generate(_request(estimator=None, examples=black))
    # Same seeds and settings as the guided path with its terms at zero: the same anchored samples.
    zero_guided = _generator(pipeline, strength=0.5, guidance_scale=0.0, label_scale=0.0).generate(
        _request(estimator=ensemble, examples=white)
    )
    assert _pixels(anchored) == _pixels(zero_guided)
    assert _pixels(anchored) != _pixels(from_noise) and _pixels(anchored) != _pixels(other_anchor)
    assert np.mean(_pixels(anchored)) > np.mean(_pixels(other_anchor))  # pulled towards its (white) anchor
    assert set(anchored["synth_strength"]) == {0.5} and set(anchored["synth_guidance_scale"]) == {0.0}
    assert list(anchored["synth_seed_example_ids"]) == [[100]] * 4 + [[101]] * 4
    assert set(from_noise["synth_strength"]) == {None} and list(from_noise["synth_seed_example_ids"]) == [[]] * 8


def test_generator_img2img_records_the_seed_example(ensemble):
    examples = [np.eye(8, dtype=np.uint8) * 255, np.fliplr(np.eye(8, dtype=np.uint8)) * 255]
    request = _request(estimator=ensemble, examples=examples, num_samples=1)
    dataset = _generator(tiny_class_conditional_pipeline(), strength=0.4).generate(request)
    assert list(dataset["synth_seed_example_ids"]) == [[100], [100], [101], [101]]
    assert set(dataset["synth_strength"]) == {0.4}


def test_generator_input_errors(ensemble):
    pipeline = tiny_class_conditional_pipeline()
    with pytest.raises(ValueError, match="strength"):
        _generator(pipeline, strength=1.5).generate(_request(estimator=ensemble))
    with pytest.raises(ValueError, match="no targets"):
        _generator(pipeline).generate(GenerationRequest([], 1, 0, 1, "image", "label", estimator=ensemble))
    with pytest.raises(TypeError, match="not supported"):
        _generator(object()).generate(_request(estimator=ensemble))


# ------------------------------------------------------------------------------------------- stable diffusion
def test_stable_diffusion_text2img_with_guidance(ensemble):
    pipeline = tiny_stable_diffusion()
    kwargs = {"prompts": "a photo of {label_name}", "num_inference_steps": 4}
    guided = _generator(pipeline, guidance_scale=0.5, label_scale=0.1, **kwargs).generate(_request(estimator=ensemble))
    unguided = _generator(pipeline, guidance_scale=0.0, label_scale=0.0, **kwargs).generate(
        _request(estimator=ensemble)
    )
    assert len(guided) == 8
    assert guided[0]["image"].size == (16, 16) and guided[0]["image"].mode == "RGB"
    assert guided["synth_prompt"][0] == "a photo of 3" and guided["synth_prompt"][-1] == "a photo of 7"
    assert set(REQUIRED_PROVENANCE_COLUMNS) <= set(guided.column_names)
    differs = [not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(guided["image"], unguided["image"])]
    assert all(differs)


def test_stable_diffusion_img2img_from_the_target_example(ensemble):
    examples = [np.eye(8, dtype=np.uint8) * 255, np.full((8, 8), 128, dtype=np.uint8)]
    request = _request(estimator=ensemble, examples=examples, num_samples=1, candidates_per_sample=3)
    for pipeline in (tiny_stable_diffusion(img2img=True), tiny_stable_diffusion()):  # the second via from_pipe
        generator = _generator(pipeline, strength=0.6, guidance_scale=0.5, label_scale=0.1, num_inference_steps=4)
        dataset = generator.generate(request)
        assert len(dataset) == 6
        assert list(dataset["synth_seed_example_ids"]) == [[100]] * 3 + [[101]] * 3
        assert dataset[0]["image"].size == (16, 16)

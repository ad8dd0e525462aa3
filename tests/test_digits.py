"""Digits support: dataset, splits, preprocessing, classifier factory, cached DDPM training, and an e2e check."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Image
from image_helpers import ModelEnsemble, train_classifier

from hf_active_synth.acquisition import ensemble_variance
from hf_active_synth.generators.base import GenerationRequest, SynthesisTarget
from hf_active_synth.generators.diffusion import DiffusionGenerator
from hf_active_synth.generators.diffusion_pipeline import ClassConditionalImagePipeline
from hf_active_synth.tasks.digits import (
    DIGITS_LABEL_NAMES,
    digits_to_model_inputs,
    images_to_tensor,
    load_digits_dataset,
    make_digits_classifier,
    preprocess_digits,
    split_digits,
    train_class_conditional_ddpm,
)

# Tiny models on shared cores: one thread is several times faster than two contended ones.
pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


def test_load_digits_dataset(digits):
    assert len(digits) == 1797
    assert isinstance(digits.features["image"], Image)
    assert isinstance(digits.features["label"], ClassLabel) and digits.features["label"].names == DIGITS_LABEL_NAMES
    image = digits[0]["image"]
    assert image.size == (8, 8) and image.mode == "L"
    from sklearn.datasets import load_digits

    expected = np.rint(load_digits().images[0] * 255 / 16).astype(np.uint8)  # 0-16 intensities scaled to 0-255
    assert np.array_equal(np.asarray(image), expected) and digits[0]["label"] == 0


def test_split_digits_is_seeded_stratified_and_disjoint(digits):
    splits = split_digits(digits, train_per_class=10, test_fraction=0.25, seed=3)
    assert np.bincount(splits["train"]["label"]).tolist() == [10] * 10
    sizes = {name: len(split) for name, split in splits.items()}
    assert sum(sizes.values()) == 1797 and 440 <= sizes["test"] <= 460
    again = split_digits(digits, train_per_class=10, test_fraction=0.25, seed=3)
    other = split_digits(digits, train_per_class=10, test_fraction=0.25, seed=4)
    pixels = [np.asarray(image).tobytes() for image in splits["train"]["image"]]
    assert pixels == [np.asarray(image).tobytes() for image in again["train"]["image"]]
    assert pixels != [np.asarray(image).tobytes() for image in other["train"]["image"]]
    with pytest.raises(ValueError, match="too few"):
        split_digits(digits, train_per_class=170)


def test_preprocess_matches_differentiable_to_model_inputs(digits):
    batch = digits[:4]
    inputs = preprocess_digits(batch)
    assert inputs["pixel_values"].shape == (4, 1, 8, 8) and inputs["pixel_values"].dtype == torch.float32
    images = images_to_tensor(batch["image"]).requires_grad_(True)
    mapped = digits_to_model_inputs(images)["pixel_values"]
    torch.testing.assert_close(mapped, inputs["pixel_values"])
    mapped.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    rgb = digits_to_model_inputs(images.detach().repeat(1, 3, 2, 2).clone())  # RGB 16x16 → gray 8x8
    assert rgb["pixel_values"].shape == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="B, 1 or 3"):
        digits_to_model_inputs(torch.zeros(8, 8))


def test_digits_classifiers(digits):
    inputs = preprocess_digits(digits[:6])
    resnet = make_digits_classifier("resnet", seed=0).eval()
    assert resnet(**inputs).logits.shape == (6, 10)
    same = make_digits_classifier("resnet", seed=0).eval()
    other = make_digits_classifier("resnet", seed=1).eval()
    torch.testing.assert_close(resnet(**inputs).logits, same(**inputs).logits)
    assert not torch.allclose(resnet(**inputs).logits, other(**inputs).logits)
    convnext = make_digits_classifier("convnext", seed=0).train()
    many = preprocess_digits(digits[:64])
    torch.manual_seed(0)
    assert not torch.allclose(convnext(**many).logits, convnext(**many).logits)  # stochastic depth for MC
    assert convnext.eval()(**inputs).logits.shape == (6, 10)
    with pytest.raises(ValueError, match="architecture"):
        make_digits_classifier("vgg")


def test_train_class_conditional_ddpm_trains_saves_and_loads_the_cache(digits, tmp_path):
    data = digits.select(range(40))
    kwargs = {"num_train_steps": 3, "batch_size": 8, "block_out_channels": (8, 16), "seed": 0}
    pipeline = train_class_conditional_ddpm(data, tmp_path, **kwargs)
    assert isinstance(pipeline, ClassConditionalImagePipeline)
    saved = list(tmp_path.glob("ddpm-*"))
    assert len(saved) == 1 and (saved[0] / "unet" / "config.json").is_file()
    assert (saved[0] / "training_info.json").is_file()
    started = time.perf_counter()
    cached = train_class_conditional_ddpm(data, tmp_path, **kwargs)
    assert time.perf_counter() - started < 5
    for name, parameter in pipeline.unet.state_dict().items():
        torch.testing.assert_close(cached.unet.state_dict()[name], parameter)
    assert type(cached.scheduler).__name__ == "DDIMScheduler"
    train_class_conditional_ddpm(data, tmp_path, **{**kwargs, "seed": 1})  # a new key, a new model
    train_class_conditional_ddpm(digits.select(range(1, 41)), tmp_path, **kwargs)  # new data, new model
    assert len(list(tmp_path.glob("ddpm-*"))) == 3
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(class_labels=[0, 1], num_inference_steps=3, output_type="pt").images
    assert images.shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="columns"):
        train_class_conditional_ddpm(data.rename_column("image", "pixels"), tmp_path, **kwargs)


@pytest.mark.e2e
def test_e2e_guided_digits_have_more_disagreement_and_keep_their_labels(tmp_path):
    """Real digits: a briefly trained DDPM, a 4-member ResNet ensemble, guided vs unguided from the same seeds."""
    from sklearn.linear_model import LogisticRegression

    splits = split_digits(train_per_class=50, seed=0)
    train = splits["train"]
    # Capped training (~20 s on one core); a judge independent of the guiding ensemble measures label agreement.
    pipeline = train_class_conditional_ddpm(
        train, tmp_path, num_train_steps=350, block_out_channels=(16, 32), learning_rate=3e-3
    )
    pixels = digits_to_model_inputs(images_to_tensor(train["image"]))["pixel_values"]
    labels = torch.tensor(train["label"])
    ensemble = ModelEnsemble(
        [train_classifier(make_digits_classifier("resnet", seed=k), pixels, labels, seed=k) for k in range(4)]
    )
    judge_images = images_to_tensor(list(train["image"]) + list(splits["pool"]["image"]))
    judge = LogisticRegression(max_iter=3000).fit(
        judge_images.flatten(1).numpy(), list(train["label"]) + list(splits["pool"]["label"])
    )
    targets = [
        SynthesisTarget(target_id=c, label=c, example_id=c, example=None, score=0.0, num_samples=10) for c in range(10)
    ]
    request = GenerationRequest(
        targets=targets,
        cycle=1,
        seed=0,
        candidates_per_sample=1,
        input_column="image",
        label_column="label",
        label_names=DIGITS_LABEL_NAMES,
        estimator=ensemble,
    )

    def measure(scales):
        generator = DiffusionGenerator(pipeline, digits_to_model_inputs, batch_size=100, show_progress=False, **scales)
        dataset = generator.generate(request)
        images = images_to_tensor(dataset["image"])
        with torch.no_grad():
            variance = ensemble_variance(ensemble.member_logits(digits_to_model_inputs(images))).mean().item()
        agreement = (judge.predict(images.flatten(1).numpy()) == np.asarray(dataset["label"])).mean()
        return variance, agreement

    unguided_variance, unguided_agreement = measure({"guidance_scale": 0.0, "label_scale": 0.0})
    guided_variance, guided_agreement = measure({})  # the defaults: 0.2 / 0.1, decay 1
    print(
        f"disagreement unguided {unguided_variance:.3f} guided {guided_variance:.3f}; "
        f"label agreement unguided {unguided_agreement:.2f} guided {guided_agreement:.2f}"
    )
    assert guided_variance > 1.5 * unguided_variance
    assert unguided_agreement >= 0.5
    assert guided_agreement >= 0.5 and guided_agreement >= unguided_agreement - 0.15

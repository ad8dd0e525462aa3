"""Seeded image and text corruptions, and `corrupt_dataset`."""

from __future__ import annotations

import dataclasses

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hf_active_synth.evaluation.corruptions import (
    CORRUPTIONS,
    IMAGE_CORRUPTIONS,
    KEYBOARD_NEIGHBOURS,
    SEVERITIES,
    TEXT_CORRUPTIONS,
    CharacterSwaps,
    GaussianBlur,
    GaussianNoise,
    KeyboardTypos,
    Occlusion,
    Rotation,
    WordDropout,
    corrupt_dataset,
    edit_distance,
    get_corruption,
)

SENTENCES = [
    "the film is a quiet triumph of acting and writing",
    "an overlong and tedious mess that never finds its footing",
    "Funny, warm and surprisingly moving from start to finish.",
    "I would not recommend this movie to anyone I like",
    "a striking debut with a handful of unforgettable scenes",
    "plodding, predictable and painfully unfunny",
]


def _image(shape=(16, 16, 3), dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(40, 216, size=shape, dtype=np.uint8)
    return rng.uniform(0.2, 0.8, size=shape).astype(dtype)


def test_registry_names_and_modalities():
    assert set(IMAGE_CORRUPTIONS) == {"gaussian_noise", "gaussian_blur", "occlusion", "rotation"}
    assert set(TEXT_CORRUPTIONS) == {"keyboard_typos", "character_swaps", "word_dropout"}
    for name in CORRUPTIONS:
        assert get_corruption(name, severity=2).severity == 2
    with pytest.raises(ValueError, match="choose one of"):
        get_corruption("fog")


@pytest.mark.parametrize("severity", [0, 6, 2.5, True, "3"])
def test_severity_is_validated(severity):
    with pytest.raises(ValueError, match="severity must be an integer from 1 to 5"):
        GaussianNoise(severity=severity)
    with pytest.raises(ValueError, match="severity must be an integer from 1 to 5"):
        WordDropout(severity=severity)


@pytest.mark.parametrize("name", IMAGE_CORRUPTIONS)
@pytest.mark.parametrize(
    ("shape", "dtype"), [((12, 10), np.uint8), ((12, 10, 3), np.uint8), ((9, 9), np.float32), ((8, 8, 1), np.float64)]
)
def test_image_corruptions_keep_shape_dtype_range_and_are_deterministic(name, shape, dtype):
    image = _image(shape, dtype)
    corruption = get_corruption(name, severity=3)
    out = corruption(image, rng=7)
    assert out.shape == image.shape and out.dtype == image.dtype
    high = 255 if dtype == np.uint8 else 1.0
    assert out.min() >= 0 and out.max() <= high
    np.testing.assert_array_equal(out, corruption(image, rng=7))
    np.testing.assert_array_equal(out, corruption(image, rng=np.random.default_rng(7)))
    assert not np.array_equal(out, image)
    # The input is never modified in place.
    np.testing.assert_array_equal(image, _image(shape, dtype))


@pytest.mark.parametrize("name", ["gaussian_noise", "occlusion", "rotation"])
def test_random_image_corruptions_depend_on_the_seed(name):
    image = _image((16, 16))
    corruption = get_corruption(name, severity=3)
    outputs = {corruption(image, rng=seed).tobytes() for seed in range(6)}
    assert len(outputs) > 1


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("name", IMAGE_CORRUPTIONS)
def test_pil_images_round_trip(name, mode):
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    image = Image.fromarray(_image((10, 12, *channels)))
    assert image.mode == mode
    out = get_corruption(name, severity=2)(image, rng=0)
    assert isinstance(out, Image.Image) and out.mode == mode and out.size == image.size


def test_pil_palette_images_are_rejected_with_a_fix():
    image = Image.fromarray(_image((8, 8, 3))).convert("P")
    with pytest.raises(ValueError, match=r"convert\('RGB'\)"):
        GaussianNoise()(image)


def _mean_absolute_change(corruption_cls, image, **kwargs):
    return [
        np.mean([np.abs(corruption_cls(severity=s, **kwargs)(image, rng=seed) - image).mean() for seed in range(5)])
        for s in SEVERITIES
    ]


@pytest.mark.parametrize("cls", [GaussianNoise, GaussianBlur, Rotation])
def test_image_severity_increases_the_change(cls):
    # A structured image (an off-centre bright bar on a dark background): rotating pixel noise would move
    # everything at any angle.
    image = np.full((16, 16), 0.1)
    image[3:7, 2:14] = 0.9
    changes = _mean_absolute_change(cls, image)
    assert all(a < b for a, b in zip(changes, changes[1:])), changes


def test_occlusion_changes_more_pixels_at_higher_severity():
    image = np.full((8, 8), 10.0)
    # Pixel counts for an 8x8 image: sides 1, 2, 3, 4, 5.
    changed = [int((Occlusion(severity=s, value_range=(0, 16))(image, rng=3) != image).sum()) for s in SEVERITIES]
    assert changed == [1, 4, 9, 16, 25]
    patch = Occlusion(severity=5, value_range=(0, 16), fill=16)(image, rng=3)
    assert set(np.unique(patch)) == {10.0, 16.0}


def test_value_range_is_explicit_never_guessed():
    digits = np.arange(64, dtype=np.int64).reshape(8, 8) % 17  # scikit-learn digits live on [0, 16]
    with pytest.raises(ValueError, match="pass value_range"):
        GaussianNoise()(digits)
    out = GaussianNoise(severity=5, value_range=(0, 16))(digits, rng=0)
    assert out.dtype == np.int64 and out.min() >= 0 and out.max() <= 16
    with pytest.raises(ValueError, match="outside value_range"):
        GaussianNoise()(np.full((4, 4), 3.0))
    with pytest.raises(ValueError, match="low < high"):
        GaussianNoise(value_range=(1, 0))
    with pytest.raises(TypeError, match="numpy array or a PIL image"):
        GaussianNoise()([[0.1, 0.2]])
    with pytest.raises(ValueError, match="HxW or HxWxC"):
        GaussianNoise()(np.zeros(5))


def test_keyboard_neighbours_are_adjacent_keys():
    assert set(KEYBOARD_NEIGHBOURS["s"]) == set("qweadzxc")
    assert "g" not in KEYBOARD_NEIGHBOURS["a"]


@pytest.mark.parametrize("name", TEXT_CORRUPTIONS)
def test_text_corruptions_are_deterministic_and_seeded(name):
    corruption = get_corruption(name, severity=5)
    text = " ".join(SENTENCES)
    assert corruption(text, rng=1) == corruption(text, rng=1)
    assert len({corruption(text, rng=seed) for seed in range(5)}) > 1
    assert corruption("", rng=0) == ""
    with pytest.raises(TypeError, match="expects a string"):
        corruption(3, rng=0)


@pytest.mark.parametrize("cls", [KeyboardTypos, CharacterSwaps, WordDropout])
def test_text_severity_increases_edit_distance(cls):
    distances = [
        np.mean([edit_distance(text, cls(severity=s)(text, rng=seed)) for text in SENTENCES for seed in range(4)])
        for s in SEVERITIES
    ]
    assert all(a < b for a, b in zip(distances, distances[1:])), distances


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet="abcdefghij ABC.,!", max_size=60), seed=st.integers(0, 2**32 - 1))
def test_text_corruption_invariants(text, seed):
    typos = KeyboardTypos(severity=5)(text, rng=seed)
    assert len(typos) == len(text)
    assert [c.isupper() for c in typos] == [c.isupper() for c in text]
    swapped = CharacterSwaps(severity=5)(text, rng=seed)
    assert sorted(swapped) == sorted(text)
    assert [c.isspace() for c in swapped] == [c.isspace() for c in text]
    dropped = WordDropout(severity=5)(text, rng=seed)
    kept = dropped.split()
    assert (len(kept) >= 1) == bool(text.split())
    # The kept words appear in their original order.
    remaining = iter(text.split())
    assert all(any(word == candidate for candidate in remaining) for word in kept)


def test_word_dropout_is_nested_across_severities():
    text = " ".join(SENTENCES)
    kept = [set(WordDropout(severity=s)(text, rng=0).split()) for s in SEVERITIES]
    assert all(b <= a for a, b in zip(kept, kept[1:]))


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("same", "same") == 0


def _image_dataset(n=12):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 17, size=(n, 8, 8)).astype(np.float32)
    features = datasets.Features(
        {"image": datasets.Array2D(shape=(8, 8), dtype="float32"), "label": datasets.ClassLabel(num_classes=3)}
    )
    return datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(n)]}, features=features)


def test_corrupt_dataset_images_keeps_features_and_labels():
    dataset = _image_dataset()
    corrupted = corrupt_dataset(dataset, "image", GaussianNoise(value_range=(0, 16)), severity=4, seed=5)
    assert corrupted.features == dataset.features
    assert corrupted["label"] == dataset["label"]
    before = np.asarray(dataset.with_format("numpy")["image"])
    after = np.asarray(corrupted.with_format("numpy")["image"])
    assert after.shape == before.shape and after.dtype == before.dtype
    assert (after != before).mean() > 0.5 and after.min() >= 0 and after.max() <= 16
    # Row i is GaussianNoise applied with the generator default_rng([seed, i]).
    expected = GaussianNoise(severity=4, value_range=(0, 16))(before[3], rng=np.random.default_rng([5, 3]))
    np.testing.assert_array_equal(after[3], expected)


def test_corrupt_dataset_is_independent_of_batching_and_processes():
    dataset = datasets.Dataset.from_dict({"text": SENTENCES * 3, "label": [0, 1] * 9})
    reference = corrupt_dataset(dataset, "text", "keyboard_typos", severity=5, seed=3, batch_size=1000)
    for kwargs in ({"batch_size": 1}, {"batch_size": 4}, {"batch_size": 5, "num_proc": 2}):
        other = corrupt_dataset(dataset, "text", "keyboard_typos", severity=5, seed=3, **kwargs)
        assert other["text"] == reference["text"], kwargs
    assert reference["label"] == dataset["label"]
    assert reference["text"] != dataset["text"]
    assert corrupt_dataset(dataset, "text", "keyboard_typos", severity=5, seed=4)["text"] != reference["text"]
    # Identical texts in different rows get different typos: each row has its own generator.
    assert reference["text"][0] != reference["text"][6]


def test_corrupt_dataset_pil_images():
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, size=(10, 10, 3), dtype=np.uint8)) for _ in range(4)]
    dataset = datasets.Dataset.from_dict({"img": images, "label": [0, 1, 0, 1]}).cast_column("img", datasets.Image())
    corrupted = corrupt_dataset(dataset, "img", "occlusion", severity=5, seed=0)
    assert corrupted.features == dataset.features
    first = corrupted[0]["img"]
    assert first.mode == "RGB" and first.size == (10, 10)
    assert (np.asarray(first) == 0).all(axis=-1).sum() >= 36  # a 6x6 black patch


def test_corrupt_dataset_rejects_bad_arguments():
    dataset = datasets.Dataset.from_dict({"text": ["a b"], "label": [0]})
    with pytest.raises(ValueError, match="columns are"):
        corrupt_dataset(dataset, "sentence", "word_dropout", severity=1)
    with pytest.raises(ValueError, match="Pass a severity"):
        corrupt_dataset(dataset, "text", "word_dropout")
    with pytest.raises(TypeError, match="not the class"):
        corrupt_dataset(dataset, "text", WordDropout, severity=1)
    with pytest.raises(TypeError, match="datasets.Dataset"):
        corrupt_dataset({"text": ["a"]}, "text", "word_dropout", severity=1)
    with pytest.raises(TypeError, match="cannot corrupt a str"):
        corrupt_dataset(dataset, "text", "gaussian_noise", severity=1)
    # An instance's own severity is used, or overridden by an explicit one.
    instance = WordDropout(severity=2)
    assert dataclasses.replace(instance, severity=5).severity == 5
    assert corrupt_dataset(dataset, "text", instance)["label"] == [0]

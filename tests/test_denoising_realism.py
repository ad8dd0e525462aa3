"""The denoising realism filter: the class-conditional DDPM's own noise-prediction error at mid noise."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image, Value
from diffusers import EulerDiscreteScheduler, UNet2DModel
from image_helpers import tiny_class_conditional_pipeline, tiny_stable_diffusion

from hf_active_synth.candidates import apply_filters
from hf_active_synth.columns import DENOISING_ERROR_COLUMN
from hf_active_synth.filters import builtin_real_data_filter_names
from hf_active_synth.filters.base import FilterContext
from hf_active_synth.filters.denoising import DenoisingRealismFilter, denoiser_components
from hf_active_synth.generators.diffusion import DiffusionGenerator
from hf_active_synth.tasks.digits import digits_to_model_inputs, load_digits_dataset, train_class_conditional_ddpm


@pytest.fixture(scope="module")
def digits():
    rows = load_digits_dataset().select(range(200))
    return rows.select(range(100)), rows.select(range(100, 200))  # (DDPM training images, unseen real images)


@pytest.fixture(scope="module")
def ddpm(digits, tmp_path_factory):
    # ~3 s on one CPU thread: enough for pure noise to score clearly worse than real digits.
    return train_class_conditional_ddpm(
        digits[0], tmp_path_factory.mktemp("ddpm"), block_out_channels=(4, 8), num_train_steps=150, batch_size=32
    )


def _context(real_dataset):
    return FilterContext(input_column="image", label_column="label", real_dataset=real_dataset, num_labels=10)


def _noise_images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(8, 8), dtype=np.uint8) for _ in range(count)]


def _candidates(images, labels):
    features = Features({"image": Image(), "label": Value("int64"), "synth_target_id": Value("int64")})
    rows = {"image": list(images), "label": list(labels), "synth_target_id": list(range(len(images)))}
    return Dataset.from_dict(rows, features=features)


def test_scores_are_seeded_and_independent_of_the_batch(digits, ddpm):
    images, labels = list(digits[1]["image"][:20]), digits[1]["label"][:20]
    scores = DenoisingRealismFilter(ddpm).denoising_errors(images, labels)
    assert scores.shape == (20,) and np.isfinite(scores).all() and (scores > 0).all()
    np.testing.assert_array_equal(DenoisingRealismFilter(ddpm).denoising_errors(images, labels), scores)
    rebatched = DenoisingRealismFilter(ddpm, batch_size=3).denoising_errors(images[::-1], labels[::-1])
    np.testing.assert_allclose(rebatched[::-1], scores, rtol=1e-5)
    assert not np.allclose(DenoisingRealismFilter(ddpm, seed=1).denoising_errors(images, labels), scores)
    noisier = DenoisingRealismFilter(ddpm, timestep_fraction=0.9).denoising_errors(images, labels)
    assert not np.allclose(noisier, scores)  # the noise level is the one asked for
    # The label conditions the prediction.
    other = DenoisingRealismFilter(ddpm).denoising_errors(images, [(label + 5) % 10 for label in labels])
    assert not np.allclose(other, scores)


def test_off_manifold_images_score_higher_and_the_calibrated_filter_rejects_them(digits, ddpm):
    train, unseen = digits
    realism = DenoisingRealismFilter(ddpm)
    real = realism.denoising_errors(list(unseen["image"]), unseen["label"])
    noise = realism.denoising_errors(_noise_images(20), [0, 1] * 10)
    assert noise.min() > np.quantile(real, 0.95) and noise.mean() > real.mean() + 0.05

    candidates = _candidates([*unseen["image"][:30], *_noise_images(10, seed=1)], [*unseen["label"][:30], *[3] * 10])
    kept = DenoisingRealismFilter.calibrated(ddpm, 0.05)(candidates, _context(train))
    assert all(target_id < 30 for target_id in kept["synth_target_id"])  # every noise image is rejected
    assert len(kept) >= 20  # most unseen real digits pass


def test_the_calibrated_threshold_drops_exactly_the_candidates_above_the_real_quantile(digits, ddpm):
    train, unseen = digits
    candidates = _candidates([*unseen["image"][:40], *_noise_images(8)], [*unseen["label"][:40], *[7] * 8])
    realism = DenoisingRealismFilter.calibrated(ddpm, quantile=0.2, num_draws=2)
    kept = realism(candidates, _context(train))
    all_errors = realism.denoising_errors(list(candidates["image"]), candidates["label"])
    real_errors = realism.denoising_errors(list(train["image"]), train["label"])
    # The (1 - q)-quantile of the real images' errors, each under its own label: q = 0.2 would reject 20% of them.
    assert realism.threshold_ == pytest.approx(np.quantile(real_errors, 0.8))
    assert np.mean(real_errors > realism.threshold_) == pytest.approx(0.2, abs=0.011)
    expected = np.flatnonzero(all_errors <= realism.threshold_)
    assert kept["synth_target_id"] == expected.tolist() and 0 < len(kept) < len(candidates)
    np.testing.assert_allclose(kept[DENOISING_ERROR_COLUMN], all_errors[expected])

    # Held-out calibration images replace the real training images.
    held_out = DenoisingRealismFilter.calibrated(ddpm, 0.2, calibration_dataset=unseen, num_draws=2)
    held_out(candidates, _context(train))
    unseen_errors = held_out.denoising_errors(list(unseen["image"]), unseen["label"])
    assert held_out.threshold_ == pytest.approx(np.quantile(unseen_errors, 0.8))

    # A fixed threshold, and none (scores only recorded).
    fixed = DenoisingRealismFilter(ddpm, max_error=float(np.median(all_errors)), num_draws=2)
    kept_fixed = fixed(candidates, _context(train))
    assert kept_fixed["synth_target_id"] == np.flatnonzero(all_errors <= fixed.max_error).tolist()
    recorded = DenoisingRealismFilter(ddpm, num_draws=2)(candidates, _context(train))
    assert len(recorded) == len(candidates) and recorded.features[DENOISING_ERROR_COLUMN].dtype == "float64"
    np.testing.assert_allclose(recorded[DENOISING_ERROR_COLUMN], all_errors)
    # Re-running replaces the column instead of failing on a duplicate.
    assert recorded.column_names == DenoisingRealismFilter(ddpm)(recorded, _context(train)).column_names


def test_empty_candidates_nan_scores_and_the_filter_counts(digits, ddpm, monkeypatch):
    train = digits[0]
    empty = _candidates([], [])
    assert DENOISING_ERROR_COLUMN in DenoisingRealismFilter.calibrated(ddpm)(empty, _context(train)).column_names

    candidates = _candidates(_noise_images(3), [0, 1, 2])
    monkeypatch.setattr(
        DenoisingRealismFilter,
        "denoising_errors",
        lambda self, images, labels: np.array([np.nan, 9.0, 0.0])[: len(images)],
    )
    kept = DenoisingRealismFilter(ddpm, max_error=1.0)(candidates, _context(train))
    assert kept["synth_target_id"] == [0, 2]  # an unknown (NaN) score is kept
    # The cycle history counts it by name, as the card's filter table reads it; it is no privacy check.
    _, counts = apply_filters(candidates, [DenoisingRealismFilter(ddpm, max_error=1.0)], _context(train))
    assert counts == {"denoising_realism": 2}
    assert "denoising_realism" not in builtin_real_data_filter_names()


def test_a_loader_is_called_once_at_the_first_use():
    calls = []

    def load():
        calls.append(1)
        return tiny_class_conditional_pipeline()

    realism = DenoisingRealismFilter(load, num_draws=1)
    assert not calls  # the constructor stores its arguments only
    context = _context(_candidates(_noise_images(4), [0, 1, 2, 3]))
    realism(_candidates(_noise_images(2), [4, 5]), context)
    realism(_candidates(_noise_images(2), [4, 5]), context)
    assert len(calls) == 1
    # A (unet, scheduler) holder works like a pipeline.
    pipeline = tiny_class_conditional_pipeline()
    holder = types.SimpleNamespace(unet=pipeline.unet, scheduler=pipeline.scheduler)
    images = _noise_images(3)
    np.testing.assert_array_equal(
        DenoisingRealismFilter(holder).denoising_errors(images, [0, 1, 2]),
        DenoisingRealismFilter(pipeline).denoising_errors(images, [0, 1, 2]),
    )


def test_pipelines_it_cannot_score_and_bad_arguments_raise_with_the_fix():
    with pytest.raises(ValueError, match="UNet2DModel"):
        denoiser_components(tiny_stable_diffusion())
    torch.manual_seed(0)
    unconditional = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(4, 8), norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    scheduler = tiny_class_conditional_pipeline().scheduler
    with pytest.raises(ValueError, match="num_class_embeds"):
        denoiser_components(types.SimpleNamespace(unet=unconditional, scheduler=scheduler))
    with pytest.raises(ValueError, match="`unet` and `scheduler`"):
        denoiser_components(object())
    pipeline = tiny_class_conditional_pipeline()
    euler = EulerDiscreteScheduler.from_config(pipeline.scheduler.config)
    with pytest.raises(ValueError, match="DDPMScheduler or DDIMScheduler"):
        denoiser_components(types.SimpleNamespace(unet=pipeline.unet, scheduler=euler))
    with pytest.raises(ValueError, match="UNet2DModel"):
        DenoisingRealismFilter(tiny_stable_diffusion()).denoising_errors(_noise_images(1), [0])

    images = _noise_images(2)
    for kwargs, message in [
        ({"max_error": -1.0}, "max_error"),
        ({"calibration_quantile": 1.5}, "calibration_quantile"),
        ({"calibration_quantile": 0.05, "max_error": 0.3}, "not both"),
        ({"timestep_fraction": 0.0}, "timestep_fraction"),
        ({"num_draws": 0}, "num_draws"),
        ({"batch_size": 0}, "batch_size"),
    ]:
        with pytest.raises(ValueError, match=message):
            DenoisingRealismFilter(pipeline, **kwargs)(
                _candidates(images, [0, 1]), _context(_candidates(images, [0, 1]))
            )
    with pytest.raises(ValueError, match=r"Labels must lie in \[0, 10\)"):
        DenoisingRealismFilter(pipeline).denoising_errors(images, [0, 10])
    with pytest.raises(ValueError, match="one label per image"):
        DenoisingRealismFilter(pipeline).denoising_errors(images, [0])
    with pytest.raises(ValueError, match="empty"):
        DenoisingRealismFilter.calibrated(pipeline)(_candidates(images, [0, 1]), _context(_candidates([], [])))


# ------------------------------------------------------------------------------------------------------ recipe
def test_the_image_recipe_option_builds_the_filter_on_its_own_ddpm(tmp_path, monkeypatch):
    from hf_active_synth.recipes import base
    from hf_active_synth.recipes.base import RecipeTask
    from hf_active_synth.recipes.image_classification import RECIPE, make_filters, make_parser
    from hf_active_synth.recipes.parsing import parse_args_and_config

    assert "--denoising_realism_quantile" in make_parser().format_help()  # no bare percent sign in the help
    default_args, config, _ = parse_args_and_config(make_parser(), ["--output_dir", str(tmp_path)])
    assert default_args.denoising_realism_quantile is None
    pipeline = tiny_class_conditional_pipeline()
    rows = _candidates(_noise_images(4), [0, 1, 2, 3])
    task = RecipeTask(
        rows, rows, rows, rows, [str(i) for i in range(10)], lambda seed: None,
        DiffusionGenerator(pipeline, digits_to_model_inputs),
    )  # fmt: skip
    assert not any(isinstance(f, DenoisingRealismFilter) for f in make_filters(default_args, task))

    script_args, _, _ = parse_args_and_config(
        make_parser(), ["--denoising_realism_quantile", "0.05", "--output_dir", str(tmp_path)]
    )
    filters = make_filters(script_args, task)
    realism = filters[-1]
    assert isinstance(realism, DenoisingRealismFilter) and realism.calibration_quantile == 0.05
    assert realism.pipeline is pipeline  # the generator's DDPM, not a second copy
    assert [f.name for f in filters[:-1]] == [f.name for f in make_filters(default_args, task)]

    # build_trainer hands the task to make_filters.
    built = {}
    monkeypatch.setattr(base, "ActiveSynthesisTrainer", lambda **kwargs: built.update(kwargs))
    RECIPE.build_trainer(task, config, script_args)
    assert isinstance(built["filters"][-1], DenoisingRealismFilter)

    with pytest.raises(ValueError, match="make_filters"):
        make_filters(script_args)  # no task: no DDPM to score with
    stable_diffusion = RecipeTask(
        *[rows] * 4, ["a"], lambda seed: None, DiffusionGenerator(tiny_stable_diffusion(), None)
    )
    with pytest.raises(ValueError, match="denoising_realism_quantile.*realism_quantile"):
        make_filters(script_args, stable_diffusion)
    for bad in ("1.0", "0"):
        with pytest.raises(ValueError, match="denoising_realism_quantile"):
            parse_args_and_config(make_parser(), ["--denoising_realism_quantile", bad, "--output_dir", str(tmp_path)])

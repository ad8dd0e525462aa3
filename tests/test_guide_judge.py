"""Guide with some members, judge with others; label-safe guidance; filters that fire; band selection (#12)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value
from image_helpers import LinearPixelEnsemble, tiny_class_conditional_pipeline

from hf_active_synth.acquisition import bald
from hf_active_synth.candidates import CandidateSettings, quantile_positions, select_candidates
from hf_active_synth.columns import LABEL_PROBABILITY_COLUMN, REALISM_COLUMN, SCORE_COLUMN, TARGET_ID_COLUMN
from hf_active_synth.config import ActiveSynthesisConfig
from hf_active_synth.filters import FilterContext, LabelProbabilityFloorFilter
from hf_active_synth.filters.image import RealismFilter
from hf_active_synth.generators.base import GenerationRequest, SynthesisTarget
from hf_active_synth.generators.diffusion import DiffusionGenerator
from hf_active_synth.generators.diffusion_guidance import EnsembleGuidanceCallback, label_log_probability
from hf_active_synth.stages import CycleStagesMixin
from hf_active_synth.tasks.digits import digits_to_model_inputs, images_to_tensor, load_digits_dataset, split_digits
from hf_active_synth.uncertainty import MemberSubset, split_members

# Tiny models on shared cores: one thread is several times faster than two contended ones.
pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def ensemble():
    train = split_digits(train_per_class=30, seed=0)["train"]
    pixels = digits_to_model_inputs(images_to_tensor(list(train["image"])))["pixel_values"]
    return LinearPixelEnsemble(num_members=4, seed=0).fit(pixels, torch.tensor(train["label"]))


# ------------------------------------------------------------------------------------------------ member views
class TableEstimator:
    """K fixed members: `predict` returns `logits[rows]` for a dataset's `row` column; `member_logits` a table."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits
        self.num_members = logits.shape[-1]
        self.fitted = 0

    def fit(self, trainer):
        self.fitted += 1
        return self

    def predict(self, dataset):
        return self.logits[torch.tensor(dataset["row"])]

    def member_logits(self, inputs):
        return self.logits[inputs["rows"]] * inputs["scale"]


def test_member_subset_slices_the_member_axis_and_keeps_gradients():
    logits = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(0))
    base = TableEstimator(logits)
    view = MemberSubset(base, [3, 1])
    assert view.num_members == 2
    torch.testing.assert_close(view.predict(Dataset.from_dict({"row": [4, 0]})), logits[[4, 0]][..., [3, 1]])
    scale = torch.tensor(2.0, requires_grad=True)
    sliced = view.member_logits({"rows": torch.arange(5), "scale": scale})
    torch.testing.assert_close(sliced, 2 * logits[..., [3, 1]])
    (gradient,) = torch.autograd.grad(sliced.sum(), scale)
    torch.testing.assert_close(gradient, logits[..., [3, 1]].sum())  # only the kept members reach the input
    assert view.fit(None) is view and base.fitted == 1
    for members in ([], [0, 0], [4]):
        with pytest.raises(ValueError, match="members"):
            MemberSubset(base, members)


def test_split_members_and_the_config_need_two_models_on_each_side(tmp_path):
    assert split_members(5, 2) == ([0, 1, 2], [3, 4])
    with pytest.raises(ValueError, match="judge_members` must be >= 2"):
        split_members(5, 1)
    with pytest.raises(ValueError, match="Raise `ensemble_size` to at least 5"):
        split_members(4, 3)
    config = ActiveSynthesisConfig(output_dir=str(tmp_path), ensemble_size=4, judge_members=2, report_to="none")
    assert config.judge_members == 2
    with pytest.raises(ValueError, match="ensemble_size"):
        ActiveSynthesisConfig(output_dir=str(tmp_path), ensemble_size=3, judge_members=2, report_to="none")
    with pytest.raises(ValueError, match="selection_band_low"):
        ActiveSynthesisConfig(output_dir=str(tmp_path), selection_band_low=0.8, report_to="none")


class _OneProcess:
    num_processes, process_index = 1, 0

    @contextlib.contextmanager
    def split_between_processes(self, items):
        yield items


class Stages(CycleStagesMixin):
    """The stage mixin on a single process, scoring raw rows with the estimator (no trainer, no model)."""

    def __init__(self, args, estimator, filters=()):
        self.args, self.estimator, self.filters, self.num_labels = args, estimator, list(filters), 2
        features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
        self.real_train_dataset = Dataset.from_dict({"text": ["real"], "label": [0]}, features=features)
        self.synthetic_dataset, self.accelerator = None, _OneProcess()

    def predict_member_logits(self, dataset, estimator=None):
        return (estimator if estimator is not None else self.estimator).predict(dataset)

    def is_world_process_zero(self):
        return True


def _judged_candidates(num_rows=6):
    rows = {
        "text": [f"candidate {i}" for i in range(num_rows)],
        "label": [0] * num_rows,
        "row": list(range(num_rows)),
        "synth_cycle": [1] * num_rows,
        "synth_generator": ["double"] * num_rows,
        "synth_target_id": [0] * num_rows,
        "synth_target_label": [0] * num_rows,
        "synth_seed_example_ids": [[0]] * num_rows,
    }
    return Dataset.from_dict(rows)


def _guides_agree_judges_disagree(num_rows=6):
    """Guide members 0, 1 both say class 0 confidently; judges 2, 3 split, more so for later rows (then favour 1)."""
    logits = torch.zeros(num_rows, 2, 4)
    logits[:, 0, :2] = 6.0
    for row in range(num_rows):
        logits[row, 1, 2] = 2.0 * row  # judge 2 drifts to class 1
        logits[row, 0, 3] = 2.0  # judge 3 stays with class 0
    return logits


class Seen:
    """A filter that keeps every row and remembers what it was given."""

    name, checks_real_data = "seen", False

    def __call__(self, candidates, context):
        self.candidates = candidates
        return candidates


def test_candidate_scores_and_the_label_floor_come_from_the_judge_members_only(tmp_path):
    logits = _guides_agree_judges_disagree()
    args = ActiveSynthesisConfig(
        output_dir=str(tmp_path), input_column="text", ensemble_size=4, judge_members=2, report_to="none"
    )
    seen = Seen()
    stages = Stages(args, TableEstimator(logits), [seen, LabelProbabilityFloorFilter(0.5)])
    targets = [SynthesisTarget(target_id=0, label=0, example_id=0, example="real", score=0.3, num_samples=2)]
    accepted, counts = stages._filter_and_select(_judged_candidates(), targets, cycle=1)
    scored = seen.candidates
    assert scored[SCORE_COLUMN] == pytest.approx(bald(logits[..., 2:]).tolist(), rel=1e-5, abs=1e-7)
    assert scored[SCORE_COLUMN] != pytest.approx(bald(logits).tolist(), rel=1e-3)
    judged = logits[..., 2:].softmax(1).mean(2)[:, 0]
    assert scored[LABEL_PROBABILITY_COLUMN] == pytest.approx(judged.tolist(), rel=1e-5)
    # The guides give label 0 ~0.99 everywhere; the judges drop it below 0.5 for later rows: the floor fires.
    expected_kept = int((judged >= 0.5).sum())
    assert 0 < expected_kept < 6 and counts["label_probability_floor"] == expected_kept
    assert set(accepted["row"]) <= set(range(expected_kept))
    guide = stages._member_view("guide")
    assert guide.members == [0, 1] and guide.estimator is stages.estimator
    # J = 0: every member judges, so the confident guides keep every row above the floor.
    stages.args = ActiveSynthesisConfig(output_dir=str(tmp_path), input_column="text", report_to="none")
    assert stages._member_view("judge") is stages.estimator
    _, counts = stages._filter_and_select(_judged_candidates(), targets, cycle=1)
    assert counts["label_probability_floor"] == 6
    assert seen.candidates[SCORE_COLUMN] == pytest.approx(bald(logits).tolist(), rel=1e-5, abs=1e-7)


class RecordingGenerator:
    """Returns fixed candidates and keeps the estimator each request carried."""

    name = "recording"

    def generate(self, request):
        self.estimator = request.estimator
        return _judged_candidates()


def test_generation_is_guided_by_the_guide_members_only(tmp_path):
    logits = _guides_agree_judges_disagree()
    targets = [SynthesisTarget(target_id=0, label=0, example_id=0, example="real", score=0.3, num_samples=2)]
    for judge_members, expected in ((2, [0, 1]), (0, None)):
        args = ActiveSynthesisConfig(
            output_dir=str(tmp_path),
            input_column="text",
            ensemble_size=4,
            judge_members=judge_members,
            report_to="none",
        )
        stages = Stages(args, TableEstimator(logits))
        stages.generator = RecordingGenerator()
        stages._generate_stage(targets, cycle=1)
        received = stages.generator.estimator
        if expected is None:
            assert received is stages.estimator
        else:
            assert isinstance(received, MemberSubset) and received.members == expected
            torch.testing.assert_close(received.predict(_judged_candidates()), logits[..., :2])


# ------------------------------------------------------------------------------------------- guidance options
def _callback(ensemble, labels, **kwargs):
    return EnsembleGuidanceCallback(
        estimator=ensemble, to_model_inputs=digits_to_model_inputs, class_labels=labels, **kwargs
    )


class Recording:
    """Wraps an estimator and keeps the logits of every `member_logits` call."""

    def __init__(self, estimator):
        self.estimator, self.num_members, self.calls = estimator, estimator.num_members, []

    def member_logits(self, inputs):
        logits = self.estimator.member_logits(inputs)
        self.calls.append(logits.detach())
        return logits


def _one_step(callback, seed=0):
    pipeline = tiny_class_conditional_pipeline()
    pipeline.scheduler.set_timesteps(10)
    latents = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    labels = callback.class_labels
    out = callback(pipeline, 2, pipeline.scheduler.timesteps[2], {"latents": latents.clone(), "class_labels": labels})
    return latents, out["latents"]


def test_label_floor_never_applies_the_disagreement_step_below_the_floor(ensemble):
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    recorder = Recording(ensemble)
    _one_step(_callback(recorder, labels, guidance_scale=0.3, label_scale=0.0))
    probability = label_log_probability(recorder.calls[0], labels).exp()
    floor = float(probability.median())
    below = probability < floor
    assert 0 < below.sum() < len(labels)
    before, after = _one_step(_callback(ensemble, labels, guidance_scale=0.3, label_scale=0.0, label_floor=floor))
    moved = (after - before).flatten(1).abs().amax(1) > 0
    assert torch.equal(moved, ~below)  # below the floor nothing moves (label_scale=0), above it disagreement does
    # With the label term on, a sample below the floor takes exactly the label-only step.
    _, gated = _one_step(_callback(ensemble, labels, guidance_scale=0.3, label_scale=0.1, label_floor=floor))
    _, label_only = _one_step(_callback(ensemble, labels, guidance_scale=0.0, label_scale=0.1))
    _, both = _one_step(_callback(ensemble, labels, guidance_scale=0.3, label_scale=0.1))
    torch.testing.assert_close(gated[below], label_only[below])
    torch.testing.assert_close(gated[~below], both[~below])


def _sample(pipeline, labels, callback=None, steps=10, tensor_inputs=None):
    pipeline.set_progress_bar_config(disable=True)
    return pipeline(
        class_labels=labels,
        generator=[torch.Generator().manual_seed(index) for index in range(len(labels))],
        num_inference_steps=steps,
        output_type="pt",
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=tensor_inputs,
    ).images


def test_a_floor_no_sample_reaches_gives_the_unguided_samples_and_a_floor_all_pass_changes_nothing(ensemble):
    pipeline, labels = tiny_class_conditional_pipeline(), torch.tensor([2, 5, 8])
    unguided = _sample(pipeline, labels)
    high = _callback(ensemble, labels, guidance_scale=0.3, label_scale=0.0, label_floor=0.999)
    assert torch.equal(_sample(pipeline, labels, high), unguided)
    assert all(entry["disagreement_off"] == 1.0 for entry in high.trace)
    default = _sample(pipeline, labels, _callback(ensemble, labels))
    explicit = _callback(ensemble, labels, label_floor=1e-30, guidance_normalization="separate", guidance_end=1.0)
    assert torch.equal(_sample(pipeline, labels, explicit), default)  # an open gate is the default step exactly


def test_guidance_window_leaves_the_last_half_of_the_steps_unguided(ensemble):
    pipeline, labels = tiny_class_conditional_pipeline(), torch.tensor([1, 4])
    callback, changed = _callback(ensemble, labels, guidance_end=0.5), []

    def recording(pipe, step_index, timestep, callback_kwargs):
        before = callback_kwargs["latents"].clone()
        out = callback(pipe, step_index, timestep, callback_kwargs)
        changed.append(not torch.equal(out["latents"], before))
        return out

    windowed = _sample(pipeline, labels, recording, tensor_inputs=["latents", "class_labels"])
    assert changed == [True] * 5 + [False] * 5
    assert not torch.equal(windowed, _sample(pipeline, labels, _callback(ensemble, labels)))


def test_joint_normalization_differs_from_separate_and_keeps_the_step_budget(ensemble):
    labels = torch.arange(8)
    before, separate = _one_step(_callback(ensemble, labels, guidance_scale=0.3, label_scale=0.1))
    joint_callback = _callback(ensemble, labels, guidance_scale=0.3, label_scale=0.1, guidance_normalization="joint")
    _, joint = _one_step(joint_callback)
    assert not torch.allclose(separate, joint)
    noise_timestep = joint_callback.trace[0]["step"]  # the noise level the step was taken at
    sigma = (1 - tiny_class_conditional_pipeline().scheduler.alphas_cumprod[noise_timestep]).sqrt()
    rms = (joint - before).flatten(1).pow(2).mean(1).sqrt()
    weight = joint_callback.step_weight(2, 10)
    torch.testing.assert_close(rms, torch.full((8,), 0.4 * weight * float(sigma)), rtol=1e-4, atol=1e-6)
    # One term alone: normalising the sum is normalising the term.
    _, label_separate = _one_step(_callback(ensemble, labels, guidance_scale=0.0, label_scale=0.1))
    _, label_joint = _one_step(
        _callback(ensemble, labels, guidance_scale=0.0, label_scale=0.1, guidance_normalization="joint")
    )
    torch.testing.assert_close(label_separate, label_joint)
    with pytest.raises(ValueError, match="normalize_gradient"):
        _callback(ensemble, labels, guidance_normalization="joint", normalize_gradient=False)
    with pytest.raises(ValueError, match="label_floor"):
        _callback(ensemble, labels, label_floor=1.5)


def _request(estimator, seed=0):
    targets = [
        SynthesisTarget(target_id=index, label=label, example_id=index, example=None, score=0.5, num_samples=2)
        for index, label in enumerate([3, 7])
    ]
    return GenerationRequest(
        targets=targets,
        cycle=1,
        seed=seed,
        candidates_per_sample=2,
        input_column="image",
        label_column="label",
        label_names=[str(digit) for digit in range(10)],
        estimator=estimator,
    )


def _images(dataset):
    return np.stack([np.asarray(image) for image in dataset["image"]])


def test_the_generator_passes_the_label_safe_options_and_keeps_its_defaults(ensemble):
    def generate(estimator, **kwargs):
        generator = DiffusionGenerator(
            tiny_class_conditional_pipeline(),
            digits_to_model_inputs,
            num_inference_steps=5,
            batch_size=3,
            show_progress=False,
            **kwargs,
        )
        return _images(generator.generate(_request(estimator)))

    default = generate(ensemble)
    explicit = generate(ensemble, label_floor=None, guidance_normalization="separate", guidance_end=1.0)
    assert np.array_equal(default, explicit)
    assert not np.array_equal(default, generate(ensemble, guidance_normalization="joint"))
    # Guiding on disagreement only, behind a floor no sample reaches: the unguided images.
    assert np.array_equal(generate(None), generate(ensemble, label_scale=0.0, label_floor=0.999))
    # A guide-member view drives the generator like any estimator.
    assert not np.array_equal(default, generate(MemberSubset(ensemble, [0, 1])))
    with pytest.raises(ValueError, match="label_floor"):
        generate(ensemble, label_floor=0.0)


# --------------------------------------------------------------------------------------------------- selection
def _band_rows(scores_per_target):
    rows = {TARGET_ID_COLUMN: [], SCORE_COLUMN: [], "rank": []}
    for target, scores in enumerate(scores_per_target):
        for rank, value in enumerate(scores):
            rows[TARGET_ID_COLUMN].append(target)
            rows[SCORE_COLUMN].append(value)
            rows["rank"].append(rank)
    return Dataset.from_dict(rows)


def test_band_selection_keeps_only_in_band_candidates_closest_to_the_middle():
    # Target 0: scores 0..7 (positions k/7; band [0.25, 0.75] holds ranks 2..5); target 1: the same, scaled.
    rows = _band_rows([[float(k) for k in range(8)], [10.0 * k for k in reversed(range(8))]])
    selected = select_candidates(rows, {0: 2, 1: 3}, strategy="band", band=(0.25, 0.75))
    kept = {(t, s) for t, s in zip(selected[TARGET_ID_COLUMN], selected[SCORE_COLUMN])}
    assert {s for t, s in kept if t == 0} == {3.0, 4.0}  # the two closest to the band's middle
    assert len([s for t, s in kept if t == 1]) == 3 and all(20.0 <= s <= 50.0 for t, s in kept if t == 1)
    top = select_candidates(rows, {0: 2, 1: 3}, strategy="top")
    assert set(top[SCORE_COLUMN]) != set(selected[SCORE_COLUMN])
    # Quotas the band cannot fill are topped up after every in-band candidate.
    filled = select_candidates(rows, {0: 5, 1: 0}, strategy="band", band=(0.25, 0.75))
    assert len(filled) == 5 and {2.0, 3.0, 4.0, 5.0} <= set(filled[SCORE_COLUMN])
    assert quantile_positions(np.array([1.0, 1.0, 3.0])) == pytest.approx([0.25, 0.25, 1.0])
    with pytest.raises(ValueError, match="band"):
        select_candidates(rows, {0: 1}, strategy="band", band=(0.8, 0.2))


def test_band_selection_is_reachable_from_the_config(tmp_path):
    config = ActiveSynthesisConfig(
        output_dir=str(tmp_path),
        selection_strategy="band",
        selection_band_low=0.5,
        selection_band_high=1.0,
        report_to="none",
    )
    settings = CandidateSettings.from_config(config, num_labels=2)
    assert settings.selection_strategy == "band" and settings.selection_band == (0.5, 1.0)


# ----------------------------------------------------------------------------------------------------- filters
def test_label_probability_floor_filter_drops_what_is_below_the_floor():
    rows = Dataset.from_dict({"label": [0, 1, 2, 3], LABEL_PROBABILITY_COLUMN: [0.9, 0.49, 0.5, 0.1]})
    context = FilterContext(input_column="image", label_column="label", real_dataset=rows, num_labels=4)
    floor = LabelProbabilityFloorFilter(min_probability=0.5)
    assert floor(rows, context)["label"] == [0, 2]
    assert floor.checks_real_data is False and floor.name == "label_probability_floor"
    with pytest.raises(ValueError, match="score the candidates first"):
        floor(rows.remove_columns(LABEL_PROBABILITY_COLUMN), context)
    with pytest.raises(ValueError, match="probability"):
        LabelProbabilityFloorFilter(1.5)


def _image_rows(arrays):
    return Dataset.from_dict(
        {"image": list(arrays), "label": [0] * len(arrays), "synth_target_id": list(range(len(arrays)))},
        features=Features({"image": Image(), "label": Value("int64"), "synth_target_id": Value("int64")}),
    )


def test_calibrated_realism_threshold_drops_noise_and_few_real_images():
    digits = load_digits_dataset().shuffle(seed=0)  # the real, candidate and calibration images alike
    context = FilterContext(
        input_column="image", label_column="label", real_dataset=digits.select(range(300)), num_labels=10
    )
    realistic = [np.asarray(image) for image in digits.select(range(1000, 1040))["image"]]
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 256, size=(8, 8), dtype=np.uint8) for _ in range(40)]
    candidates = _image_rows([*realistic, *noise])
    recorded = RealismFilter(seed=0)(candidates, context)
    assert len(recorded) == 80  # no threshold: scores only (today's behaviour)
    scores = np.asarray(recorded[REALISM_COLUMN])
    calibration_images = digits.select(range(1200, 1400))["image"]
    for realism in (
        RealismFilter.calibrated(0.05, seed=0),
        RealismFilter.calibrated(0.05, calibration_images=calibration_images, seed=0),
    ):
        kept = realism(candidates, context)
        kept_real = sum(target < 40 for target in kept["synth_target_id"])
        assert kept_real >= 34 and len(kept) == kept_real  # about q of the real images, every noise image
        assert scores[40:].max() < realism.threshold_ < np.median(scores[:40])
    # A batch of real images only loses a few rows, not half of them.
    only_real = RealismFilter.calibrated(0.05, seed=0)(_image_rows(realistic), context)
    assert len(only_real) >= 30
    with pytest.raises(ValueError, match="not both"):
        RealismFilter(min_realism=0.2, calibration_quantile=0.05)(candidates, context)
    with pytest.raises(ValueError, match="calibration_quantile"):
        RealismFilter.calibrated(1.5)(candidates, context)


# ------------------------------------------------------------------------------------------------------ recipe
def test_image_recipe_flags_default_to_today_and_switch_the_mechanisms_on(tmp_path, monkeypatch):
    from hf_active_synth.recipes import image_classification
    from hf_active_synth.recipes.image_classification import make_filters, make_parser
    from hf_active_synth.recipes.parsing import parse_args_and_config

    # The generator's settings, without training the digits DDPM.
    monkeypatch.setattr(image_classification, "train_class_conditional_ddpm", lambda *a, **k: "tiny")

    def generator(script_args, config):
        return image_classification._make_generator(script_args, config, None, None, digits_to_model_inputs, 10)

    default_args, default_config, _ = parse_args_and_config(make_parser(), ["--output_dir", str(tmp_path)])
    assert [type(f).__name__ for f in make_filters(default_args)] == [
        "LabelAgreementFilter",
        "ExactDuplicateFilter",
        "NearDuplicateFilter",
        "NearCopyFilter",
        "RealismFilter",
    ]
    assert make_filters(default_args)[-1].calibration_quantile is None
    assert default_config.judge_members == 0 and default_config.selection_strategy == "top"
    default = generator(default_args, default_config)
    # The recipe guides the first half of the steps by default (chosen on validation; the library's default is all).
    assert (default.label_floor, default.guidance_end, default.guidance_normalization) == (None, 0.5, "separate")
    flags = "--label_floor 0.3 --guidance_window 0.25 --guidance_normalization joint --min_label_probability 0.4 "
    flags += "--realism_quantile 0.05 --judge_members 2 --selection_strategy band --selection_band_low 0.4"
    script_args, config, _ = parse_args_and_config(make_parser(), [*flags.split(), "--output_dir", str(tmp_path)])
    filters = make_filters(script_args)
    assert isinstance(filters[1], LabelProbabilityFloorFilter) and filters[1].min_probability == 0.4
    assert filters[-1].calibration_quantile == 0.05
    assert config.judge_members == 2 and config.selection_strategy == "band" and config.selection_band_low == 0.4
    switched = generator(script_args, config)
    assert (switched.label_floor, switched.guidance_end, switched.guidance_normalization) == (0.3, 0.25, "joint")
    for bad in (["--guidance_window", "0"], ["--label_floor", "1.0"], ["--realism_quantile", "1.0"]):
        with pytest.raises(ValueError, match=bad[0].lstrip("-")):
            parse_args_and_config(make_parser(), [*bad, "--output_dir", str(tmp_path)])

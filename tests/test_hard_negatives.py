"""Hard negatives (#12, GeNIe): part of the budget asks for the class a target is confused with, drawn from its image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from image_helpers import tiny_class_conditional_pipeline
from tiny import make_trainer, scored_text_pool

from hf_active_synth import ActiveSynthesisConfig
from hf_active_synth.candidates import CandidateSettings, score_candidates
from hf_active_synth.generators.base import GenerationRequest, SynthesisTarget
from hf_active_synth.generators.diffusion import DiffusionGenerator
from hf_active_synth.generators.text_prompts import PromptTemplates, PromptWriter
from hf_active_synth.targeting import (
    TargetingSettings,
    choose_targets,
    confusable_classes,
    seed_examples,
    split_hard_negative_quotas,
    with_hard_negatives,
)
from hf_active_synth.tasks.digits import digits_to_model_inputs


def _settings(**overrides) -> TargetingSettings:
    values = dict(
        input_column="text", label_column="label", num_labels=3, targets_per_class=3, budget=11,
        acquisition_function="bald",
    )  # fmt: skip
    return TargetingSettings(**{**values, **overrides})


@pytest.mark.parametrize("share", [0.0, 0.25, 0.3, 0.5, 1.0])
def test_hard_negative_quotas_sum_to_the_share_and_never_exceed_a_quota(share):
    quotas = [4, 4, 3, 1, 1, 0, 2]
    split = split_hard_negative_quotas(quotas, share)
    assert sum(split) == int(np.floor(share * sum(quotas) + 0.5))
    assert all(0 <= hard <= quota for hard, quota in zip(split, quotas))
    assert split_hard_negative_quotas(quotas, 1.0) == quotas and split_hard_negative_quotas(quotas, 0.0) == [0] * 7


def test_the_confusable_class_is_the_most_likely_other_class():
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.45, 0.1, 0.45]])
    logits = probabilities.log().unsqueeze(-1).repeat(1, 1, 3)
    assert confusable_classes(logits, torch.tensor([0, 2, 2])).tolist() == [1, 1, 0]
    # Even where the ensemble prefers another class than the row's label, the row's own class is never chosen.
    assert confusable_classes(logits, torch.tensor([1, 1, 0])).tolist() == [0, 2, 2]


@pytest.mark.parametrize("strategy", ["uncertain", "random"])
def test_choose_targets_spends_the_share_on_hard_negatives_of_the_same_images(strategy):
    pool, logits = scored_text_pool()
    plain = choose_targets(logits, pool, _settings(target_strategy=strategy), seed=3)
    mixed = choose_targets(logits, pool, _settings(target_strategy=strategy, hard_negative_share=0.5), seed=3)

    assert choose_targets(logits, pool, _settings(target_strategy=strategy, hard_negative_share=0.0), seed=3) == plain
    assert [t.target_id for t in mixed] == list(range(len(mixed)))
    assert sum(t.num_samples for t in mixed) == 11 and all(t.num_samples > 0 for t in mixed)
    hard = [t for t in mixed if t.is_hard_negative]
    assert sum(t.num_samples for t in hard) == 6  # round(0.5 * 11), half up
    # The same real images as without hard negatives, each keeping its total quota across its two targets.
    by_image = {}
    for target in mixed:
        by_image[target.example_id] = by_image.get(target.example_id, 0) + target.num_samples
    assert by_image == {t.example_id: t.num_samples for t in plain}
    mean = logits.softmax(dim=1).mean(dim=2)
    for target in hard:
        own = pool[target.example_id]["label"]
        assert target.example_label == own == target.anchor_label and target.label != own
        assert target.example == pool[target.example_id]["text"]
        others = [c for c in range(3) if c != own]
        assert target.label == max(others, key=lambda c: (mean[target.example_id, c], -c))
    assert all(t.example_label is None and t.anchor_label == t.label for t in mixed if not t.is_hard_negative)


def test_seed_examples_file_a_hard_negatives_image_under_its_own_class_once():
    target = SynthesisTarget(target_id=0, label=1, example_id=7, example="a dull film", score=0.9, num_samples=4)
    (own, hard) = with_hard_negatives([target], torch.tensor([[[0.0], [0.0], [2.0]]]).expand(8, 3, 1), 0.5)
    assert (own.label, own.num_samples, hard.label, hard.example_label, hard.num_samples) == (1, 2, 2, 1, 2)
    assert seed_examples([own, hard]) == {1: [(7, "a dull film")]}


def test_scored_candidates_record_the_anchor_class():
    targets = [
        SynthesisTarget(target_id=0, label=0, example_id=3, example="x", score=0.5, num_samples=1),
        SynthesisTarget(target_id=1, label=2, example_id=3, example="x", score=0.5, num_samples=1, example_label=0),
    ]
    candidates = Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 2, 1], "synth_target_id": [0, 1, -1]})
    settings = CandidateSettings(input_column="text", label_column="label", num_labels=3, acquisition_function="bald")
    scored = score_candidates(candidates, torch.zeros(3, 3, 2), targets, settings, seed=0)
    assert scored["synth_anchor_label"] == [0, 0, -1]


def test_diffusion_hard_negatives_are_conditioned_on_their_class_and_start_from_the_other_image():
    white, black = np.full((8, 8), 255, dtype=np.uint8), np.zeros((8, 8), dtype=np.uint8)

    def request(example, label, example_label=None):
        target = SynthesisTarget(0, label, 5, example, 0.5, 2, example_label=example_label)
        return GenerationRequest([target], 1, 0, 1, "image", "label", label_names=[str(d) for d in range(10)])

    pipeline = tiny_class_conditional_pipeline()
    generator = DiffusionGenerator(pipeline, digits_to_model_inputs, strength=0.5, num_inference_steps=5)
    hard_from_white = generator.generate(request(white, label=7, example_label=3))
    plain_seven = generator.generate(request(white, label=7))
    hard_from_black = generator.generate(request(black, label=7, example_label=3))
    assert hard_from_white["label"] == [7, 7] and hard_from_white["synth_seed_example_ids"] == [[5], [5]]
    pixels = [np.asarray(image, dtype=float).mean() for image in hard_from_white["image"]]
    assert min(pixels) > max(np.asarray(image, dtype=float).mean() for image in hard_from_black["image"])
    # What is conditioned on is the sample's class: the same anchor and seeds give the plain target's samples.
    assert [np.asarray(i).tolist() for i in hard_from_white["image"]] == [
        np.asarray(i).tolist() for i in plain_seven["image"]
    ]
    from_noise = DiffusionGenerator(pipeline, digits_to_model_inputs, num_inference_steps=5)
    with pytest.raises(ValueError, match="hard negatives.*strength"):
        from_noise.generate(request(white, label=7, example_label=3))


def _writer(style: str) -> PromptWriter:
    templates = PromptTemplates(domain="movie review", style=style)
    return PromptWriter(
        templates=templates, tokenizer=None, label_descriptions=None, num_shots=2, max_example_chars=400
    )


def test_text_hard_negatives_are_contrast_edits_and_few_shot_prompts_refuse_them():
    hard = SynthesisTarget(0, 1, 12, "a dull and slow plot", 0.9, 1, example_label=0)
    request = GenerationRequest(
        [hard], 1, 0, 2, "sentence", "label", label_names=["negative", "positive"],
        seed_examples={0: [(12, "a dull and slow plot")], 1: [(42, "a warm cast")]},
    )  # fmt: skip
    jobs = _writer("edit").jobs(request)
    assert len(jobs) == 2 and all(job.examples == ["a dull and slow plot"] for job in jobs)
    assert all("positive" in job.prompt and '"a warm cast"' not in job.prompt for job in jobs)
    with pytest.raises(ValueError, match="hard negatives.*'edit'"):
        _writer("few_shot").jobs(request)


def test_config_checks_the_share(tmp_path):
    with pytest.raises(ValueError, match="hard_negative_share"):
        ActiveSynthesisConfig(output_dir=str(tmp_path), hard_negative_share=1.5, report_to="none")


def test_a_loop_cycle_accepts_hard_negatives_of_the_confused_class(tmp_path):
    trainer = make_trainer(tmp_path, num_cycles=1, hard_negative_share=0.5, load_best_cycle_at_end=False)
    history = trainer.run_cycles()
    (request,) = trainer.generator.requests
    hard = [t for t in request.targets if t.is_hard_negative]
    assert sum(t.num_samples for t in hard) == 3 and {t.label for t in hard} != {None}
    accepted = trainer.synthetic_dataset
    assert len(accepted) == 6
    crossed = [row for row in accepted if row["synth_anchor_label"] != row["label"]]
    targets = {t.target_id: t for t in request.targets}
    assert crossed and all(targets[row["synth_target_id"]].is_hard_negative for row in crossed)
    assert all(row["label"] == targets[row["synth_target_id"]].label for row in accepted)
    assert history.cycles[1].num_hard_negatives == len(crossed)
    assert history.cycles[1].num_targets == len({t.example_id for t in request.targets})

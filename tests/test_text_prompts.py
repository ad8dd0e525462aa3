"""The `"edit"` prompt style: each candidate is a close, label-clarifying rewrite of its target's own text."""

from __future__ import annotations

import pytest

from hf_active_synth.generators.base import GenerationRequest, SynthesisTarget
from hf_active_synth.generators.text_prompts import PromptTemplates, PromptWriter

LABEL_NAMES = ["negative", "positive"]


def _request(targets: list[SynthesisTarget]) -> GenerationRequest:
    return GenerationRequest(
        targets=targets,
        cycle=1,
        seed=0,
        candidates_per_sample=2,
        input_column="sentence",
        label_column="label",
        label_names=LABEL_NAMES,
        seed_examples={
            0: [(11, "a dull and slow plot"), (12, "bad acting but good score"), (13, "not quite fun")],
            1: [(42, "a warm and sharp cast"), (43, "very good film")],
        },
    )


def _writer(style: str) -> PromptWriter:
    return PromptWriter(
        templates=PromptTemplates(domain="movie review", style=style),
        tokenizer=None,
        label_descriptions=None,
        num_shots=3,
        max_example_chars=400,
    )


def test_edit_prompts_show_the_target_alone_and_ask_for_its_label():
    targets = [
        SynthesisTarget(
            target_id=0, label=0, example_id=12, example="bad acting but good score", score=0.9, num_samples=1
        ),
        SynthesisTarget(target_id=1, label=1, example_id=43, example="very good film", score=0.8, num_samples=1),
    ]
    jobs = _writer("edit").jobs(_request(targets))

    assert len(jobs) == 4
    for job in jobs:
        target = job.target
        # Only the target's own text: the copy check compares each rewrite with the text it rewrites.
        assert job.examples == [target.example] and job.seed_ids == [target.example_id]
        assert f'"{target.example}"' in job.prompt
        assert f"unmistakably {LABEL_NAMES[target.label]}" in job.prompt and "movie review" in job.prompt
        others = [text for _, text in _request(targets).seed_examples[target.label] if text != target.example]
        assert not any(f'"{text}"' in job.prompt for text in others)
    few_shot = _writer("few_shot").jobs(_request(targets))
    assert all(len(job.examples) == 3 for job in few_shot if job.target.label == 0)


def test_edit_style_falls_back_to_few_shot_without_an_example():
    bare = SynthesisTarget(target_id=0, label=0, example_id=None, example=None, score=0.0, num_samples=1)
    (job, _) = _writer("edit").jobs(_request([bare]))
    assert set(job.seed_ids) == {11, 12, 13}
    assert "Rewrite it" not in job.prompt


def test_bad_edit_templates_and_styles_are_refused():
    with pytest.raises(ValueError, match="style"):
        PromptTemplates(style="paraphrase")
    with pytest.raises(ValueError, match=r"\{text\}"):
        PromptTemplates(edit="Write a {label} review.")
    with pytest.raises(ValueError, match="placeholders"):
        PromptTemplates(edit="Rewrite {text} as {label} in {examples}.")

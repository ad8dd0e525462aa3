"""Candidate handling without a trainer: validation, score columns, per-filter counts, selection quotas."""

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value

from hf_active_synth.candidates import (
    CandidateSettings,
    apply_filters,
    filter_and_select,
    score_candidates,
    select_candidates,
    validate_candidates,
)
from hf_active_synth.columns import REQUIRED_PROVENANCE_COLUMNS, SCORE_COLUMN, TARGET_ID_COLUMN
from hf_active_synth.generators.base import SynthesisTarget

SETTINGS = CandidateSettings(input_column="text", label_column="label", num_labels=2, acquisition_function="bald")


def candidates(num_rows=12, targets=3):
    rows = {
        "text": [f"candidate {i}" for i in range(num_rows)],
        "label": [i % targets % 2 for i in range(num_rows)],
        "synth_cycle": [1] * num_rows,
        "synth_generator": ["double"] * num_rows,
        "synth_target_id": [i % targets for i in range(num_rows)],
        "synth_target_label": [i % targets % 2 for i in range(num_rows)],
        "synth_seed_example_ids": [[i % targets] for i in range(num_rows)],
    }
    return Dataset.from_dict(rows)


def make_targets(quotas):
    return [
        SynthesisTarget(
            target_id=i, label=i % 2, example_id=i, example=f"real {i}", score=0.1 * (i + 1), num_samples=q
        )
        for i, q in enumerate(quotas)
    ]


def real_dataset():
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    return Dataset.from_dict({"text": ["real 0", "real 1"], "label": [0, 1]}, features=features)


class KeepEvery:
    """Keeps every `step`-th row."""

    checks_real_data = False

    def __init__(self, name, step):
        self.name, self.step = name, step

    def __call__(self, rows, context):
        return rows.select(range(0, len(rows), self.step))


def scored(num_rows=12, targets=3, seed=0):
    rows = candidates(num_rows, targets)
    logits = torch.randn(num_rows, 2, 3, generator=torch.Generator().manual_seed(seed)) * 2
    return score_candidates(rows, logits, make_targets([2] * targets), SETTINGS, seed=0)


def test_validation_names_the_generator_and_the_missing_column():
    validate_candidates(candidates(), make_targets([1, 1, 1]), "double", SETTINGS)
    with pytest.raises(TypeError, match="'double' returned list"):
        validate_candidates([], make_targets([1]), "double", SETTINGS)
    with pytest.raises(ValueError, match="returned no candidates for 1 targets"):
        validate_candidates(candidates().select([]), make_targets([1]), "double", SETTINGS)
    with pytest.raises(ValueError, match=r"without the column\(s\) \['synth_cycle'\]"):
        validate_candidates(candidates().remove_columns("synth_cycle"), make_targets([1]), "double", SETTINGS)
    bad = candidates().map(lambda row, i: {"label": 5 if i == 0 else row["label"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"invalid labels \[5\]"):
        validate_candidates(bad, make_targets([1]), "double", SETTINGS)
    assert set(REQUIRED_PROVENANCE_COLUMNS) <= set(candidates().column_names)


def test_scoring_adds_every_column_filters_read_and_replaces_stale_ones():
    rows = scored()
    for column in (SCORE_COLUMN, "synth_label_probability", "synth_predicted_label", "synth_predicted_probability"):
        assert column in rows.column_names and len(rows[column]) == 12
    assert rows["synth_target_uncertainty"][:3] == pytest.approx([0.1, 0.2, 0.3])
    rescored = score_candidates(rows, torch.zeros(12, 2, 3), make_targets([2, 2, 2]), SETTINGS, seed=0)
    assert rescored.column_names == rows.column_names
    assert rescored[SCORE_COLUMN] == pytest.approx([0.0] * 12)  # identical members: no disagreement


def test_filter_counts_are_recorded_per_filter_in_order():
    context = SETTINGS.filter_context(real_dataset(), None)
    kept, counts = apply_filters(scored(), [KeepEvery("halve", 2), KeepEvery("third", 3)], context)
    assert counts == {"halve": 6, "third": 2} and len(kept) == 2
    accepted, counts = filter_and_select(scored(), [KeepEvery("halve", 2)], context, {0: 1, 1: 1, 2: 1}, "top", 0)
    assert list(counts) == ["halve", "selected"] and counts["selected"] == len(accepted) == 3
    assert accepted.features["label"].names == ["neg", "pos"]  # cast like the real data


def test_selection_meets_each_quota_with_the_highest_scores():
    rows = scored(num_rows=30, targets=3)
    quotas = {0: 3, 1: 2, 2: 1}
    selected = select_candidates(rows, quotas, strategy="top")
    assert len(selected) == 6
    for target, quota in quotas.items():
        proposed = sorted((s for s, t in zip(rows[SCORE_COLUMN], rows[TARGET_ID_COLUMN]) if t == target), reverse=True)
        kept = [s for s, t in zip(selected[SCORE_COLUMN], selected[TARGET_ID_COLUMN]) if t == target]
        assert sorted(kept, reverse=True) == proposed[:quota]
    assert selected[TARGET_ID_COLUMN] == sorted(selected[TARGET_ID_COLUMN])


def test_selection_tops_up_from_other_targets_when_one_falls_short():
    rows = scored(num_rows=6, targets=3)  # two candidates per target
    selected = select_candidates(rows, {0: 4, 1: 1, 2: 1}, strategy="top")
    assert len(selected) == 6


def test_random_selection_is_seeded():
    rows = scored(num_rows=30, targets=3)
    quotas = {0: 2, 1: 2, 2: 2}
    first = select_candidates(rows, quotas, strategy="random", seed=1)["text"]
    assert first == select_candidates(rows, quotas, strategy="random", seed=1)["text"]
    assert first != select_candidates(rows, quotas, strategy="random", seed=2)["text"]
    with pytest.raises(ValueError, match="Unknown selection strategy"):
        select_candidates(rows, quotas, strategy="best")

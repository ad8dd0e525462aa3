"""Image filters: near-duplicates among candidates, near-copies of real images (privacy), realism scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Image, Value

from hf_active_synth.filters.base import FilterContext
from hf_active_synth.filters.image import (
    NEAREST_REAL_DISTANCE_COLUMN,
    REALISM_COLUMN,
    NearCopyFilter,
    NearDuplicateFilter,
    RealismFilter,
    pairwise_distances,
)
from hf_active_synth.tasks.digits import load_digits_dataset


@pytest.fixture(scope="module")
def real():
    return load_digits_dataset().select(range(300))


def _context(real_dataset):
    return FilterContext(input_column="image", label_column="label", real_dataset=real_dataset, num_labels=10)


def _candidates(arrays, labels=None, scores=None):
    columns = {
        "image": list(arrays),
        "label": labels or [0] * len(arrays),
        "synth_target_id": list(range(len(arrays))),
    }
    features = {"image": Image(), "label": Value("int64"), "synth_target_id": Value("int64")}
    if scores is not None:
        columns["synth_score"] = scores
        features["synth_score"] = Value("float64")
    return Dataset.from_dict(columns, features=Features(features))


def _noise_images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(8, 8), dtype=np.uint8) for _ in range(count)]


def test_pairwise_distances_rms_and_cosine():
    a = np.zeros((1, 4), dtype=np.float32)
    b = np.full((1, 4), 0.5, dtype=np.float32)
    assert pairwise_distances(torch.from_numpy(a), torch.from_numpy(b), "l2").item() == pytest.approx(0.5)
    assert pairwise_distances(torch.from_numpy(b), torch.from_numpy(b * 2), "cosine").item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="metric"):
        pairwise_distances(torch.from_numpy(a), torch.from_numpy(b), "manhattan")


def test_near_duplicate_filter_drops_a_planted_pair_keeping_the_higher_score(real):
    images = _noise_images(5)
    twin = images[1].copy()
    twin[0, 0] ^= 4  # a one-pixel nudge
    candidates = _candidates([*images, twin], scores=[0.1, 0.2, 0.3, 0.4, 0.5, 0.9])
    kept = NearDuplicateFilter(threshold=0.03)(candidates, _context(real))
    assert kept["synth_target_id"] == [0, 2, 3, 4, 5]  # the twin scored higher than its original
    assert kept.column_names == candidates.column_names
    assert len(NearDuplicateFilter(threshold=0.03, metric="cosine")(candidates, _context(real))) == 5


def test_near_duplicate_filter_same_label_only(real):
    image = _noise_images(1)[0]
    candidates = _candidates([image, image], labels=[1, 2])
    assert len(NearDuplicateFilter()(candidates, _context(real))) == 1
    assert len(NearDuplicateFilter(same_label_only=True)(candidates, _context(real))) == 2


def test_near_copy_filter_drops_a_planted_copy_of_a_real_image_and_records_distances(real):
    copy = np.asarray(real[17]["image"]).copy()
    copy[3, 3] = min(255, int(copy[3, 3]) + 3)
    candidates = _candidates([*_noise_images(3), copy])
    kept = NearCopyFilter(threshold=0.04)(candidates, _context(real))
    assert kept["synth_target_id"] == [0, 1, 2]
    assert all(distance > 0.2 for distance in kept[NEAREST_REAL_DISTANCE_COLUMN])
    # Without a threshold nothing is dropped, and the copy's distance is tiny.
    recorded = NearCopyFilter(threshold=0.0)(candidates, _context(real))
    assert recorded[NEAREST_REAL_DISTANCE_COLUMN][3] < 0.01
    # Re-running replaces the column instead of failing.
    assert len(NearCopyFilter(threshold=0.0)(recorded, _context(real))) == 4


def test_near_copy_filter_compares_across_sizes_and_modes(real):
    rgb = np.repeat(np.kron(np.asarray(real[5]["image"]), np.ones((2, 2), dtype=np.uint8))[:, :, None], 3, axis=2)
    candidates = _candidates([rgb, *_noise_images(2, seed=3)])
    candidates = candidates.cast_column("image", Image())
    distances = NearCopyFilter(threshold=0.0).nearest_real_distances(candidates, _context(real))
    assert distances[0] < 0.05 < distances[1]


def test_realism_filter_scores_real_looking_images_higher(real):
    held_out = load_digits_dataset().select(range(1000, 1030))
    realistic = [np.asarray(image) for image in held_out["image"]]
    candidates = _candidates([*realistic, *_noise_images(30, seed=1)])
    scored = RealismFilter(seed=0)(candidates, _context(real))
    realism = np.asarray(scored[REALISM_COLUMN])
    assert len(scored) == 60 and np.all((realism >= 0) & (realism <= 1))
    assert realism[:30].mean() > 0.4 and realism[30:].mean() < 0.1
    again = RealismFilter(seed=0)(candidates, _context(real))
    assert again[REALISM_COLUMN] == scored[REALISM_COLUMN]  # seeded folds
    kept = RealismFilter(min_realism=0.25, seed=0)(candidates, _context(real))
    assert sum(target < 30 for target in kept["synth_target_id"]) > 20
    assert sum(target >= 30 for target in kept["synth_target_id"]) < 5


def test_filters_handle_empty_and_single_candidates(real):
    empty = _candidates([])
    assert NEAREST_REAL_DISTANCE_COLUMN in NearCopyFilter()(empty, _context(real)).column_names
    assert REALISM_COLUMN in RealismFilter()(empty, _context(real)).column_names
    assert len(NearDuplicateFilter()(empty, _context(real))) == 0
    single = RealismFilter(min_realism=0.9)(_candidates(_noise_images(1)), _context(real))
    assert len(single) == 1 and math.isnan(single[REALISM_COLUMN][0])


def test_filters_after_a_filter_that_rejected_every_candidate(real):
    # What a filter sees when a label floor before it dropped everything: a zero-row selection of candidates that
    # already carry added score columns (datasets cannot add a column to that table; the filters must not crash).
    scored = _candidates(_noise_images(3)).add_column("synth_label_probability", [0.1, 0.2, 0.3])
    rejected = scored.select(np.flatnonzero(np.array(scored["synth_label_probability"]) >= 0.5))
    after_near_copy = NearCopyFilter()(rejected, _context(real))
    after_realism = RealismFilter()(after_near_copy, _context(real))
    assert len(after_realism) == 0
    assert {NEAREST_REAL_DISTANCE_COLUMN, REALISM_COLUMN, "synth_label_probability"} <= set(after_realism.column_names)


def test_filter_argument_errors(real):
    candidates = _candidates(_noise_images(3))
    with pytest.raises(ValueError, match=">= 0"):
        NearCopyFilter(threshold=-1)(candidates, _context(real))
    with pytest.raises(ValueError, match="min_realism"):
        RealismFilter(min_realism=2.0)(candidates, _context(real))
    with pytest.raises(ValueError, match="real_dataset is empty"):
        NearCopyFilter()(candidates, _context(real.select([])))

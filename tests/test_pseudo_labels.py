"""Pseudo-labelled pool images for the embedded DDPM (`tasks.pseudo_labels`, the recipe's `--ddpm_training_images`)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hf_active_synth.recipes.image_classification import ImageScriptArguments, _ddpm_training_images
from hf_active_synth.tasks.digits import split_digits
from hf_active_synth.tasks.pseudo_labels import pseudo_label_images


@pytest.fixture(scope="module")
def digits_splits():
    return split_digits(train_per_class=5, seed=3)


def test_confident_pseudo_labels_are_mostly_right_and_never_read_pool_labels(digits_splits):
    train, pool = digits_splits["train"], digits_splits["pool"]
    truth = np.asarray(pool["label"])
    result = pseudo_label_images(train, pool, min_confidence=0.9)
    assert 0 < len(result.rows) < len(pool)
    assert np.all(result.confidence >= 0.9)
    assert result.kept_share == pytest.approx(len(result.rows) / len(pool))
    pseudo = np.asarray(result.dataset["label"])
    # Label spreading over the digits' pixel graph is far better than chance on the confident rows.
    assert (pseudo == truth[result.rows]).mean() > 0.9

    # Scrambled pool labels change nothing: they are never read.
    scrambled = pool.map(lambda row: {"label": (row["label"] + 3) % 10})
    again = pseudo_label_images(train, scrambled, min_confidence=0.9)
    np.testing.assert_array_equal(again.rows, result.rows)
    assert again.dataset["label"] == result.dataset["label"]


def test_a_higher_confidence_keeps_a_subset(digits_splits):
    loose = pseudo_label_images(digits_splits["train"], digits_splits["pool"], min_confidence=0.5)
    strict = pseudo_label_images(digits_splits["train"], digits_splits["pool"], min_confidence=0.95)
    assert set(strict.rows) <= set(loose.rows) and len(strict.rows) < len(loose.rows)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"min_confidence": 1.0}, "min_confidence"), ({"n_neighbors": 10_000}, "Lower n_neighbors")],
)
def test_bad_settings_are_named(digits_splits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pseudo_label_images(digits_splits["train"], digits_splits["pool"], **kwargs)


def test_empty_sets_are_refused(digits_splits):
    with pytest.raises(ValueError, match="unlabelled set is empty"):
        pseudo_label_images(digits_splits["train"], digits_splits["pool"].select([]))


def test_recipe_trains_the_ddpm_on_labelled_plus_confident_pool(digits_splits):
    train, pool = digits_splits["train"], digits_splits["pool"]
    config = SimpleNamespace(input_column="image", label_column="label")
    labelled_only = _ddpm_training_images(
        SimpleNamespace(ddpm_training_images="labelled", ddpm_pseudo_label_confidence=0.9), config, train, pool
    )
    assert labelled_only is train
    both = _ddpm_training_images(
        SimpleNamespace(ddpm_training_images="labelled_and_pool", ddpm_pseudo_label_confidence=0.9),
        config,
        train,
        pool,
    )
    kept = pseudo_label_images(train, pool, min_confidence=0.9)
    assert len(both) == len(train) + len(kept.rows)
    assert both.features["label"] == train.features["label"]  # the ClassLabel survives, so the DDPM sees classes
    assert both["label"][: len(train)] == train["label"]


def test_recipe_refuses_a_confidence_outside_the_unit_interval():
    with pytest.raises(ValueError, match="ddpm_pseudo_label_confidence"):
        ImageScriptArguments(ddpm_pseudo_label_confidence=1.5)

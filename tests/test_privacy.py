"""The privacy audit: DCR against held-out real rows, near-copies, membership inference, the per-cycle record."""

import json
import random

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from PIL import Image
from tiny import make_trainer, sentence

from hf_active_synth import ActiveSynthesisConfig
from hf_active_synth.filters import ExactDuplicateFilter, LabelAgreementFilter
from hf_active_synth.filters.image import NearCopyFilter
from hf_active_synth.filters.text import RealNearCopyFilter
from hf_active_synth.privacy import (
    PrivacyThresholds,
    audit_samples,
    closest_record_distances,
    lira_offline,
    logit_confidence,
    loss_attack,
    near_copy_rule,
    published_audit,
)
from hf_active_synth.tasks.digits import split_digits


@pytest.fixture(scope="module")
def digits():
    splits = split_digits(seed=0)
    pool = splits["pool"]
    return splits["train"], pool.select(range(200)), pool.select(range(200, 300))


def with_planted_copy(train, fresh, index: int = 3) -> Dataset:
    """`fresh` rows plus, last, training image `index` with one pixel nudged (a near-copy, not an exact copy)."""
    pixels = np.asarray(train[index]["image"].convert("L"), dtype=np.int16)
    pixels[0, 0] = min(255, pixels[0, 0] + 8)
    planted = Image.fromarray(pixels.astype(np.uint8), mode="L")
    rows = {"image": list(fresh["image"]) + [planted], "label": list(fresh["label"]) + [train[index]["label"]]}
    return Dataset.from_dict(rows, features=train.features)


def test_fresh_real_digits_look_like_the_heldout_reference(digits):
    train, heldout, fresh = digits
    audit = audit_samples(fresh, train, heldout, "image", near_copy=near_copy_rule([NearCopyFilter(0.04)]))
    # The calibration the docs promise: fresh real data is about 5 % below the held-out 5th percentile, ratio ~ 1.
    assert audit.share_closer_than_heldout_p5 < 0.15
    assert 0.85 < audit.median_ratio < 1.15
    assert audit.num_near_copies == 0 and audit.measure == "RMS pixel distance"
    assert PrivacyThresholds(max_closer_share=0.2, max_near_copy_share=0.0).violations(audit) == []


def test_audit_flags_a_planted_near_copy_of_a_training_digit(digits):
    train, heldout, fresh = digits
    samples = with_planted_copy(train, fresh.select(range(40)))
    planted = len(samples) - 1
    audit = audit_samples(samples, train, heldout, "image", near_copy=near_copy_rule([NearCopyFilter(0.04)]))
    assert audit.num_near_copies == 1 and audit.near_copy_samples == [planted]
    assert audit.closest_samples[0] == planted  # the closest sample of all, below the held-out 5th percentile
    assert audit.near_copy_threshold == 0.04
    # The DCR is the near-copy filter's own measure: the filter agrees on the planted row.
    distances, nearest = closest_record_distances(samples["image"], train["image"], "image")
    assert nearest[planted] == 3 and distances[planted] < 0.01
    (violation,) = PrivacyThresholds(max_near_copy_share=0.0).violations(audit)
    assert "1 of the 41 samples" in violation and "privacy_max_near_copy_share" in violation


def test_text_audit_flags_a_planted_near_copy():
    rng = random.Random(0)
    train = Dataset.from_dict({"text": [sentence(rng, i % 2) + " " + sentence(rng, 1) for i in range(40)]})
    heldout = Dataset.from_dict({"text": [sentence(rng, i % 2) + " " + sentence(rng, 0) for i in range(40)]})
    fresh = [sentence(rng, i % 2) + " " + sentence(rng, 1) for i in range(20)]
    planted = train[7]["text"].replace(train[7]["text"].split()[0], "superb", 1)  # one word changed
    samples = Dataset.from_dict({"text": fresh + [planted]})
    rule = near_copy_rule([LabelAgreementFilter(), RealNearCopyFilter(max_overlap=0.8)])
    audit = audit_samples(samples, train, heldout, "text", near_copy=rule, modality="text")
    assert audit.modality == "text" and "cosine" in audit.measure
    assert audit.near_copy_samples == [20] and audit.closest_samples[0] == 20
    assert audit.near_copy_measure == "containment of char 5-gram shingles"


def test_no_near_copy_filter_means_no_count_and_a_set_limit_refuses():
    rng = random.Random(1)
    train = Dataset.from_dict({"text": [sentence(rng, 1) for _ in range(10)]})
    audit = audit_samples(train.select([0]), train, Dataset.from_dict({"text": ["a new plot"] * 3}), "text")
    assert audit.num_near_copies is None and near_copy_rule([ExactDuplicateFilter()]) is None
    assert "no near-copy filter" in PrivacyThresholds(max_near_copy_share=0.5).violations(audit)[0]
    assert "no privacy audit was recorded" in PrivacyThresholds(max_closer_share=0.1).violations(None)[0]
    assert PrivacyThresholds.from_training_args(ActiveSynthesisConfig(output_dir="x")) is None
    with pytest.raises(ValueError, match="privacy_max_closer_share"):
        ActiveSynthesisConfig(output_dir="x", privacy_max_closer_share=1.5)


def blobs(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = rng.integers(0, 2, n)
    points = rng.normal(0.0, 1.0, (n, 2)) + np.where(labels[:, None] == 1, 1.5, -1.5) * np.array([1.0, 0.0])
    return torch.tensor(points, dtype=torch.float32), torch.tensor(labels)


def fit(points: torch.Tensor, labels: torch.Tensor, seed: int, steps: int = 400) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(points.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(points), labels).backward()
        optimizer.step()
    return model


def test_membership_attacks_flag_a_memorised_training_row():
    rng = np.random.default_rng(0)
    members, member_labels = blobs(rng, 60)
    # Planted: a point deep in class 0's blob, labelled 1. Only memorisation fits it.
    members[-1], member_labels[-1] = torch.tensor([-3.0, 0.0]), 1
    planted = len(members) - 1
    nonmembers, nonmember_labels = blobs(rng, 300)
    target = fit(members, member_labels, seed=0)
    unrelated = fit(*blobs(rng, 60), seed=1)  # trained without any member: the synthetic-only analogue
    references = [fit(*blobs(rng, 60), seed=10 + k) for k in range(4)]
    with torch.no_grad():
        logits = lambda model, x: model(x).numpy()  # noqa: E731
        ref_members = np.stack([logits(m, members) for m in references])
        ref_nonmembers = np.stack([logits(m, nonmembers) for m in references])
        lira = lambda model: lira_offline(  # noqa: E731
            logits(model, members),
            member_labels,
            logits(model, nonmembers),
            nonmember_labels,
            ref_members,
            ref_nonmembers,
        )
        attacked, clean = lira(target), lira(unrelated)
    # The most exposed member is the memorised one, though its loss is not the lowest: the reference models that
    # never saw it give its label almost no chance.
    assert attacked.flagged_members[0] == planted
    assert planted not in clean.flagged_members and abs(clean.auc - 0.5) < 0.1
    assert attacked.num_reference_models == 4 and attacked.num_nonmembers == 300


def test_loss_attack_separates_a_memorising_model_from_one_that_never_saw_the_members():
    rng = np.random.default_rng(1)
    noise = lambda n: torch.tensor(rng.normal(size=(n, 16)), dtype=torch.float32)  # noqa: E731
    coin = lambda n: torch.tensor(rng.integers(0, 2, n))  # noqa: E731
    members, member_labels, nonmembers, nonmember_labels = noise(30), coin(30), noise(200), coin(200)
    memorising = fit(members, member_labels, seed=0, steps=600)  # random labels: only memorisation fits them
    unrelated = fit(noise(30), coin(30), seed=1, steps=600)
    with torch.no_grad():
        attack = lambda model: loss_attack(  # noqa: E731
            model(members).numpy(), member_labels, model(nonmembers).numpy(), nonmember_labels
        )
        leaky, clean = attack(memorising), attack(unrelated)
    assert leaky.attack == "loss_threshold" and leaky.auc > 0.8
    assert abs(clean.auc - 0.5) < 0.15


def test_logit_confidence_is_the_log_odds_of_the_true_class():
    logits = np.array([[2.0, 0.0, -1.0]])
    probability = np.exp(2.0) / np.exp([2.0, 0.0, -1.0]).sum()
    assert logit_confidence(logits, np.array([0]))[0] == pytest.approx(np.log(probability / (1 - probability)))
    with pytest.raises(ValueError, match="at least 2 reference models"):
        lira_offline(logits, [0], logits, [0], logits[None], logits[None])


class CopyingGenerator:
    """Test double of a generator that memorised its training data: each candidate is its target with a word added
    (verbatim copies of real rows are dropped by `ExactDuplicateFilter`)."""

    name = "copying-double"

    def generate(self, request):
        rows = {
            request.input_column: [],
            request.label_column: [],
            "synth_cycle": [],
            "synth_generator": [],
            "synth_target_id": [],
            "synth_target_label": [],
            "synth_seed_example_ids": [],
        }
        for target in request.targets:
            for index in range(target.num_samples * request.candidates_per_sample):
                text = f"{target.example} {['film', 'plot', 'story', 'movie'][index % 4]}"
                for column, value in zip(
                    rows, (text, target.label, request.cycle, self.name, target.target_id, target.label, [])
                ):
                    rows[column].append(value)
        return Dataset.from_dict(rows)


def test_every_cycle_records_its_audit_in_history_and_the_dataset_card(tmp_path):
    trainer = make_trainer(
        tmp_path, generator=CopyingGenerator(), num_cycles=2, synthetic_samples_per_cycle=4, ensemble_size=2
    )
    trainer.filters = [ExactDuplicateFilter()]
    history = trainer.run_cycles()
    run = tmp_path / "run"
    for cycle in (1, 2):
        audit = history.cycles[cycle].privacy_audit
        on_disk = json.loads((run / f"cycle-{cycle}" / "cycle.json").read_text())["privacy_audit"]
        assert on_disk == audit and audit["num_samples"] == history.cycles[cycle].num_accepted
        assert audit["share_closer_than_heldout_p5"] > 0.5  # near-copies, far closer than fresh real rows
    assert history.cycles[2].privacy_audit["cumulative"]["num_samples"] == history.cycles[2].num_synthetic_total
    saved = json.loads((run / "history.json").read_text())["cycles"][2]["privacy_audit"]
    assert saved == history.cycles[2].privacy_audit
    assert published_audit([c.to_dict() for c in history.cycles]).num_samples == history.cycles[2].num_synthetic_total
    (dataset_dir,) = (run / "hub" / "datasets").iterdir()
    card = (dataset_dir / "README.md").read_text()
    assert "### Privacy audit" in card and "| **This dataset (all cycles)** |" in card
    share = f"{history.cycles[2].privacy_audit['cumulative']['share_closer_than_heldout_p5']:.1%}"
    assert "| Cycle 2 |" in card and share in card and "not a differential-privacy guarantee" in card
    assert len(load_from_disk(str(run / "cycle-1" / "synthetic"))) == history.cycles[1].num_accepted


def test_a_run_without_audit_says_so_in_its_card(tmp_path):
    history = make_trainer(
        tmp_path, num_cycles=1, privacy_audit=False, ensemble_size=2, num_train_epochs=1
    ).run_cycles()
    assert history.cycles[1].privacy_audit == {}
    (dataset_dir,) = (tmp_path / "run" / "hub" / "datasets").iterdir()
    assert "No privacy audit was recorded" in (dataset_dir / "README.md").read_text()

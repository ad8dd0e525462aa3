"""Unlearned targets (#12): rank each class's rows by the ensemble's cross-entropy of their label, not by BALD."""

import math

import pytest
import torch
from tiny import WordSwapGenerator, make_args, make_bert, make_text_dataset, make_tokenizer, scored_text_pool

from hf_active_synth import ActiveSynthesisConfig, ActiveSynthesisTrainer
from hf_active_synth.acquisition import mean_probabilities, score, select_per_class
from hf_active_synth.cycle import CycleStore
from hf_active_synth.targeting import TargetingSettings, choose_targets, interleave_by_rank, label_loss, score_pool


def settings(**overrides) -> TargetingSettings:
    values = dict(
        input_column="text", label_column="label", num_labels=3, targets_per_class=3, budget=10,
        acquisition_function="bald", target_strategy="unlearned",
    )  # fmt: skip
    return TargetingSettings(**{**values, **overrides})


def test_label_loss_is_the_cross_entropy_of_the_label_under_the_ensemble_mean():
    pool, logits = scored_text_pool(num_rows=12)
    labels = torch.tensor(pool["label"])
    expected = -mean_probabilities(logits)[torch.arange(12), labels].log()
    torch.testing.assert_close(label_loss(logits, labels), expected)
    # A row without a class is never ranked first; a probability that underflows to 0 is the largest finite loss.
    assert label_loss(logits, torch.tensor([-1] + labels[1:].tolist()))[0] == -math.inf
    certain = torch.tensor([[0.0, 200.0]]).unsqueeze(-1).repeat(1, 1, 3)
    assert torch.isfinite(label_loss(certain, torch.tensor([0]))).all()


def test_a_confidently_misclassified_row_is_the_first_unlearned_target_and_the_last_bald_one():
    # Rows of class 0: an agreed right answer, a split ensemble, and members agreeing on the wrong class.
    member_logits = torch.tensor(
        [
            [[3.0, 3.0, 3.0], [0.0, 0.0, 0.0]],  # learned
            [[3.0, 0.0, 3.0], [0.0, 3.0, 0.0]],  # members disagree (BALD's favourite)
            [[0.0, 0.0, 0.0], [4.0, 4.0, 4.0]],  # confidently wrong: no disagreement at all
        ]
    )
    labels = torch.zeros(3, dtype=torch.long)
    unlearned = score_pool(member_logits, "bald", target_strategy="unlearned", seed=0, labels=labels)
    uncertain = score_pool(member_logits, "bald", target_strategy="uncertain", seed=0, labels=labels)
    assert unlearned.argsort(descending=True).tolist() == [2, 1, 0]
    assert uncertain.argmax() == 1 and uncertain[2] < uncertain[1]


def test_choose_targets_takes_each_class_highest_label_loss():
    pool, logits = scored_text_pool(num_rows=30)
    labels = torch.tensor(pool["label"])
    loss = label_loss(logits, labels)
    targets = choose_targets(logits, pool, settings(), seed=1)
    assert sum(t.num_samples for t in targets) == 10
    for label in range(3):
        rows = (labels == label).nonzero().flatten()
        best = set(rows[loss[rows].argsort(descending=True)[:3]].tolist())
        assert {t.example_id for t in targets if t.label == label} == best
    for target in targets:
        assert target.score == pytest.approx(float(loss[target.example_id]))
    # Not what BALD picks on the same pool, and the random baselines ignore the strategy's labels.
    assert targets != choose_targets(logits, pool, settings(target_strategy="uncertain"), seed=1)
    assert [t.example_id for t in choose_targets(logits, pool, settings(target_strategy="random"), seed=1)] == [
        int(i) for i in _random_ranking(logits, pool, seed=1)
    ]


def _random_ranking(logits, pool, seed):
    """The random baseline's targets as `"uncertain"` targets over the seeded random scores would be."""
    per_class = select_per_class(score(logits, "random", seed=seed), torch.tensor(pool["label"]), 3, 3)
    return interleave_by_rank(per_class, 3, 3)[:10]


def test_unlearned_targets_need_labels_from_outside_the_ensemble():
    _, logits = scored_text_pool(num_rows=6)
    with pytest.raises(ValueError, match="pass `labels`"):
        score_pool(logits, "bald", target_strategy="unlearned", seed=0)
    with pytest.raises(ValueError, match="target_source='pool'.*pseudo_labelled_pool"):
        ActiveSynthesisConfig(output_dir="unused", target_strategy="unlearned", target_source="pool")
    for source in ("train", "crossfit", "pseudo_labelled_pool"):
        assert ActiveSynthesisConfig(output_dir="unused", target_strategy="unlearned", target_source=source)


def test_an_unlearned_run_targets_the_rows_with_the_highest_label_loss(tmp_path):
    train = make_text_dataset(24)
    trainer = ActiveSynthesisTrainer(
        model=make_bert(),
        args=make_args(tmp_path, num_cycles=1, target_strategy="unlearned"),
        train_dataset=train,
        eval_dataset=make_text_dataset(24, seed=1),
        processing_class=make_tokenizer(),
        generator=WordSwapGenerator(),
    )
    history = trainer.run_cycles()
    assert history.cycles[1].num_accepted == 6
    pool_logits = CycleStore(tmp_path / "run").load_pool_logits(0)
    loss = label_loss(pool_logits, torch.tensor(train["label"]))
    chosen = trainer.generator.requests[0].targets
    for target in chosen:
        same_class = torch.tensor(train["label"]) == target.label
        # Every target's loss is at least that of any same-class row left out.
        left_out = same_class.clone()
        left_out[[t.example_id for t in chosen if t.label == target.label]] = False
        assert not left_out.any() or loss[target.example_id] >= loss[left_out].max()

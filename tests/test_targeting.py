"""Choosing targets without a trainer: quotas sum to the budget, classes interleave by rank, uncertain vs random."""

import pytest
import torch
from datasets import Dataset

from hf_active_synth.acquisition import score
from hf_active_synth.targeting import (
    TargetingSettings,
    allocate_quotas,
    choose_targets,
    interleave_by_rank,
    score_pool,
    seed_examples,
    target_quotas,
)


def pool_and_logits(num_rows=12, num_labels=2, members=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_rows, num_labels, members, generator=generator) * 3
    pool = Dataset.from_dict(
        {"text": [f"row {i}" for i in range(num_rows)], "label": [i % num_labels for i in range(num_rows)]}
    )
    return pool, logits


def settings(**overrides):
    values = dict(
        input_column="text",
        label_column="label",
        num_labels=2,
        targets_per_class=2,
        budget=7,
        acquisition_function="bald",
        target_strategy="uncertain",
    )
    values.update(overrides)
    return TargetingSettings(**values)


@pytest.mark.parametrize(("budget", "num_targets"), [(7, 4), (6, 4), (3, 4), (0, 3), (10, 1)])
def test_quotas_sum_to_the_budget_and_differ_by_at_most_one(budget, num_targets):
    quotas = allocate_quotas(budget, num_targets)
    assert sum(quotas) == budget and len(quotas) == num_targets
    assert max(quotas) - min(quotas) <= 1
    assert quotas == sorted(quotas, reverse=True)  # the remainder goes to the first (most uncertain) targets


def test_interleaving_takes_every_class_best_first():
    per_class = {0: [4, 2, 8], 1: [5], 2: [1, 3]}
    assert interleave_by_rank(per_class, targets_per_class=3, num_labels=3) == [4, 5, 1, 2, 3, 8]


def test_targets_are_the_most_uncertain_of_each_class_with_the_budget_split():
    pool, logits = pool_and_logits()
    targets = choose_targets(logits, pool, settings(), seed=3)
    assert [t.target_id for t in targets] == [0, 1, 2, 3]
    assert [t.label for t in targets] == [0, 1, 0, 1]
    assert [t.num_samples for t in targets] == [2, 2, 2, 1]
    scores = score_pool(logits, "bald", target_strategy="uncertain", seed=3)
    labels = torch.tensor(pool["label"])
    for label in (0, 1):
        ranked = sorted((i for i in range(len(pool)) if labels[i] == label), key=lambda i: -scores[i])
        chosen = [t.example_id for t in targets if t.label == label]
        assert chosen == ranked[:2]
    for target in targets:
        assert target.example == pool[target.example_id]["text"]
        assert target.score == pytest.approx(float(scores[target.example_id]))
    assert target_quotas(targets) == {0: 2, 1: 2, 2: 2, 3: 1}


def test_targets_beyond_the_budget_are_dropped():
    pool, logits = pool_and_logits()
    targets = choose_targets(logits, pool, settings(budget=3), seed=0)
    assert [t.num_samples for t in targets] == [1, 1, 1]


def test_random_targets_are_seeded_random_not_the_most_uncertain():
    pool, logits = pool_and_logits(num_rows=40)
    targeted = choose_targets(logits, pool, settings(targets_per_class=3), seed=0)
    random_a = choose_targets(logits, pool, settings(targets_per_class=3, target_strategy="random"), seed=0)
    random_b = choose_targets(logits, pool, settings(targets_per_class=3, target_strategy="random"), seed=0)
    random_c = choose_targets(logits, pool, settings(targets_per_class=3, target_strategy="random"), seed=1)
    assert random_a == random_b
    assert [t.example_id for t in random_a] != [t.example_id for t in random_c]
    assert [t.example_id for t in random_a] != [t.example_id for t in targeted]
    assert sum(t.num_samples for t in random_a) == 7


def test_target_strategies_score_with_the_acquisition_function_or_the_seeded_random_stream():
    # The seeded streams are those of `acquisition.score`: changing them would change every seeded run.
    _, logits = pool_and_logits()
    assert torch.equal(score_pool(logits, "bald", target_strategy="uncertain", seed=5), score(logits, "bald", seed=5))
    assert torch.equal(score_pool(logits, "bald", target_strategy="random", seed=5), score(logits, "random", seed=5))
    with pytest.raises(ValueError, match="uncertain"):
        score_pool(logits, "bald", target_strategy="hardest", seed=5)


def test_seed_examples_group_targets_by_label():
    pool, logits = pool_and_logits()
    targets = choose_targets(logits, pool, settings(), seed=0)
    examples = seed_examples(targets)
    assert set(examples) == {0, 1}
    for label, pairs in examples.items():
        assert pairs == [(t.example_id, t.example) for t in targets if t.label == label]

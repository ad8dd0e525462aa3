import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_active_synth.acquisition import (
    ACQUISITION_FUNCTIONS,
    bald,
    ensemble_variance,
    margin,
    predictive_entropy,
    random_scores,
    score,
    select_per_class,
)

logits_strategy = st.tuples(st.integers(1, 6), st.integers(2, 5), st.integers(1, 5), st.integers(0, 10_000)).map(
    lambda shape: torch.randn(shape[:3], generator=torch.Generator().manual_seed(shape[3])) * 4
)


def one_hot_logits(classes, num_classes: int, scale: float = 50.0) -> torch.Tensor:
    """[1, C, K] logits whose member k puts (almost) all mass on classes[k]."""
    logits = torch.zeros(1, num_classes, len(classes))
    for member, label in enumerate(classes):
        logits[0, label, member] = scale
    return logits


def test_uniform_prediction_has_maximal_entropy_and_no_disagreement():
    logits = torch.zeros(1, 4, 3)
    assert predictive_entropy(logits).item() == pytest.approx(math.log(4))
    assert bald(logits).item() == pytest.approx(0.0, abs=1e-6)
    assert ensemble_variance(logits).item() == pytest.approx(0.0, abs=1e-7)
    assert margin(logits).item() == pytest.approx(1.0)


def test_confident_members_that_disagree_have_maximal_bald():
    logits = one_hot_logits([0, 1], num_classes=2)
    assert bald(logits).item() == pytest.approx(math.log(2), abs=1e-4)
    # Members f_1 = (1, 0), f_2 = (0, 1): mean (0.5, 0.5); per-class variance 0.25, summed over classes 0.5.
    assert ensemble_variance(logits).item() == pytest.approx(0.5, abs=1e-4)


def test_confident_agreement_scores_zero():
    logits = one_hot_logits([1, 1, 1], num_classes=3)
    for name in ("entropy", "variance", "bald", "margin"):
        assert ACQUISITION_FUNCTIONS[name](logits).item() == pytest.approx(0.0, abs=1e-4), name


def test_variance_matches_the_proposal_formula():
    logits = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(1))
    probabilities = logits.softmax(dim=1)
    mean = probabilities.mean(dim=2, keepdim=True)
    expected = ((probabilities - mean) ** 2).mean(dim=2).sum(dim=1)
    torch.testing.assert_close(ensemble_variance(logits), expected)


@settings(max_examples=60, deadline=None)
@given(logits_strategy)
def test_scores_are_bounded(logits):
    num_classes = logits.shape[1]
    entropy = predictive_entropy(logits)
    assert torch.all(entropy >= -1e-6) and torch.all(entropy <= math.log(num_classes) + 1e-5)
    mutual_information = bald(logits)
    assert torch.all(mutual_information >= 0) and torch.all(mutual_information <= entropy + 1e-5)
    assert torch.all(ensemble_variance(logits) >= 0) and torch.all(ensemble_variance(logits) <= 1.0 + 1e-6)
    assert torch.all((margin(logits) >= -1e-6) & (margin(logits) <= 1 + 1e-6))


@settings(max_examples=30, deadline=None)
@given(logits_strategy)
def test_scores_ignore_member_order_and_logit_shift(logits):
    permuted = logits[:, :, torch.randperm(logits.shape[2], generator=torch.Generator().manual_seed(0))]
    shifted = logits + 7.0  # softmax is shift invariant: scores must be too (they never read raw values)
    for name in ("entropy", "variance", "bald", "margin"):
        function = ACQUISITION_FUNCTIONS[name]
        torch.testing.assert_close(function(permuted), function(logits), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(function(shifted), function(logits), atol=1e-5, rtol=1e-4)


def test_single_member_has_zero_bald_and_variance():
    logits = torch.randn(7, 3, 1, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(bald(logits), torch.zeros(7), atol=1e-6)
    assert torch.allclose(ensemble_variance(logits), torch.zeros(7), atol=1e-7)


def test_random_scores_are_seeded():
    logits = torch.zeros(10, 2, 3)
    assert torch.equal(random_scores(logits, seed=3), random_scores(logits, seed=3))
    assert not torch.equal(random_scores(logits, seed=3), random_scores(logits, seed=4))
    assert torch.equal(score(logits, "random", seed=3), random_scores(logits, seed=3))


def test_bad_logits_are_rejected():
    with pytest.raises(ValueError, match=r"\[N, C, K\]"):
        predictive_entropy(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="Unknown acquisition"):
        score(torch.zeros(1, 2, 2), "typo")


def test_select_per_class_takes_the_most_uncertain_of_each_class():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.2, 0.9])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert select_per_class(scores, labels, per_class=2, num_classes=3) == {0: [1, 2], 1: [5, 3], 2: []}

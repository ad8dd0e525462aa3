"""The shipped `evaluate` metric modules and the `Trainer` `compute_metrics` hook, checked against scikit-learn."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import evaluate
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score
from transformers import EvalPrediction

from hf_active_synth.evaluation.metrics import (
    SHIPPED_METRICS,
    compute_classification_metrics,
    load_metric,
    logits_to_probabilities,
    make_compute_metrics,
    metric_module_path,
)

_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _reference_ece(probabilities: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """A deliberately naive ECE: loop over the bins ((m-1)/M, m/M]."""
    confidences = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    total = 0.0
    for m in range(n_bins):
        low, high = m / n_bins, (m + 1) / n_bins
        in_bin = (confidences > low) & (confidences <= high)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidences[in_bin].mean())
    return total


@pytest.fixture(scope="module")
def metrics():
    return {name: load_metric(name) for name in SHIPPED_METRICS}


@pytest.fixture(scope="module")
def compute_metrics():
    return make_compute_metrics(n_bins=10)


def test_shipped_modules_are_evaluate_metrics(metrics):
    for name, metric in metrics.items():
        assert isinstance(metric, evaluate.Metric)
        assert metric.name == name
        assert (metric_module_path(name) / f"{name}.py").is_file()


@pytest.mark.slow
def test_modules_load_offline_in_a_fresh_process(tmp_path):
    # A clean interpreter with the Hub switched off and an empty modules cache: nothing can come from the network.
    # (It imports only `evaluate`, not hf_active_synth, to stay fast.)
    paths = [str(metric_module_path(name)) for name in SHIPPED_METRICS]
    script = textwrap.dedent(
        f"""
        import evaluate
        for path in {paths!r}:
            evaluate.load(path)
        ece = evaluate.load({paths[2]!r} + "/expected_calibration_error.py")
        print(evaluate.load({paths[0]!r}).compute(predictions=[0, 1, 1], references=[0, 1, 0]))
        print(ece.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 0], n_bins=10))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "{'accuracy': 0.666" in result.stdout
    assert "{'expected_calibration_error': 0.45" in result.stdout
    assert (tmp_path / "hf" / "modules" / "evaluate_modules" / "metrics" / "accuracy").is_dir()


@_SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 200),
    num_classes=st.integers(2, 7),
)
def test_accuracy_and_f1_match_sklearn(metrics, seed, n, num_classes):
    rng = np.random.default_rng(seed)
    predictions = rng.integers(0, num_classes, size=n)
    references = rng.integers(0, num_classes, size=n)
    accuracy = metrics["accuracy"].compute(predictions=predictions, references=references)["accuracy"]
    assert accuracy == pytest.approx(accuracy_score(references, predictions))
    for average in ("macro", "micro", "weighted"):
        f1 = metrics["f1"].compute(predictions=predictions, references=references, average=average, zero_division=0.0)
        assert f1["f1"] == pytest.approx(f1_score(references, predictions, average=average, zero_division=0.0))


def test_f1_binary_and_per_class(metrics):
    references = [0, 1, 1, 0, 1, 2]
    predictions = [0, 1, 0, 0, 1, 1]
    binary = metrics["f1"].compute(predictions=[0, 1, 0, 1], references=[0, 1, 1, 1])["f1"]
    assert binary == pytest.approx(f1_score([0, 1, 1, 1], [0, 1, 0, 1]))
    per_class = metrics["f1"].compute(predictions=predictions, references=references, average=None, zero_division=0.0)
    np.testing.assert_allclose(per_class["f1"], f1_score(references, predictions, average=None, zero_division=0.0))


def test_accuracy_count_and_weights(metrics):
    out = metrics["accuracy"].compute(predictions=[0, 1, 1], references=[0, 1, 0], normalize=False)
    assert out == {"accuracy": 2}
    weighted = metrics["accuracy"].compute(predictions=[0, 1, 1], references=[0, 1, 0], sample_weight=[1, 1, 2])
    assert weighted["accuracy"] == pytest.approx(0.5)


@_SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    num_classes=st.integers(2, 6),
    n_bins=st.integers(1, 20),
)
def test_ece_matches_reference(metrics, seed, n, num_classes, n_bins):
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.full(num_classes, 0.5), size=n)
    references = rng.integers(0, num_classes, size=n)
    ece = metrics["expected_calibration_error"].compute(
        predictions=probabilities, references=references, n_bins=n_bins
    )["expected_calibration_error"]
    assert ece == pytest.approx(_reference_ece(probabilities, references, n_bins), abs=1e-9)
    assert 0.0 <= ece <= 1.0


def test_ece_known_values(metrics):
    ece = metrics["expected_calibration_error"]
    # Confidence 0.9 correct (bin (0.8, 0.9]) and 0.8 wrong (bin (0.7, 0.8]): (0.1 + 0.8) / 2.
    assert ece.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 0], n_bins=10)[
        "expected_calibration_error"
    ] == pytest.approx(0.45)
    # Perfectly calibrated: confidence 0.75 in one bin, 3 of 4 right.
    probabilities = [[0.75, 0.25]] * 4
    assert ece.compute(predictions=probabilities, references=[0, 0, 0, 1], n_bins=5)[
        "expected_calibration_error"
    ] == pytest.approx(0.0)
    # A bin edge belongs to the lower bin: confidence exactly 0.5 with 2 bins falls in (0, 0.5].
    assert ece.compute(predictions=[[0.5, 0.5]], references=[0], n_bins=2)[
        "expected_calibration_error"
    ] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("predictions", "references", "n_bins", "message"),
    [
        ([[2.0, -1.0]], [0], 10, "look like logits"),
        ([[0.7, 0.7]], [0], 10, "sum to 1"),
        ([[0.5, 0.5]], [2], 10, r"class ids in \[0, 2\)"),
        ([[0.5, 0.5]], [0], 0, "n_bins"),
        ([[1.0]], [0], 10, "C >= 2"),
    ],
)
def test_ece_rejects_bad_input(metrics, predictions, references, n_bins, message):
    with pytest.raises(ValueError, match=message):
        metrics["expected_calibration_error"].compute(predictions=predictions, references=references, n_bins=n_bins)


def test_load_metric_unknown_name_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="does not ship with hf_active_synth"):
        load_metric("definitely_not_a_metric_module")
    with pytest.raises(ValueError, match="choose one of"):
        metric_module_path("bleu")


def test_logits_to_probabilities_softmax_and_ensemble_mean():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 3, 4)) * 10
    member = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(logits_to_probabilities(logits), member.mean(axis=2))
    np.testing.assert_allclose(logits_to_probabilities(logits[..., 0]), member[..., 0])
    # Large logits do not overflow.
    np.testing.assert_allclose(logits_to_probabilities(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        logits_to_probabilities(np.zeros(3))


@_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 100), num_classes=st.integers(2, 5))
def test_compute_metrics_hook_matches_sklearn(compute_metrics, seed, n, num_classes):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, num_classes)).astype(np.float32) * 3
    labels = rng.integers(0, num_classes, size=n)
    out = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    assert set(out) == {"accuracy", "f1_macro", "ece"}
    predictions = logits.argmax(axis=1)
    probabilities = logits_to_probabilities(logits)
    assert out["accuracy"] == pytest.approx(accuracy_score(labels, predictions))
    assert out["f1_macro"] == pytest.approx(f1_score(labels, predictions, average="macro", zero_division=0.0))
    assert out["ece"] == pytest.approx(_reference_ece(probabilities, labels, 10), abs=1e-9)
    assert all(isinstance(value, float) for value in out.values())


def test_compute_metrics_hook_accepts_tuples_and_ensembles(compute_metrics):
    rng = np.random.default_rng(1)
    ensemble_logits = rng.normal(size=(20, 3, 5))
    labels = rng.integers(0, 3, size=20)
    from_ensemble = compute_metrics(EvalPrediction(predictions=ensemble_logits, label_ids=labels))
    mean_probabilities = logits_to_probabilities(ensemble_logits)
    assert from_ensemble["accuracy"] == pytest.approx(accuracy_score(labels, mean_probabilities.argmax(axis=1)))
    hidden = rng.normal(size=(20, 8))
    from_tuple = compute_metrics(EvalPrediction(predictions=(ensemble_logits[..., 0], hidden), label_ids=labels))
    direct = compute_classification_metrics(ensemble_logits[..., 0], labels, n_bins=10)
    assert from_tuple == pytest.approx(direct)


def test_num_labels_counts_absent_classes():
    logits = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    labels = np.array([0, 1])
    assert compute_classification_metrics(logits, labels)["f1_macro"] == pytest.approx(1.0)
    assert compute_classification_metrics(logits, labels, num_labels=3)["f1_macro"] == pytest.approx(2 / 3)


def test_compute_metrics_rejects_bad_labels(compute_metrics):
    logits = np.zeros((2, 3))
    with pytest.raises(ValueError, match="-100"):
        compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array([0, -100])))
    with pytest.raises(ValueError, match="one integer label per example"):
        compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 2])))
    with pytest.raises(TypeError, match="integer class ids"):
        compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match="no label_ids"):
        compute_metrics(EvalPrediction(predictions=logits, label_ids=None))

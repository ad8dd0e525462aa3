"""Paired statistics: pairing by (seed, split), the t interval on planted differences, gap closure, data efficiency,
and agreement with the independent checker `shared/tools/paired.py` on a summary.json built by the report code."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
from scipy import stats

from hf_active_synth.evaluation.efficiency import data_efficiency, data_efficiency_from_histories
from hf_active_synth.evaluation.paired import (
    PairedDifference,
    gap_closure,
    mean_metric_by_method,
    pair_runs,
    paired_difference,
    paired_differences,
    runs_from_summary,
)
from hf_active_synth.evaluation.report import summarize


def entry(seed, accuracy, f1=None, split=0):
    out = {"seed": seed, "split": split, "clean_accuracy": accuracy, "ece": 0.05, "robustness": {}}
    out["clean_f1_macro"] = accuracy - 0.01 if f1 is None else f1
    return out


def test_planted_difference_has_the_known_mean_and_t_interval():
    # Differences 0.01, 0.02, 0.03: mean 0.02, s = 0.01, t(0.975, 2) = 4.302653, half-width 4.302653 * 0.01 / sqrt(3).
    result = paired_difference([0.81, 0.82, 0.83], [0.80, 0.80, 0.80])
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert isinstance(result, PairedDifference)
    assert result.n == 3 and result.wins == 3
    assert result.mean == pytest.approx(0.02, abs=1e-12)
    assert result.ci95 == pytest.approx((0.02 - half, 0.02 + half), abs=1e-12)
    assert result.ci95[0] == pytest.approx(-0.004841, abs=1e-6)  # the docstring's example


def test_interval_matches_scipy_paired_t_test():
    rng = random.Random(0)
    method = [0.8 + rng.gauss(0.02, 0.01) for _ in range(7)]
    baseline = [0.8 + rng.gauss(0.0, 0.01) for _ in range(7)]
    result = paired_difference(method, baseline)
    expected = stats.ttest_rel(method, baseline).confidence_interval(0.95)
    assert result.ci95 == pytest.approx((expected.low, expected.high), abs=1e-12)
    # Swapping sides mirrors the interval and turns wins into losses.
    swapped = paired_difference(baseline, method)
    assert swapped.mean == pytest.approx(-result.mean) and swapped.ci95 == pytest.approx(
        (-result.ci95[1], -result.ci95[0])
    )
    assert swapped.wins == 7 - result.wins


def test_small_and_degenerate_pair_counts_do_not_crash():
    one = paired_difference([0.9], [0.8])
    assert one.n == 1 and one.wins == 1 and one.mean == pytest.approx(0.1)
    assert all(math.isnan(x) for x in one.ci95)
    assert one.to_dict() == {"mean": pytest.approx(0.1), "ci95": [None, None], "n": 1, "wins": 1}
    none = paired_difference([], [])
    assert none.to_dict() == {"mean": None, "ci95": [None, None], "n": 0, "wins": 0}
    constant = paired_difference([0.9, 0.8], [0.85, 0.75])  # identical differences: a zero-width interval
    assert constant.ci95 == pytest.approx((0.05, 0.05)) and constant.wins == 2
    ties = paired_difference([0.8, 0.9], [0.8, 0.85])
    assert ties.wins == 1  # a tie is not a win
    with pytest.raises(ValueError, match="baseline values"):
        paired_difference([0.1, 0.2], [0.1])


def test_runs_pair_by_seed_and_split_not_by_position():
    runs = {
        "active_synthesis": [entry(2, 0.83), entry(0, 0.81), entry(1, 0.82), entry(0, 0.70, split=1), entry(9, 0.99)],
        "random_synthetic": [entry(0, 0.80), entry(0, 0.60, split=1), entry(1, 0.80), entry(2, 0.80)],
    }
    pairs = pair_runs(runs, "active_synthesis", "random_synthetic")
    assert [p.key for p in pairs] == [(0, 0), (0, 1), (1, 0), (2, 0)]  # seed 9 has no partner
    assert [round(p.difference, 6) for p in pairs] == [0.01, 0.1, 0.02, 0.03]
    f1 = pair_runs(runs, "active_synthesis", "random_synthetic", metric="f1")
    assert [round(p.difference, 6) for p in f1] == [0.01, 0.1, 0.02, 0.03]  # read from clean_f1_macro
    # Entries without a seed pair by position, as the checker does.
    positional = {"a": [{"accuracy": 0.5}, {"accuracy": 0.7}], "b": [{"accuracy": 0.4}, {"accuracy": 0.4}]}
    assert [p.key for p in pair_runs(positional, "a", "b")] == [0, 1]


def test_pairing_rejects_duplicates_and_missing_metrics_and_skips_failed_runs():
    with pytest.raises(ValueError, match="pairing key"):
        pair_runs({"a": [entry(0, 0.8), entry(0, 0.9)], "b": [entry(0, 0.7)]}, "a", "b")
    with pytest.raises(KeyError, match="clean_accuracy"):
        pair_runs({"a": [{"seed": 0, "ece": 0.1}], "b": [entry(0, 0.7)]}, "a", "b")
    with pytest.raises(KeyError, match="No runs of 'b'"):
        pair_runs({"a": [entry(0, 0.8)]}, "a", "b")
    failed = {"a": [entry(0, 0.8), {**entry(1, 0.8), "clean_accuracy": None}], "b": [entry(0, 0.7), entry(1, 0.7)]}
    assert [p.key for p in pair_runs(failed, "a", "b")] == [(0, 0)]


def test_paired_differences_has_the_summary_json_shape():
    runs = {
        "real_only": [entry(s, 0.70 + 0.01 * s) for s in range(3)],
        "random_synthetic": [entry(s, 0.80) for s in range(3)],
        "active_synthesis": [entry(s, 0.81 + 0.01 * s) for s in range(3)],
    }
    out = paired_differences(runs, ["active_synthesis", "random_synthetic"])
    assert set(out) == {"active_synthesis", "random_synthetic"}
    assert set(out["active_synthesis"]) == {"random_synthetic", "real_only"}
    assert set(out["random_synthetic"]) == {"real_only"}  # never against itself
    cell = out["active_synthesis"]["random_synthetic"]["accuracy"]
    assert set(cell) == {"mean", "ci95", "n", "wins"} and cell["n"] == 3 and cell["wins"] == 3
    assert cell["mean"] == pytest.approx(0.02) and len(cell["ci95"]) == 2
    assert set(out["active_synthesis"]["real_only"]) == {"accuracy", "f1"}
    assert out["active_synthesis"]["real_only"]["accuracy"]["mean"] == pytest.approx(0.11)
    json.dumps(out, allow_nan=False)  # strict JSON
    # An absent baseline is left out; an absent method is an error.
    assert paired_differences({k: runs[k] for k in ("real_only", "active_synthesis")}, ["active_synthesis"]) == {
        "active_synthesis": {"real_only": out["active_synthesis"]["real_only"]}
    }
    with pytest.raises(KeyError):
        paired_differences(runs, ["bald_active_learning"])


def test_gap_closure_on_planted_means():
    means = {"random_synthetic": 0.80, "bald_active_learning": 0.90, "active_synthesis": 0.85, "real_only": 0.70}
    closure = gap_closure(means)
    assert closure == pytest.approx(
        {"random_synthetic": 0.0, "bald_active_learning": 1.0, "active_synthesis": 0.5, "real_only": -1.0}
    )
    assert gap_closure({**means, "bald_active_learning": 0.80}) == dict.fromkeys(means)  # no gap: undefined
    assert gap_closure({"random_synthetic": 0.8, "active_synthesis": 0.85}) == dict.fromkeys(
        ["random_synthetic", "active_synthesis"]
    )
    runs = {"random_synthetic": [entry(0, 0.8), entry(1, 0.82)], "bald_active_learning": [entry(0, 0.9)]}
    assert mean_metric_by_method(runs) == pytest.approx({"random_synthetic": 0.81, "bald_active_learning": 0.9})


def test_data_efficiency_caps_and_flags_pairs_that_never_reach_the_target():
    curves = {
        (0, 0): ([0, 100, 200], [0.70, 0.76, 0.80]),  # reaches 0.78 at 150
        (1, 0): ([0, 100, 200], [0.70, 0.72, 0.74]),  # never reaches it
        (2, 0): ([0, 100, 200, 300], [0.70, 0.72, 0.74, 0.80]),  # only beyond the cap of 200
    }
    result = data_efficiency(curves, target=0.78, cap=200)
    assert [(p.key, p.samples, p.reached) for p in result.pairs] == [
        ((0, 0), 150.0, True),
        ((1, 0), 200.0, False),
        ((2, 0), 200.0, False),
    ]
    assert result.median_samples == 200.0 and result.num_reached == 1 and result.n == 3
    as_dict = result.to_dict()
    assert as_dict["num_capped"] == 2 and as_dict["pairs"][0] == {
        "seed": 0,
        "split": 0,
        "target": 0.78,
        "samples": 150.0,
        "reached": True,
    }
    per_pair = data_efficiency(curves, target={(0, 0): 0.70, (1, 0): 0.73, (2, 0): 0.9}, cap=300)
    assert [p.samples for p in per_pair.pairs] == [0.0, 150.0, 300.0] and per_pair.median_samples == 150.0
    with pytest.raises(KeyError):
        data_efficiency(curves, target={(0, 0): 0.7}, cap=300)
    assert math.isnan(data_efficiency({}, 0.5, cap=10).median_samples)


def history(seed, points):
    cycles = [
        {"cycle": k, "num_synthetic_total": n, "eval_metrics": {"eval_accuracy": acc}}
        for k, (n, acc) in enumerate(points)
    ]
    return {"cycles": cycles, "config": {"seed": seed}}


def test_data_efficiency_from_histories_pairs_by_seed():
    results = {
        "active_synthesis": [history(1, [(0, 0.7), (100, 0.74)]), history(0, [(0, 0.7), (100, 0.8), (200, 0.82)])],
        "random_synthetic": [history(0, [(0, 0.7), (100, 0.72), (200, 0.75)]), history(1, [(0, 0.7), (200, 0.9)])],
    }
    result = data_efficiency_from_histories(results, "active_synthesis", "random_synthetic")
    assert result.cap == 200
    assert [(p.key, p.target, p.samples, p.reached) for p in result.pairs] == [
        ((0, None), 0.75, 50.0, True),
        ((1, None), 0.9, 200.0, False),
    ]


def run_checker(checker, path, method, baseline):
    out = subprocess.run(
        [sys.executable, str(checker), str(path), method, baseline], capture_output=True, text=True, check=True
    )
    n, mean, lo, hi = out.stdout.split()
    return int(n), mean, float(lo), float(hi)


def test_paired_differences_agree_with_the_independent_checker(tmp_path, paired_checker):
    rng = random.Random(3)
    methods = ("real_only", "random_synthetic", "bald_active_learning", "active_synthesis")
    offsets = {"real_only": -0.05, "random_synthetic": 0.0, "bald_active_learning": 0.03, "active_synthesis": 0.02}
    extras = {}
    for method in methods:  # 5 seeds x 1 split (plus a second split for two seeds), listed in shuffled order
        keys = [(seed, 0) for seed in range(5)] + [(0, 1), (1, 1)]
        rng.shuffle(keys)
        extras[method] = [entry(s, 0.8 + offsets[method] + rng.gauss(0, 0.015), split=sp) for s, sp in keys]
    results = {m: [history(s, [(0, 0.7)]) for s in range(len(extras[m]))] for m in methods}
    summary = summarize(results, extras)  # the report's own summary.json content; its `extras` carry seed/split
    summary["paired_differences"] = paired_differences(runs_from_summary(summary), methods)
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary, indent=2))

    reloaded = json.loads(path.read_text())
    compared = 0
    for method in methods:
        for baseline in ("random_synthetic", "real_only"):
            if baseline == method:
                continue
            cell = reloaded["paired_differences"][method][baseline]["accuracy"]
            n, mean, lo, hi = run_checker(paired_checker, path, method, baseline)
            assert cell["n"] == n == 7
            assert f"{cell['mean']:.4f}" == mean  # the same pairs, differences and mean
            # Same interval method (mean ± t s/√n); the checker prints 4 decimals and rounds t to 2 (t(0.975, 6) =
            # 2.4469 vs its 2.45), which moves a bound by at most 0.0031·s/√7 + 5e-5 < 1e-4 here.
            assert cell["ci95"][0] == pytest.approx(lo, abs=1e-4) and cell["ci95"][1] == pytest.approx(hi, abs=1e-4)
            compared += 1
    assert compared == 6

    # One pair: both say "no interval".
    single = {"extras": {"a": [entry(0, 0.9)], "b": [entry(0, 0.8)]}}
    path.write_text(json.dumps(single))
    assert run_checker(paired_checker, path, "a", "b")[0] == 1
    assert paired_differences(runs_from_summary(single), ["a"], baselines=("b",))["a"]["b"]["accuracy"]["ci95"] == [
        None,
        None,
    ]

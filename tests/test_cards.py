"""Model and dataset cards: golden renderings, parseable metadata, no secrets, templates shipped in the package.

Regenerate the golden files after an intended template change with `UPDATE_GOLDEN=1 pytest tests/test_cards.py`.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import pytest
from datasets import ClassLabel, Features, List, Value
from huggingface_hub import DatasetCard, DatasetCardData, ModelCard

from hf_active_synth.cards import load_template, privacy_result, render_dataset_card, render_model_card
from hf_active_synth.columns import PROVENANCE_COLUMNS, column_description
from hf_active_synth.filters import real_data_filter_names
from hf_active_synth.filters.image import NearCopyFilter
from hf_active_synth.filters.text import NearDuplicateFilter, RealNearCopyFilter
from hf_active_synth.hub.secrets import redact, scrub_settings

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_testtoken1234567890abcdefXYZ"

SETTINGS = {
    "base_model": "sentence-transformers/all-MiniLM-L6-v2",
    "dataset_name": "stanfordnlp/sst2",
    "synthetic_loss_weight": 0.3,
    "uncertainty_method": "lora_ensemble",
    "ensemble_size": 5,
    "acquisition_function": "bald",
    "target_strategy": "uncertain",
    "guidance": True,
    "synthetic_samples_per_cycle": 200,
    "num_cycles": 3,
    "cycle_metric": "accuracy",
    "license": "apache-2.0",
    "seed": 42,
    "command": f"hf-active-synth --config recipes/configs/sst2.yaml --hub_token {TOKEN}",
    "hub_token": TOKEN,
    "push_to_hub_token": "<PUSH_TO_HUB_TOKEN>",
}


def _cycle(cycle: int, accuracy: float, accepted: int) -> dict:
    generated = 40 * cycle
    return {
        "cycle": cycle,
        "eval_metrics": {
            "eval_accuracy": accuracy,
            "eval_f1_macro": accuracy - 0.01,
            "eval_loss": 0.7 - accuracy / 2,
            "eval_runtime": 1.5,
            "epoch": 1.0,
        },
        "uncertainty_before": {"entropy": 0.61, "variance": 0.04, "bald": 0.021} if cycle else {},
        "uncertainty_after": {"entropy": 0.42, "variance": 0.02, "bald": 0.009} if cycle else {},
        "num_targets": 20 if cycle else 0,
        "candidates_generated": generated,
        "filter_counts": (
            {"label_agreement": generated - 10, "exact_duplicate": generated - 12, "near_copy": generated - 15}
            if cycle
            else {}
        ),
        "num_accepted": accepted,
        "num_synthetic_total": 0,
        "stage_seconds": {},
        "peak_memory_mb": 0.0,
        "generator": "smollm2-135m-instruct" if cycle else None,
    }


HISTORY = [_cycle(0, 0.8011, 0), _cycle(1, 0.8312, 25), _cycle(2, 0.8257, 60)]
FEATURES = Features(
    {
        "text": Value("string"),
        "label": ClassLabel(names=["negative", "positive"]),
        "synth_cycle": Value("int64"),
        "synth_generator": Value("string"),
        "synth_seed_example_ids": List(Value("int64")),
        "synth_label_probability": Value("float64"),
        "synth_guidance_scale": Value("float64"),
    }
)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; run with UPDATE_GOLDEN=1 if intended"


def model_card(**overrides) -> ModelCard:
    kwargs = dict(
        repo_id="test-user/sst2-active-synthesis",
        revision="cycle-2",
        cycle=2,
        best_cycle=1,
        history=HISTORY,
        settings=scrub_settings(SETTINGS, secrets=(TOKEN,)),
        dataset_repo_id="test-user/sst2-active-synthesis-data",
        library_name="transformers",
        pipeline_tag="text-classification",
    )
    kwargs.update(overrides)
    return render_model_card(**kwargs)


def test_model_card_matches_golden():
    card = model_card()
    check_golden("model_card.md", str(card))
    parsed = ModelCard(str(card))
    assert parsed.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert parsed.data.datasets == ["stanfordnlp/sst2", "test-user/sst2-active-synthesis-data"]
    assert parsed.data.library_name == "transformers" and parsed.data.license == "apache-2.0"


def test_main_card_of_a_peft_adapter():
    card = str(model_card(revision="main", cycle=1, library_name="peft"))
    assert "This is the `main` revision: the weights of **cycle 1**" in card
    assert 'PeftModel.from_pretrained(base, "test-user/sst2-active-synthesis")' in card
    assert 'from_pretrained("sentence-transformers/all-MiniLM-L6-v2")' in card
    assert "| 1 ★ ← |" in card and "| 2 |" in card


def test_local_only_card_loads_the_folder():
    card = str(model_card(repo_id="model", local_path="hub/models/model@cycle-2", dataset_repo_id=None))
    assert 'from_pretrained("hub/models/model@cycle-2")' in card and "revision=" not in card
    assert "The synthetic samples were not published." in card


def dataset_card(history=HISTORY, **overrides) -> DatasetCard:
    card_data = DatasetCardData()
    card_data.configs = [
        {"config_name": "all", "data_files": [{"split": "train", "path": ["cycle_1/train-*", "cycle_2/train-*"]}]},
        {"config_name": "cycle_1", "data_files": [{"split": "train", "path": "cycle_1/train-*"}]},
        {"config_name": "cycle_2", "data_files": [{"split": "train", "path": "cycle_2/train-*"}]},
    ]
    kwargs = dict(
        repo_id="test-user/sst2-active-synthesis-data",
        history=history,
        configs={1: "cycle_1", 2: "cycle_2"},
        features=FEATURES,
        card_data=card_data,
        settings=scrub_settings(SETTINGS, secrets=(TOKEN,)),
        model_repo_id="test-user/sst2-active-synthesis",
        real_data_columns=("synth_prompt",),
    )
    kwargs.update(overrides)
    return render_dataset_card(**kwargs)


def test_dataset_card_matches_golden():
    card = dataset_card()
    check_golden("dataset_card.md", str(card))
    parsed = DatasetCard(str(card))
    assert parsed.data.license == "apache-2.0" and parsed.data.task_categories == ["text-classification"]
    assert [c["config_name"] for c in parsed.data.configs] == ["all", "cycle_1", "cycle_2"]


def test_secrets_are_never_rendered():
    clean = scrub_settings(SETTINGS, secrets=(TOKEN,))
    assert "hub_token" not in clean and "push_to_hub_token" not in clean
    assert clean["command"].endswith("--hub_token ***")
    assert TOKEN not in str(model_card())
    # Anything shaped like a token is redacted even when it is not the publisher's own.
    assert redact("use hf_abcdefghijklmnop now") == "use hf_*** now"
    assert TOKEN not in str(scrub_settings({"nested": {"args": [TOKEN]}}))


def test_privacy_result_names_the_filter_or_its_absence():
    assert privacy_result(HISTORY[1]) == (
        "filter `near_copy` removed 3 of 28 candidates (10.7%) as too close to a real training example."
    )
    no_privacy = dict(HISTORY[1], filter_counts={"label_agreement": 30})
    assert privacy_result(no_privacy).startswith("no near-copy (privacy) filter ran")


def test_privacy_section_counts_only_filters_that_check_real_data():
    # `near_duplicate` compares candidates with each other: what it removed is no privacy result.
    history = [
        dict(entry, filter_counts={"near_duplicate": 30, "real_near_copy": 24} if entry["cycle"] else {})
        for entry in HISTORY
    ]
    filters = [NearDuplicateFilter(), RealNearCopyFilter()]
    assert real_data_filter_names(filters) == {"real_near_copy"}
    for real_data_filters in (real_data_filter_names(filters), None):  # the run's filters, or the library's own
        card = str(dataset_card(history, real_data_filters=real_data_filters))
        privacy = card.split("## Privacy")[1].split("## License")[0]
        assert "near_duplicate" not in privacy
        assert (
            "- Cycle 1: filter `real_near_copy` removed 6 of 30 candidates (20.0%) as too close to a real " in privacy
        )
    assert privacy_result(history[1]) == (
        "filter `real_near_copy` removed 6 of 30 candidates (20.0%) as too close to a real training example."
    )
    only_duplicates = dict(HISTORY[1], filter_counts={"near_duplicate": 30})
    assert privacy_result(only_duplicates).startswith("no near-copy (privacy) filter ran")
    # A filter's flag decides, not its name.
    assert privacy_result(only_duplicates, real_data_filters={"near_duplicate"}).startswith(
        "filter `near_duplicate` removed 10 of 40"
    )
    assert real_data_filter_names([NearCopyFilter()]) == {"near_copy"}


def test_every_provenance_column_is_described():
    card = str(dataset_card())
    assert "Generator-specific provenance" not in card
    for name, column in PROVENANCE_COLUMNS.items():
        assert name.startswith("synth_") and column.description and column_description(name) == column.description
    assert column_description("synth_custom") == "Generator-specific provenance."


def test_templates_ship_inside_the_package():
    files = importlib.resources.files("hf_active_synth.model_cards")
    for name in ("model_card.md", "dataset_card.md"):
        assert files.joinpath(name).is_file()
        assert load_template(name) == (ROOT / "model_cards" / name).read_text(encoding="utf-8")


def test_every_subpackage_is_listed_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "hf_active_synth").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert setuptools["package-dir"]["hf_active_synth.model_cards"] == "model_cards"

"""Model and dataset cards: golden renderings of a text and an image run, usage code that really loads the model,
parseable metadata, no secrets, templates shipped in the package.

Regenerate the golden files after an intended template change with `UPDATE_GOLDEN=1 pytest tests/test_cards.py`.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Features, Image, List, Value
from huggingface_hub import DatasetCard, DatasetCardData, ModelCard

from hf_active_synth.card_usage import Preprocessing, preprocessing_path, reproduce_command
from hf_active_synth.cards import load_template, privacy_result, render_dataset_card, render_model_card
from hf_active_synth.columns import PROVENANCE_COLUMNS, column_description
from hf_active_synth.evaluation.previews import Preview, TextExample
from hf_active_synth.filters import real_data_filter_names
from hf_active_synth.filters.image import NearCopyFilter
from hf_active_synth.filters.text import NearDuplicateFilter, RealNearCopyFilter
from hf_active_synth.hub.layout import default_repo_names
from hf_active_synth.hub.secrets import redact, scrub_settings
from hf_active_synth.hub.stage_model import CheckpointKind, checkpoint_kind

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
    assert "No synthetic sample has been written for this run yet." in card


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


TEXT_PREVIEW = Preview(
    examples=[
        TextExample("negative", 1, 0, "a tired | predictable sequel", target="a tired, predictable sequel."),
        TextExample("positive", 2, 3, "warm, funny and\nsharp", target="warm and funny."),
    ],
    shows_real=False,
)


def test_dataset_card_matches_golden():
    card = dataset_card(preview=TEXT_PREVIEW)
    check_golden("dataset_card.md", str(card))
    parsed = DatasetCard(str(card))
    assert parsed.data.license == "apache-2.0" and parsed.data.task_categories == ["text-classification"]
    assert [c["config_name"] for c in parsed.data.configs] == ["all", "cycle_1", "cycle_2"]
    preview = str(card).split("## Preview")[1].split("## Cycles")[0]
    # Cells are escaped; the targets are real training sentences, so a run that does not publish real data hides them.
    assert (
        "| negative | 1 | a tired \\| predictable sequel |" in preview
        and "| positive | 2 | warm, funny and sharp |" in preview
    )
    assert "Target" not in preview and "a tired, predictable sequel." not in preview
    shown = str(dataset_card(preview=Preview(examples=TEXT_PREVIEW.examples, shows_real=True)))
    assert "| Target (real) sentence |" in shown and "| a tired, predictable sequel. |" in shown


def test_dataset_card_counts_hard_negatives_where_a_cycle_accepted_some():
    history = [HISTORY[0], dict(HISTORY[1], num_hard_negatives=7), HISTORY[2]]
    lines = [line for line in str(dataset_card(history=history)).splitlines() if line.startswith("- Cycle ")]
    assert "accepted 25 (7 hard negatives" in lines[0] and "hard negatives" not in lines[1]
    assert "hard negatives" not in str(dataset_card())


# ------------------------------------------------------------------------------------------------ image run
DIGITS_SETTINGS = {
    "base_model": "ResNetForImageClassification",
    "synthetic_loss_weight": 0.3,
    "uncertainty_method": "deep_ensemble",
    "ensemble_size": 5,
    "acquisition_function": "bald",
    "num_cycles": 2,
    "input_column": "image",
    "label_column": "label",
    "preprocessing": "hf_active_synth.tasks.digits.preprocess_digits",
    "command": "recipes/image_classification.py --config recipes/configs/digits.yaml",
}
DIGITS_HISTORY = [dict(entry, generator="diffusion:digits-ddpm" if entry["cycle"] else None) for entry in HISTORY]
IMAGE_FEATURES = Features(
    {"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)]), "synth_cycle": Value("int64")}
)
MODEL_DIR = "runs/digits/hub/models/resnet-digits-active-synth"
DATASET_DIR = "runs/digits/hub/datasets/digits-active-synth-synthetic"


def digits_model_card(**overrides) -> ModelCard:
    kwargs = dict(
        repo_id="resnet-digits-active-synth",
        local_path=MODEL_DIR,
        revision="main",
        cycle=1,
        best_cycle=1,
        history=DIGITS_HISTORY,
        settings=DIGITS_SETTINGS,
        library_name="transformers",
        pipeline_tag="image-classification",
        has_processor=False,
        dataset_local_path=DATASET_DIR,
        dataset_link="../../datasets/digits-active-synth-synthetic",
    )
    kwargs.update(overrides)
    return render_model_card(**kwargs)


def test_image_model_card_matches_golden():
    card = str(digits_model_card())
    check_golden("model_card_image.md", card)
    assert ModelCard(card).data.pipeline_tag == "image-classification"
    assert "An image classifier" in card
    usage = card.split("## How to use")[1].split("## Revisions")[0]
    assert "AutoModelForImageClassification" in usage
    assert "from hf_active_synth.tasks.digits import preprocess_digits" in usage
    assert "Sequence" not in usage and "Tokenizer" not in usage
    # The model card links the local dataset folder the run wrote beside it.
    assert f"[`{DATASET_DIR}`](../../datasets/digits-active-synth-synthetic)" in card and "not published" not in card
    assert "accelerate launch recipes/image_classification.py --config recipes/configs/digits.yaml" in card


def test_image_dataset_card_matches_golden():
    card_data = DatasetCardData()
    card_data.configs = [{"config_name": "all", "data_files": [{"split": "train", "path": ["cycle_1/train-*"]}]}]
    card = str(
        render_dataset_card(
            repo_id=DATASET_DIR,
            history=DIGITS_HISTORY[:2],
            configs={1: "cycle_1"},
            features=IMAGE_FEATURES,
            card_data=card_data,
            settings=DIGITS_SETTINGS,
            model_local_path=MODEL_DIR,
            model_link="../../models/resnet-digits-active-synth",
            preview=Preview(image="preview.png", shows_real=False),
        )
    )
    check_golden("dataset_card_image.md", card)
    assert DatasetCard(card).data.task_categories == ["image-classification"]
    assert "![Synthetic samples per class and cycle](preview.png)" in card
    assert "(real training images are not published)" in card
    assert f"trained the model in\n[`{MODEL_DIR}`](../../models/resnet-digits-active-synth)" in card


def _usage_code(card: str) -> dict:
    """Runs the card's "How to use" snippet; returns its namespace."""
    code = re.search(r"## How to use\n\n```python\n(.*?)```", card, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "<model card>", "exec"), namespace)  # noqa: S102 - the code the card tells users to run
    return namespace


def test_image_card_code_loads_the_digits_classifier(tmp_path):
    from hf_active_synth.tasks.digits import load_digits_dataset, make_digits_classifier, preprocess_digits

    model = make_digits_classifier(seed=3).eval()
    model.save_pretrained(tmp_path / "model")
    kind = checkpoint_kind(tmp_path / "model", {"base_model": "ResNetForImageClassification"})
    # The digits classifier is saved without an image processor: its class says it classifies images.
    assert kind == CheckpointKind("transformers", "ResNetForImageClassification", "image-classification", False)
    card = str(digits_model_card(local_path=str(tmp_path / "model"), has_processor=kind.has_processor))
    images = load_digits_dataset()[:16]["image"]
    with torch.no_grad():
        expected = model(**preprocess_digits({"image": images})).logits.argmax(-1).tolist()
    assert _usage_code(card)["predict"](images) == [str(label) for label in expected]


def test_image_card_with_a_processor_loads_it():
    card = str(digits_model_card(has_processor=True, local_path=None, repo_id="user/vit-digits", revision="cycle-1"))
    usage = card.split("## How to use")[1].split("## Revisions")[0]
    assert 'AutoImageProcessor.from_pretrained("user/vit-digits", revision="cycle-1")' in usage
    assert 'processor(images=images, return_tensors="pt")' in usage and "preprocess_digits" not in usage
    no_preprocessing = str(digits_model_card(settings={**DIGITS_SETTINGS, "preprocessing": None}))
    assert "no processor was saved with this checkpoint" in no_preprocessing


def test_text_card_code_loads_model_and_tokenizer(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    config.id2label, config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    model = BertForSequenceClassification(config).eval()
    tokenizer = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    kind = checkpoint_kind(tmp_path / "model", {})
    assert (kind.library, kind.pipeline_tag, kind.has_processor) == ("transformers", "text-classification", True)
    card = str(model_card(repo_id="model", local_path=str(tmp_path / "model"), pipeline_tag=kind.pipeline_tag))
    texts = ["good movie", "bad bad movie"]
    with torch.no_grad():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.argmax(-1).tolist()
    assert _usage_code(card)["predict"](texts) == [config.id2label[i] for i in expected]


def test_reproduce_command_is_complete():
    assert reproduce_command("recipes/text_classification.py --config c.yaml") == (
        "accelerate launch recipes/text_classification.py --config c.yaml"
    )
    assert reproduce_command("/opt/venv/bin/hf-active-synth run c.yaml") == "hf-active-synth run c.yaml"
    assert reproduce_command("accelerate launch x.py") == "accelerate launch x.py"
    assert reproduce_command(None) is None


def test_preprocessing_paths_name_importable_functions():
    from hf_active_synth.tasks.digits import preprocess_digits

    assert preprocessing_path(functools.partial(preprocess_digits, image_column="img")) == (
        "hf_active_synth.tasks.digits.preprocess_digits"
    )
    assert preprocessing_path(lambda batch: batch) is None
    assert Preprocessing.parse("pkg.mod:fn") == Preprocessing("pkg.mod", "fn")
    with pytest.raises(ValueError, match="package.module.function"):
        Preprocessing.parse("fn")


def test_default_repo_names_come_from_the_model_and_the_data():
    assert default_repo_names({"base_model": "ResNetForImageClassification"}, "runs/digits") == (
        "resnet-digits-active-synth",
        "digits-active-synth-synthetic",
    )
    text = {"base_model": "sentence-transformers/all-MiniLM-L6-v2", "dataset_name": "stanfordnlp/sst2"}
    assert default_repo_names(text, "runs/x") == ("all-MiniLM-L6-v2-sst2-active-synth", "sst2-active-synth-synthetic")
    # Characters the Hub refuses are replaced; the names stay within its 96 characters.
    assert default_repo_names({"base_model": "./my model--v1.."}, "runs/x")[0] == "my-model-v1-x-active-synth"
    model, dataset = default_repo_names({}, "runs/" + "d" * 200)
    assert len(model) <= 96 and model.endswith("d-active-synth") and re.fullmatch(r"[\w.-]+", model)
    assert len(dataset) <= 96 and dataset.endswith("d-active-synth-synthetic")


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

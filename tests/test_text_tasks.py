"""The text recipe on a task that is not movie sentiment: local files, string labels, prompts named after the data."""

import csv
import random

import pytest
from datasets import load_from_disk

from hf_active_synth.recipes.text_classification import TextScriptArguments, _load_local_files, _text_domain

TOPICS = {
    "science": ["the telescope found a new planet", "cells divide under the microscope", "the experiment measured"],
    "sports": ["the striker scored twice", "the team won the final", "the coach praised the defence"],
    "world": ["the summit ended with a treaty", "elections were held in the capital", "the minister resigned"],
}


def write_topic_files(folder, rows_per_class=12, integer_labels=False):
    rng = random.Random(0)
    names = sorted(TOPICS)
    paths = {}
    for split, count in (("train", rows_per_class), ("test", 4)):
        path = folder / f"{split}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sentence", "label"])
            for name in names:
                for _ in range(count):
                    text = f"{rng.choice(TOPICS[name])} {rng.choice(['today', 'again', 'on monday', 'at last'])}"
                    writer.writerow([text, names.index(name) if integer_labels else name])
        paths[split] = str(path)
    return paths


def test_string_labels_become_classes_and_integer_labels_need_names(tmp_path):
    paths = write_topic_files(tmp_path)
    args = TextScriptArguments(train_file=paths["train"], test_file=paths["test"])
    data = _load_local_files(args, "label")
    assert data["train"].features["label"].names == ["science", "sports", "world"]
    for row in data["test"]:  # each sentence kept its class
        name = data["test"].features["label"].names[row["label"]]
        assert any(row["sentence"].startswith(text) for text in TOPICS[name])
    assert set(data["test"]["label"]) == {0, 1, 2}
    assert _text_domain(args) == "text"  # not "movie review": nothing says this data is reviews
    assert _text_domain(TextScriptArguments()) == "movie review"  # the SST-2 default
    (tmp_path / "numbered").mkdir()
    numbered = write_topic_files(tmp_path / "numbered", 4, integer_labels=True)
    with pytest.raises(ValueError, match="--class_names"):
        _load_local_files(TextScriptArguments(train_file=numbered["train"], test_file=numbered["test"]), "label")


@pytest.mark.e2e
def test_text_recipe_runs_a_topic_task_with_prompts_about_its_classes(tmp_path):
    from hf_active_synth.recipes.text_classification import cli

    paths = write_topic_files(tmp_path)
    history = cli(
        [
            "--train_file", paths["train"], "--test_file", paths["test"],
            "--text_domain", "news sentence",
            "--label_descriptions", "science", "sports", "world politics",
            "--output_dir", str(tmp_path / "topics"),
            "--train_budget", "9", "--eval_size", "6", "--pool_size", "6",
            "--num_cycles", "1", "--synthetic_samples_per_cycle", "3", "--targets_per_class", "1",
            "--candidates_per_sample", "2", "--ensemble_size", "2", "--heldout_audit_members", "0",
            "--num_train_epochs", "1", "--member_num_train_epochs", "1", "--max_new_tokens", "24",
            "--publish_cycles", "false",
        ]
    )  # fmt: skip
    assert [c.cycle for c in history.cycles] == [0, 1]
    synthetic = load_from_disk(str(tmp_path / "topics" / "cycle-1" / "synthetic"))
    assert set(synthetic["label"]) <= {0, 1, 2}
    for prompt, label in zip(synthetic["synth_prompt"], synthetic["label"]):
        assert "movie" not in prompt and "review" not in prompt
        assert f"one new {['science', 'sports', 'world politics'][label]} news sentence" in prompt

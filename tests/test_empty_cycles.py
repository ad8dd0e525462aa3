"""A cycle whose filters would keep too few candidates: the label floor tops up, and an empty cycle stops the loop
(the run ends on its completed cycles) instead of failing — what a user meets with the default config on a data set
harder than the one it was set for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset
from PIL import Image
from tiny import make_args, make_trainer, make_vector_dataset

from hf_active_synth import ActiveSynthesisTrainer
from hf_active_synth.filters import FilterContext
from hf_active_synth.filters.generic import LabelProbabilityFloorFilter, label_filters


def _scored(probabilities):
    return Dataset.from_dict(
        {"text": [f"s{i}" for i in range(len(probabilities))], "label": [0] * len(probabilities),
         "synth_label_probability": list(probabilities)}
    )  # fmt: skip


def _context(num_requested):
    return FilterContext("text", "label", Dataset.from_dict({"text": [], "label": []}), 2, None, num_requested)


def test_the_floor_tops_up_to_the_requested_count_with_the_most_probable_rows():
    candidates = _scored([0.9, 0.1, 0.3, 0.45, 0.3, 0.05])
    strict = LabelProbabilityFloorFilter(0.5)
    assert strict(candidates, _context(4))["text"] == ["s0"]
    topped = LabelProbabilityFloorFilter(0.5, top_up=True)
    # s0 clears the floor; then the most probable of the rest, ties (s2, s4) in row order; row order is kept.
    assert topped(candidates, _context(4))["text"] == ["s0", "s2", "s3", "s4"] and topped.top_up_ == 3
    assert topped(candidates, _context(1))["text"] == ["s0"] and topped.top_up_ == 0  # enough clear it: no top-up
    assert len(topped(candidates, _context(50))) == 6  # never more than there are
    assert topped(candidates, _context(None))["text"] == ["s0"]  # nothing requested: a plain floor
    assert label_filters(0.9, 0.5, top_up=True)[1].top_up and not label_filters(0.9, 0.5)[1].top_up


class _RejectEverything:
    name = "reject_everything"
    checks_real_data = False

    def __call__(self, candidates, context):
        return candidates.select([])


def test_a_cycle_with_no_survivor_stops_the_run_on_its_completed_cycles(tmp_path):
    trainer = make_trainer(tmp_path, num_cycles=2)
    trainer.filters = [*trainer.filters, _RejectEverything()]
    history = trainer.run_cycles()
    assert [c.cycle for c in history.cycles] == [0]
    assert "no candidate of cycle 1 survived the filters" in history.stop_reason
    assert "reject_everything" in history.stop_reason
    written = json.loads((tmp_path / "run" / "history.json").read_text())
    assert written["stop_reason"] == history.stop_reason and len(written["cycles"]) == 1
    assert trainer.synthetic_dataset is None


@pytest.mark.e2e
def test_the_default_image_config_runs_on_an_unseen_image_folder(tmp_path):
    """`--dataset_name` on a local imagefolder of 3 classes of 20x20 RGB shapes: the digits config, with a label floor
    of 0.5, trains an ensemble too weak for the floor, which then tops the cycle up instead of stopping the run."""
    from hf_active_synth.cli import main as cli_main

    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 10)):
        for label, name in enumerate(("square", "bar", "dot")):
            folder = tmp_path / "shapes" / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 90, (20, 20, 3)).astype(np.uint8)
                x, y = rng.integers(4, 12, size=2)
                shape = {0: (slice(y, y + 6), slice(x, x + 6)), 1: (slice(2, 18), slice(x, x + 3)),
                         2: (slice(y, y + 3), slice(x, x + 3))}[label]  # fmt: skip
                pixels[shape] = rng.integers(150, 256, 3)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    root = Path(__file__).resolve().parents[1]
    values = yaml.safe_load((root / "recipes" / "configs" / "digits.yaml").read_text())
    assert values["min_label_probability"] > 0  # the default has a floor; 0.5 here is one a 2-epoch ensemble misses
    values.update(min_label_probability=0.5, output_dir=str(tmp_path / "run"), dataset_name=str(tmp_path / "shapes"))
    config_file = tmp_path / "shapes.yaml"
    config_file.write_text(yaml.safe_dump(values))
    cli_main(
        ["run", str(config_file), "--train_per_class", "5", "--ddpm_train_steps", "30", "--num_inference_steps", "4",
         "--num_cycles", "1", "--synthetic_samples_per_cycle", "12", "--targets_per_class", "2",
         "--ensemble_size", "2", "--num_train_epochs", "2", "--member_num_train_epochs", "2"]
    )  # fmt: skip
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [c["cycle"] for c in history["cycles"]] == [0, 1]
    cycle = history["cycles"][1]
    assert cycle["num_accepted"] >= 1 and set(cycle["accepted_per_class"]) == {"0", "1", "2"}
    assert cycle["filter_counts"]["label_probability_floor"] >= min(12, cycle["filter_counts"]["label_agreement"])


class _BatchNormMLP(torch.nn.Module):
    """A BatchNorm classifier like the embedded digits ResNet: a batch of one fails in training mode."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 2))

    def forward(self, features):
        return self.net(features)


@pytest.mark.parametrize("rows, drops", [(17, True), (9, True), (16, False), (18, False), (5, False)])
def test_a_last_batch_of_one_is_dropped_and_only_then(tmp_path, rows, drops):
    args = make_args(tmp_path, input_column="features", per_device_train_batch_size=8, num_train_epochs=1)
    trainer = ActiveSynthesisTrainer(
        model=_BatchNormMLP(), args=args, train_dataset=make_vector_dataset(rows), eval_dataset=make_vector_dataset(4)
    )
    trainer.train_dataset = trainer._real_train_inputs
    batches = [len(batch["labels"]) for batch in trainer.get_train_dataloader()]
    assert batches == [8] * (rows // 8) + ([rows % 8] if rows % 8 and not drops else [])
    assert args.dataloader_drop_last is False  # the user's config is left as it was
    trainer.train()  # 17 or 9 rows in batches of 8 would end on a batch of one: BatchNorm refuses it

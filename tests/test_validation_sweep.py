"""`recipes/sweeps/validation_sweep.py`: the table reads validation figures of finished runs only, paired."""

from __future__ import annotations

import json

import pytest
import yaml
from script_loader import load_script


@pytest.fixture(scope="module")
def sweep():
    return load_script("recipes/sweeps/validation_sweep.py")


def write_run(root, variant, method, split, seed, val_acc, test_acc=0.0, oracle=0.9, finished=True):
    run = root / variant / method / f"split-{split}" / f"seed-{seed}"
    run.mkdir(parents=True)
    cycles = [
        {"cycle": 0, "eval_metrics": {"eval_accuracy": 0.5}, "label_audit": {}, "num_synthetic_total": 0},
        {"cycle": 1, "eval_metrics": {"eval_accuracy": val_acc}, "label_audit": {"oracle_label_agreement": oracle},
         "num_synthetic_total": 100},
    ]  # fmt: skip
    config = {"num_cycles": 1, "synthetic_samples_per_cycle": 100}
    (run / "history.json").write_text(json.dumps({"cycles": cycles, "loaded_cycle": 1, "config": config}))
    if finished:
        (run / "final_metrics.json").write_text(json.dumps({"clean_accuracy": test_acc}))


def test_the_table_pairs_validation_accuracy_and_ignores_test_and_unfinished_runs(sweep, tmp_path):
    spec_file = tmp_path / "sweep.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "recipe": "image",
                "config": "recipes/configs/digits.yaml",
                "methods": ["random_synthetic", "active_synthesis"],
                "baseline": "random_synthetic",
                "reference": "base",
                "variants": {"base": {}, "new": {"strength": 0.7}},
            }
        )
    )
    for variant, lift in (("base", 0.0), ("new", 0.02)):
        for index, (split, seed) in enumerate(((0, 0), (0, 1), (1, 0))):
            # Test accuracy moves the other way: the table must not read it.
            write_run(tmp_path, variant, "random_synthetic", split, seed, 0.80 + lift + index / 100, test_acc=0.99)
            write_run(tmp_path, variant, "active_synthesis", split, seed, 0.81 + lift + index / 100, test_acc=0.1)
    write_run(tmp_path, "new", "active_synthesis", 1, 1, 0.0, finished=False)  # unfinished: left out
    spec = sweep.load_variants(spec_file)
    markdown, data = sweep.table(spec, tmp_path)
    rows = {line.split(" | ")[0].strip("| "): line for line in markdown.splitlines()[2:]}
    assert "+0.0100 [+0.0100, +0.0100] (3/3)" in rows["base"]  # active − random, every pair
    assert "+0.0200 [+0.0200, +0.0200] (3/3)" in rows["new"]  # each method against the reference variant
    assert rows["new"].split(" | ")[1] == "3"  # the baseline's pairs
    # Active reaches random's final validation accuracy (0.80 + i/100) at 100 * (0.30 + i/100) / (0.31 + i/100)
    # samples along its curve from (0, 0.5) to (100, 0.81 + i/100): the median pair needs 96.9 of 100.
    assert rows["base"].rstrip(" |").endswith("97 (3/3 reach it)")
    assert set(data["new"]["runs"]["active_synthesis"]) == {"split-0/seed-0", "split-0/seed-1", "split-1/seed-0"}


def test_variants_without_runs_on_disk_come_from_an_earlier_tables_json(sweep, tmp_path):
    spec_file = tmp_path / "sweep.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "recipe": "text",
                "config": "recipes/configs/sst2.yaml",
                "methods": ["random_synthetic", "active_synthesis"],
                "reference": "base",
                "variants": {"base": {}, "new": {"prompt_style": "edit"}},
            }
        )
    )
    spec = sweep.load_variants(spec_file)
    for index, (split, seed) in enumerate(((0, 0), (1, 0))):
        write_run(tmp_path / "earlier", "base", "random_synthetic", split, seed, 0.70 + index / 100)
        write_run(tmp_path / "earlier", "base", "active_synthesis", split, seed, 0.69 + index / 100)
        write_run(tmp_path / "now", "new", "random_synthetic", split, seed, 0.72 + index / 100)
        write_run(tmp_path / "now", "new", "active_synthesis", split, seed, 0.75 + index / 100)
    # The earlier session's runs survive only as its table's JSON; this session has the new variant's runs.
    _, earlier = sweep.table(spec, tmp_path / "earlier")
    write_run(tmp_path / "now", "base", "active_synthesis", 0, 0, 0.0, finished=False)  # unfinished, not a run
    markdown, data = sweep.table(spec, tmp_path / "now", previous=json.loads(json.dumps(earlier)))
    rows = {line.split(" | ")[0].strip("| "): line for line in markdown.splitlines()[2:]}
    assert "-0.0100 [-0.0100, -0.0100] (0/2)" in rows["base"]
    assert "+0.0300 [+0.0300, +0.0300] (2/2)" in rows["new"]  # new − random
    assert "+0.0600 [+0.0600, +0.0600] (2/2)" in rows["new"]  # active: new variant vs the earlier reference runs
    assert data["base"] == earlier["base"]


def test_a_variant_file_without_its_entries_is_refused(sweep, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"recipe": "image", "config": "x.yaml", "methods": []}))
    with pytest.raises(ValueError, match="variants"):
        sweep.load_variants(bad)
    bad.write_text(yaml.safe_dump({"recipe": "audio", "config": "x", "methods": [], "variants": {}}))
    with pytest.raises(ValueError, match="recipe must be one of"):
        sweep.load_variants(bad)

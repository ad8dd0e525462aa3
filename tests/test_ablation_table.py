"""`recipes/sweeps/ablation_table.py`: each mechanism's row is recomputed, paired, from a committed sweep's runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from script_loader import ROOT, load_script

KEYS = ("split-0/seed-0", "split-0/seed-1", "split-1/seed-0")


@pytest.fixture(scope="module")
def ablation():
    return load_script("recipes/sweeps/ablation_table.py")


def runs(values, oracle=0.99):
    return {key: {"val_acc": value, "oracle": oracle} for key, value in zip(KEYS, values)}


def write_sweep(path: Path) -> None:
    table = {
        "default": {"options": {}, "runs": {"random_synthetic": runs([0.80, 0.82, 0.84]),
                                            "active_synthesis": runs([0.83, 0.84, 0.88])}},
        # The lever lowers random by 0.02 in every pair and moves active by +0.01, 0.00, -0.01.
        "lever": {"options": {"x": 1}, "runs": {"random_synthetic": runs([0.78, 0.80, 0.82]),
                                                "active_synthesis": runs([0.84, 0.84, 0.87], oracle=0.9)}},
    }  # fmt: skip
    path.write_text(json.dumps(table))


def write_ablation(path: Path, rows) -> None:
    path.write_text(yaml.safe_dump({"method": "active_synthesis", "baseline": "random_synthetic", "rows": rows}))


def test_a_row_separates_the_margin_the_method_and_the_baseline(ablation, tmp_path):
    write_sweep(tmp_path / "sweep.json")
    row = {"mechanism": "the lever", "table": "sweep.json", "variant": "lever", "reference": "default"}
    write_ablation(tmp_path / "ablation.yaml", [row])
    markdown, records = ablation.ablation_table(ablation.load_ablation(tmp_path / "ablation.yaml"), root=tmp_path)
    cells = markdown.splitlines()[2].strip("| ").split(" | ")
    assert cells[0] == "the lever" and cells[2] == "3"
    assert cells[3].startswith("+0.0500 ")  # active − random within the lever: 0.06, 0.04, 0.05
    assert cells[4].startswith("+0.0200 ")  # the margin moved by +0.03, +0.02, +0.01
    assert cells[5].startswith("+0.0000 ") and cells[5].endswith("(1/3)")  # active alone: +0.01, 0, -0.01
    assert cells[6] == "-0.0200 [-0.0200, -0.0200] (0/3)"  # random alone, the same in every pair
    assert cells[7] == "0.900"
    assert records[0]["margin_moved"]["mean"] == pytest.approx(0.02)
    assert records[0]["method_moved"]["n"] == 3


def test_a_sweep_of_the_method_alone_fills_the_method_column_only(ablation, tmp_path):
    table = {"unguided": {"runs": {"active_synthesis": runs([0.9, 0.9, 0.9])}},
             "guided": {"runs": {"active_synthesis": runs([0.88, 0.89, 0.90])}}}  # fmt: skip
    (tmp_path / "guidance.json").write_text(json.dumps(table))
    row = {"mechanism": "guidance", "table": "guidance.json", "variant": "guided", "reference": "unguided"}
    write_ablation(tmp_path / "ablation.yaml", [row])
    markdown, records = ablation.ablation_table(ablation.load_ablation(tmp_path / "ablation.yaml"), root=tmp_path)
    cells = markdown.splitlines()[2].strip("| ").split(" | ")
    assert cells[3] == cells[4] == cells[6] == "–"
    assert cells[5].startswith("-0.0100 ")
    assert records[0]["margin_moved"] is None


def test_bad_ablation_files_name_what_is_missing(ablation, tmp_path):
    write_sweep(tmp_path / "sweep.json")
    write_ablation(tmp_path / "rowless.yaml", [{"mechanism": "m", "table": "sweep.json", "variant": "lever"}])
    with pytest.raises(ValueError, match=r"lacks \['reference'\]"):
        ablation.load_ablation(tmp_path / "rowless.yaml")
    (tmp_path / "empty.yaml").write_text("rows: []\n")
    with pytest.raises(ValueError, match="needs a 'method' entry"):
        ablation.load_ablation(tmp_path / "empty.yaml")
    row = {"mechanism": "m", "table": "sweep.json", "variant": "missing", "reference": "default"}
    write_ablation(tmp_path / "ablation.yaml", [row])
    with pytest.raises(KeyError, match="no variant 'missing'"):
        ablation.ablation_table(ablation.load_ablation(tmp_path / "ablation.yaml"), root=tmp_path)


def test_the_committed_digits_ablation_reads_every_row(ablation):
    """Every row of the shipped ablation file names a committed table and variants it holds."""
    spec = ablation.load_ablation(ROOT / "recipes" / "sweeps" / "digits_ablation.yaml")
    markdown, records = ablation.ablation_table(spec, root=ROOT)
    assert len(records) == len(spec["rows"]) == len(markdown.splitlines()) - 2
    assert all(record["method_moved"]["n"] >= 2 for record in records)

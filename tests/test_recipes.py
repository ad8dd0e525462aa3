"""The recipes and the `hf-active-synth` command, as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hf_active_synth.cli import main as cli_main
from hf_active_synth.recipes.parsing import parse_args_and_config

ROOT = Path(__file__).resolve().parents[1]
TINY_IMAGE_ARGS = [
    "--train_per_class",
    "5",
    "--ddpm_train_steps",
    "30",
    "--num_inference_steps",
    "4",
    "--num_cycles",
    "1",
    "--synthetic_samples_per_cycle",
    "10",
    "--targets_per_class",
    "1",
    "--candidates_per_sample",
    "2",
    "--ensemble_size",
    "2",
    "--num_train_epochs",
    "2",
    "--member_num_train_epochs",
    "2",
]


@pytest.mark.parametrize("recipe", ["image_classification", "text_classification"])
def test_recipe_help(recipe):
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / f"{recipe}.py"), "--help"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and "--synthetic_loss_weight" in result.stdout and "--compare" in result.stdout


def test_yaml_config_with_command_line_overrides(tmp_path):
    from hf_active_synth.recipes.image_classification import make_parser

    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"recipe": "image", "num_cycles": 5, "guidance_scale": 0.2}))
    script_args, config, model_args = parse_args_and_config(
        make_parser(), ["--config", str(config_file), "--num_cycles", "2", "--output_dir", str(tmp_path)]
    )
    assert config.num_cycles == 2 and script_args.guidance_scale == 0.2 and config.input_column == "image"
    config_file.write_text(yaml.safe_dump({"num_cycels": 5}))
    with pytest.raises(ValueError, match="num_cycels"):
        parse_args_and_config(make_parser(), ["--config", str(config_file)])


@pytest.mark.e2e
def test_image_recipe_end_to_end_and_report(tmp_path, capsys):
    output_dir = tmp_path / "digits"
    config_file = tmp_path / "digits.yaml"
    values = yaml.safe_load((ROOT / "recipes" / "configs" / "digits.yaml").read_text())
    values["output_dir"] = str(output_dir)
    config_file.write_text(yaml.safe_dump(values))
    cli_main(["run", str(config_file), *TINY_IMAGE_ARGS])
    history = json.loads((output_dir / "history.json").read_text())
    assert [c["cycle"] for c in history["cycles"]] == [0, 1]
    assert history["cycles"][1]["num_accepted"] == 10
    assert (output_dir / "ddpm").is_dir() and (output_dir / "hub").is_dir()
    cli_main(["report", str(output_dir)])
    assert "active_synthesis" in capsys.readouterr().out
    assert (output_dir / "report" / "report.md").is_file()


@pytest.mark.e2e
def test_text_recipe_end_to_end(tmp_path, sst2_dir):
    from hf_active_synth.recipes.text_classification import cli

    history = cli(
        [
            "--config",
            str(ROOT / "recipes" / "configs" / "sst2.yaml"),
            "--dataset_path",
            str(sst2_dir),
            "--output_dir",
            str(tmp_path / "sst2"),
            "--train_budget",
            "16",
            "--eval_size",
            "32",
            "--pool_size",
            "32",
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
            "--num_train_epochs",
            "1",
            "--member_num_train_epochs",
            "1",
            "--max_new_tokens",
            "24",
            "--publish_cycles",
            "false",
        ]
    )
    assert [c.cycle for c in history.cycles] == [0, 1]
    assert 1 <= history.cycles[1].num_accepted <= 4
    synthetic = tmp_path / "sst2" / "cycle-1" / "synthetic"
    assert synthetic.is_dir()

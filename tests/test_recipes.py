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
    # The default label floor (0.5) is for a trained ensemble; two members trained for 2 epochs on 50 digits are sure
    # of nothing, so the floor would reject every candidate (the recipe would then top the cycle up with the most
    # probable ones, tests/test_empty_cycles.py): a low floor keeps these runs about the recipe.
    "--min_label_probability",
    "0.05",
]


@pytest.mark.parametrize("recipe", ["image_classification", "text_classification"])
def test_recipe_help(recipe):
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / f"{recipe}.py"), "--help"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout and "--synthetic_loss_weight" in result.stdout and "--compare" in result.stdout
    assert "--verbose" in result.stdout and "--traceback" in result.stdout and "--show_cycle_progress" in result.stdout


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


def test_a_nan_float_option_fails_at_parse_time_naming_it(tmp_path):
    from hf_active_synth.recipes.image_classification import ImageScriptArguments, make_parser

    with pytest.raises(ValueError, match="`--guidance_scale` must be a finite number, got nan"):
        parse_args_and_config(make_parser(), ["--guidance_scale", "nan", "--output_dir", str(tmp_path)])
    config_file = tmp_path / "run.yaml"
    config_file.write_text("label_scale: .inf\n")
    with pytest.raises(ValueError, match="`--label_scale` must be a finite number, got inf"):
        parse_args_and_config(make_parser(), ["--config", str(config_file)])
    with pytest.raises(ValueError, match="`strength` must be a finite number"):
        ImageScriptArguments(strength=float("nan"))  # from Python too


def test_an_expected_error_is_one_line_with_the_fix(tmp_path):
    command = [sys.executable, str(ROOT / "recipes" / "image_classification.py"), "--output_dir", str(tmp_path)]
    result = subprocess.run([*command, "--guidance_scale", "nan"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: `--guidance_scale` must be a finite number, got nan. (add --traceback for the full traceback)"
    ]
    result = subprocess.run(
        [*command, "--guidance_scale", "nan", "--traceback"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr


def test_the_command_prints_its_errors_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["report", str(tmp_path / "nothing")])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: No history.json in ") and line.endswith("(add --traceback for the full traceback)")
    with pytest.raises(FileNotFoundError):
        cli_main(["report", str(tmp_path / "nothing"), "--traceback"])
    (tmp_path / "run.yaml").write_text("num_cycles: 1\n")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["run", str(tmp_path / "run.yaml")])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {tmp_path / 'run.yaml'} must name its recipe with `recipe: image`")


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

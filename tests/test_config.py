"""ActiveSynthesisConfig from the command line and from YAML."""

import dataclasses
import subprocess
import sys

import pytest
import yaml
from transformers import HfArgumentParser

from hf_active_synth import ActiveSynthesisConfig


def test_command_line(tmp_path):
    (config,) = HfArgumentParser(ActiveSynthesisConfig).parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--num_cycles",
            "5",
            "--synthetic_loss_weight",
            "0.5",
            "--uncertainty_method",
            "lora_ensemble",
            "--acquisition_function",
            "variance",
            "--target_strategy",
            "random",
            "--guidance",
            "false",
        ]
    )
    assert config.num_cycles == 5 and config.synthetic_loss_weight == 0.5
    assert config.uncertainty_method == "lora_ensemble" and config.acquisition_function == "variance"
    # Each mechanism is its own switch: random targets and no guidance leave selection alone.
    assert config.target_strategy == "random" and not config.guidance and config.selection_strategy == "top"


def test_targeting_guidance_and_selection_default_to_the_product(tmp_path):
    config = ActiveSynthesisConfig(output_dir=str(tmp_path))
    assert config.target_strategy == "uncertain" and config.guidance and config.selection_strategy == "top"
    assert config.targeted is None


def test_rejects_an_unknown_target_strategy(tmp_path):
    with pytest.raises(ValueError, match="'uncertain', 'unlearned' or 'random'"):
        ActiveSynthesisConfig(output_dir=str(tmp_path), target_strategy="hardest")
    with pytest.raises(SystemExit):  # the command line offers the choices only
        HfArgumentParser(ActiveSynthesisConfig).parse_args_into_dataclasses(
            ["--output_dir", str(tmp_path), "--target_strategy", "hardest"]
        )


def test_deprecated_targeted_false_means_the_three_random_baseline_switches(tmp_path):
    with pytest.warns(FutureWarning, match="target_strategy"):
        (config,) = HfArgumentParser(ActiveSynthesisConfig).parse_args_into_dataclasses(
            ["--output_dir", str(tmp_path), "--targeted", "false"]
        )
    assert config.target_strategy == "random" and not config.guidance and config.selection_strategy == "random"
    # Translated once: a copy (as `member_args` and comparisons make) keeps the new fields and can change them.
    assert config.targeted is None
    copy = dataclasses.replace(config, selection_strategy="top")
    assert copy.target_strategy == "random" and copy.selection_strategy == "top"
    with pytest.warns(FutureWarning):
        kept = ActiveSynthesisConfig(output_dir=str(tmp_path), targeted=True)
    assert kept.target_strategy == "uncertain" and kept.guidance and kept.selection_strategy == "top"


def test_defaults_follow_the_proposal(tmp_path):
    config = ActiveSynthesisConfig(output_dir=str(tmp_path))
    assert config.synthetic_loss_weight == 0.3 and config.ensemble_size == 5


def test_yaml(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path), "num_cycles": 2, "plateau_patience": 3}))
    (config,) = HfArgumentParser(ActiveSynthesisConfig).parse_yaml_file(str(path))
    assert config.num_cycles == 2 and config.plateau_patience == 3


def test_help_renders():
    script = (
        "from transformers import HfArgumentParser; from hf_active_synth import ActiveSynthesisConfig; "
        "HfArgumentParser(ActiveSynthesisConfig).parse_args(['--help'])"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--synthetic_loss_weight" in result.stdout and "--plateau_patience" in result.stdout
    assert "--target_strategy" in result.stdout and "--guidance" in result.stdout


def test_one_table_names_the_estimators():
    from typing import get_args

    from hf_active_synth.config import UncertaintyMethod
    from hf_active_synth.uncertainty import ESTIMATORS, UncertaintyEstimator, make_estimator

    assert set(get_args(UncertaintyMethod)) == set(ESTIMATORS)
    for name in ESTIMATORS:
        estimator = make_estimator(name, num_members=3, seed=7)
        assert isinstance(estimator, UncertaintyEstimator)
        assert estimator.num_members == 3 and estimator.seed == 7


@pytest.mark.parametrize("name", ["synthetic_loss_weight", "plateau_min_delta", "learning_rate", "weight_decay"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_every_float_field_rejects_nan_and_infinity(tmp_path, name, value):
    # `nan < 0` is False: without this check a NaN λ would pass every range check and poison the loss.
    with pytest.raises(ValueError, match=f"`{name}` must be a finite number"):
        ActiveSynthesisConfig(output_dir=str(tmp_path), **{name: value})
    with pytest.raises(ValueError, match=f"`{name}` must be a finite number"):
        HfArgumentParser(ActiveSynthesisConfig).parse_args_into_dataclasses(
            ["--output_dir", str(tmp_path), f"--{name}={value}"]
        )


def test_pin_memory_is_off_without_an_accelerator(tmp_path, monkeypatch):
    from hf_active_synth import config as config_module

    # Pinned memory only speeds up copies to an accelerator; without one, torch warns at every DataLoader.
    monkeypatch.setattr(config_module, "accelerator_available", lambda: False)
    assert not ActiveSynthesisConfig(output_dir=str(tmp_path)).dataloader_pin_memory
    monkeypatch.setattr(config_module, "accelerator_available", lambda: True)
    assert ActiveSynthesisConfig(output_dir=str(tmp_path)).dataloader_pin_memory
    assert not ActiveSynthesisConfig(output_dir=str(tmp_path), dataloader_pin_memory=False).dataloader_pin_memory

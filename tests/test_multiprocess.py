"""Multi-process execution through Accelerate: the image recipe under `accelerate launch` with 2 CPU processes, the
launch configs under `recipes/accelerate_configs/`, and the guards that keep N processes from running N separate
loops.

On a machine without GPUs, Accelerate 1.x starts 2 processes only through torchrun (`distributed_type: MULTI_GPU`):
`accelerate launch --cpu --num_processes 2` goes through `mpirun` and, without an MPI hostfile, starts one process.
So the launch here uses `recipes/accelerate_configs/cpu_2proc.yaml`, and the test checks that 2 processes really
shared the work.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from tiny import WordSwapGenerator, make_bert, make_text_dataset, make_tokenizer

from hf_active_synth import ActiveSynthesisConfig, ActiveSynthesisTrainer
from hf_active_synth.cycle import CycleStore
from hf_active_synth.recipes import parsing

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "accelerate_configs"
SAMPLES_PER_CYCLE = 20
NUM_CYCLES = 1
# The cheapest real run of the image recipe: a 30-step DDPM, 5 denoising steps, 2 ensemble members, 50 real images.
TINY_IMAGE_RUN = [
    "--verbose", "true",
    "--ddpm_train_steps", "30",
    "--num_inference_steps", "5",
    "--num_cycles", str(NUM_CYCLES),
    "--synthetic_samples_per_cycle", str(SAMPLES_PER_CYCLE),
    "--ensemble_size", "2",
    "--num_train_epochs", "2",
    "--member_num_train_epochs", "2",
    "--train_per_class", "5",
]  # fmt: skip
GENERATED = re.compile(r"process (\d+)/(\d+) generated (\d+) candidates for (\d+) of (\d+) targets")


def launch_image_recipe(output_dir: Path) -> str:
    """Runs `accelerate launch --config_file cpu_2proc.yaml recipes/image_classification.py ...`; returns its log."""
    command = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--config_file", str(CONFIGS / "cpu_2proc.yaml"),
        "--num_processes", "2",
        "--main_process_port", "0",  # a free port: runs of other test sessions may be using 29500
        "--mixed_precision", "no",
        "--dynamo_backend", "no",
        str(ROOT / "recipes" / "image_classification.py"),
        "--output_dir", str(output_dir),
        *TINY_IMAGE_RUN,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("ACCELERATE_USE_CPU", None)  # the recipe must work this out itself
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"accelerate launch failed ({result.returncode}):\n{log[-6000:]}"
    return log


@pytest.mark.slow
def test_image_recipe_under_two_processes(tmp_path):
    log = launch_image_recipe(tmp_path / "run")

    # Both processes generated, each for its own half of the targets.
    reports = [tuple(map(int, match)) for match in GENERATED.findall(log)]
    assert sorted(r[0] for r in reports) == sorted([0, 1] * NUM_CYCLES), log[-4000:]
    assert {r[1] for r in reports} == {2}
    for _, _, candidates, local_targets, all_targets in reports:
        assert 0 < local_targets < all_targets and candidates > 0
    assert sum(r[3] for r in reports) == sum(r[4] for r in reports) // 2  # the shards partition the targets

    # One set of artifacts: every cycle once, no staging leftovers, each cycle published once.
    store = CycleStore(tmp_path / "run")
    assert store.completed_cycles() == list(range(NUM_CYCLES + 1))
    cycle_entries = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("cycle-"))
    assert cycle_entries == [f"cycle-{k}" for k in range(NUM_CYCLES + 1)]
    for cycle in range(NUM_CYCLES + 1):
        assert log.count(f"Cycle {cycle} written") == 1

    # Exactly the budget per cycle, candidates from both shards, no duplicate synthetic inputs.
    for cycle in range(1, NUM_CYCLES + 1):
        result = store.load_result(cycle)
        assert result.num_accepted == SAMPLES_PER_CYCLE
        assert result.candidates_generated == sum(r[2] for r in reports)
    synthetic = store.load_synthetic(NUM_CYCLES)
    assert len(synthetic) == SAMPLES_PER_CYCLE * NUM_CYCLES
    images = [np.asarray(image).tobytes() for image in synthetic["image"]]
    assert len(set(images)) == len(images)
    assert len(set(synthetic["synth_sample_seed"])) == len(synthetic)

    # A second identical 2-process run merges to the same synthetic data.
    launch_image_recipe(tmp_path / "again")
    again = CycleStore(tmp_path / "again").load_synthetic(NUM_CYCLES)
    assert again.column_names == synthetic.column_names
    for column in synthetic.column_names:
        if column == "image":
            assert [np.asarray(image).tobytes() for image in again["image"]] == images
        else:
            assert again[column] == synthetic[column], column


def test_run_cycles_refuses_processes_that_are_not_one_group(tmp_path, monkeypatch):
    trainer = ActiveSynthesisTrainer(
        model=make_bert(),
        args=ActiveSynthesisConfig(output_dir=str(tmp_path / "run"), use_cpu=True, num_cycles=1, max_length=16),
        train_dataset=make_text_dataset(8),
        eval_dataset=make_text_dataset(8, seed=1),
        processing_class=make_tokenizer(),
        generator=WordSwapGenerator(),
    )
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched as one of 2 processes, but Accelerate set up a single one
    with pytest.raises(ValueError, match="one of 2"):
        trainer.run_cycles()
    assert not list((tmp_path / "run").glob("cycle-*"))  # nothing was trained or saved


def test_recipes_choose_cpu_processes_without_accelerator(monkeypatch):
    monkeypatch.setattr(parsing, "_has_accelerator", lambda: False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "")  # registered, so the test restores the variable's absence
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not parsing.use_cpu_processes_without_accelerator()
    assert os.environ["ACCELERATE_USE_CPU"] == ""
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert parsing.use_cpu_processes_without_accelerator()
    assert os.environ["ACCELERATE_USE_CPU"] == "true"
    monkeypatch.setenv("ACCELERATE_USE_CPU", "")
    monkeypatch.setattr(parsing, "_has_accelerator", lambda: True)
    assert not parsing.use_cpu_processes_without_accelerator()
    assert os.environ["ACCELERATE_USE_CPU"] == ""


EXPECTED_CONFIGS = {
    "single_gpu.yaml": ("NO", 1),
    "multi_gpu.yaml": ("MULTI_GPU", 8),
    "deepspeed_zero2.yaml": ("DEEPSPEED", 8),
    "fsdp.yaml": ("FSDP", 8),
    "multi_node.yaml": ("MULTI_GPU", 16),
    "cpu_2proc.yaml": ("MULTI_GPU", 2),
}


def test_accelerate_configs_parse_like_accelerate_launch():
    assert {path.name for path in CONFIGS.glob("*.yaml")} == set(EXPECTED_CONFIGS)
    launch_options = {action.dest for action in launch_command_parser()._actions}
    for name, (distributed_type, num_processes) in EXPECTED_CONFIGS.items():
        path = CONFIGS / name
        text = path.read_text()
        assert text.startswith("#") and f"--config_file recipes/accelerate_configs/{name}" in text, name
        config = ClusterConfig.from_yaml_file(str(path))  # unknown top-level keys raise
        assert config.distributed_type.value == distributed_type and config.num_processes == num_processes, name
        # Nested keys become `accelerate launch` options (fsdp_* / deepspeed ones): each must be one it knows.
        raw = yaml.safe_load(text)
        nested = [*raw.get("deepspeed_config", {}), *raw.get("fsdp_config", {})]
        assert set(nested) <= launch_options, (name, sorted(set(nested) - launch_options))
        # What `accelerate launch --config_file` does with the file before starting any process.
        args, defaults, _ = _validate_launch_command(
            launch_command_parser().parse_args(["--config_file", str(path), "script.py"])
        )
        assert args.num_processes == num_processes and defaults.distributed_type.value == distributed_type
    multi_node = yaml.safe_load((CONFIGS / "multi_node.yaml").read_text())
    assert multi_node["num_machines"] == 2 and multi_node["main_process_ip"] and multi_node["machine_rank"] == 0

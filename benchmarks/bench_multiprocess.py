"""Throughput of the loop's sharded stages with 2 processes versus 1, through `accelerate launch`.

Measures the two stages `ActiveSynthesisTrainer` spreads over processes, on the digits image recipe (tiny ResNet
classifier, deep ensemble, class-conditional DDPM guided by ensemble disagreement), through the trainer's own code:

* **scoring**: `trainer.predict_member_logits(pool)`: every process preprocesses and scores its share of the rows with
  the K ensemble members; the shards are gathered in order (`split_between_processes` + `gather_object`). Rows/s.
* **generation**: `trainer._generate_stage(targets, cycle)`: every process runs guided diffusion for its share of the
  targets; the candidate Datasets are gathered. Candidates/s.

Each is timed on process 0 from a barrier to the end of the gather, i.e. the wall time until every process holds the
merged result; the best of `--repeats` runs counts (after one untimed warm-up). Three launches of the same worker:

* 1 process, `OMP_NUM_THREADS=1`  (`accelerate launch --cpu --num_processes 1`)
* 1 process, `OMP_NUM_THREADS=2`
* 2 processes, `OMP_NUM_THREADS=1` each  (`accelerate launch --config_file recipes/accelerate_configs/cpu_2proc.yaml`)

Usage (from the repository root; CPU only, a few minutes on 2 cores):

```bash
python benchmarks/bench_multiprocess.py                       # table + benchmarks/results/multiprocess.json
python benchmarks/bench_multiprocess.py --quick --output /tmp/multiprocess.json       # smoke run, about 1.5 min
```
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CPU_2PROC = ROOT / "recipes" / "accelerate_configs" / "cpu_2proc.yaml"
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "multiprocess.json"
# (label, number of processes, OMP threads per process)
SETTINGS = [("1 proc x 1 thread", 1, 1), ("1 proc x 2 threads", 1, 2), ("2 procs x 1 thread", 2, 1)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help="Internal: run the measurement (under accelerate).")
    parser.add_argument("--result_file", type=Path, help="Internal: where the worker writes its JSON.")
    parser.add_argument("--work_dir", type=Path, help="Internal: shared folder (DDPM cache, member outputs).")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file.")
    parser.add_argument("--ensemble_size", type=int, default=5, help="Ensemble members, K.")
    parser.add_argument("--pool_copies", type=int, default=4, help="Copies of the digits pool to score (~975 each).")
    parser.add_argument("--num_targets", type=int, default=40, help="Uncertain targets to generate for.")
    parser.add_argument("--candidates_per_sample", type=int, default=2, help="Candidates per target.")
    parser.add_argument("--num_inference_steps", type=int, default=20, help="Guided denoising steps per sample.")
    parser.add_argument("--ddpm_train_steps", type=int, default=60, help="DDPM training steps (speed is unaffected).")
    parser.add_argument("--repeats", type=int, default=2, help="Timed runs per stage; the best counts.")
    parser.add_argument("--timeout", type=int, default=900, help="Seconds allowed per launch.")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes (K=2, 1 pool copy, 10 targets, 5 steps).")
    args = parser.parse_args(argv)
    if args.quick and not args.worker:
        args.ensemble_size, args.pool_copies, args.num_targets, args.num_inference_steps = 2, 1, 10, 5
        args.ddpm_train_steps, args.repeats = 30, 1
    return args


def recipe_args(args: argparse.Namespace) -> list[str]:
    return [
        "--output_dir", str(args.work_dir / "run"),
        "--train_per_class", "10",
        "--ensemble_size", str(args.ensemble_size),
        "--num_train_epochs", "2",
        "--member_num_train_epochs", "2",
        "--ddpm_train_steps", str(args.ddpm_train_steps),
        "--num_inference_steps", str(args.num_inference_steps),
        "--synthetic_samples_per_cycle", str(args.num_targets),
        "--targets_per_class", str(max(1, args.num_targets // 10)),
        "--candidates_per_sample", str(args.candidates_per_sample),
        "--publish_cycles", "false",
        "--report_to", "none",
    ]  # fmt: skip


def worker(args: argparse.Namespace) -> None:
    """Builds the digits recipe's trainer, fits the ensemble, then times sharded scoring and generation."""
    import torch
    from datasets import concatenate_datasets

    from hf_active_synth.recipes.image_classification import build_trainer, load_task, make_parser
    from hf_active_synth.recipes.parsing import parse_args_and_config

    script_args, config, model_args = parse_args_and_config(make_parser(), recipe_args(args))
    task = load_task(script_args, config, model_args)
    trainer = build_trainer(task, config, script_args)
    accelerator = trainer.accelerator
    trainer.train()
    trainer.estimator.fit(trainer)
    pool = concatenate_datasets([task.pool] * args.pool_copies)

    def timed(stage: Any) -> tuple[float, Any]:
        accelerator.wait_for_everyone()
        start = time.perf_counter()
        result = stage()  # ends with a gather: every process holds the merged result
        return time.perf_counter() - start, result

    trainer.predict_member_logits(task.pool.select(range(64)))  # warm-up
    scoring = [timed(lambda: trainer.predict_member_logits(pool)) for _ in range(args.repeats)]
    logits = scoring[-1][1]
    assert logits.shape[0] == len(pool), logits.shape

    pool_logits = trainer.predict_member_logits(trainer.pool_dataset)
    targets = trainer._choose_targets(pool_logits, cycle=1)
    trainer._generate_stage(targets[: accelerator.num_processes], cycle=1)  # warm-up (pipeline, guidance)
    generation = [timed(lambda: trainer._generate_stage(targets, cycle=1)) for _ in range(args.repeats)]
    num_candidates = len(generation[-1][1])

    if accelerator.is_main_process:
        best_scoring = min(seconds for seconds, _ in scoring)
        best_generation = min(seconds for seconds, _ in generation)
        result = {
            "num_processes": accelerator.num_processes,
            "threads_per_process": torch.get_num_threads(),
            "scoring": {
                "rows": len(pool),
                "members": trainer.estimator.num_members,
                "seconds": [round(seconds, 3) for seconds, _ in scoring],
                "rows_per_second": len(pool) / best_scoring,
            },
            "generation": {
                "targets": len(targets),
                "candidates": num_candidates,
                "num_inference_steps": args.num_inference_steps,
                "seconds": [round(seconds, 3) for seconds, _ in generation],
                "candidates_per_second": num_candidates / best_generation,
            },
        }
        args.result_file.write_text(json.dumps(result, indent=2))
    accelerator.wait_for_everyone()


def launch(args: argparse.Namespace, num_processes: int, threads: int, result_file: Path) -> dict[str, Any]:
    accelerate = [sys.executable, "-m", "accelerate.commands.launch"]
    if num_processes == 1:
        accelerate += ["--cpu", "--num_processes", "1", "--num_machines", "1"]
    else:
        accelerate += [
            "--config_file",
            str(CPU_2PROC),
            "--num_processes",
            str(num_processes),
            "--main_process_port",
            "0",
        ]
    command = [
        *accelerate, "--mixed_precision", "no", "--dynamo_backend", "no",
        __file__, "--worker", "--result_file", str(result_file), "--work_dir", str(args.work_dir),
        "--ensemble_size", str(args.ensemble_size), "--pool_copies", str(args.pool_copies),
        "--num_targets", str(args.num_targets), "--candidates_per_sample", str(args.candidates_per_sample),
        "--num_inference_steps", str(args.num_inference_steps), "--ddpm_train_steps", str(args.ddpm_train_steps),
        "--repeats", str(args.repeats),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=args.timeout)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{(completed.stdout + completed.stderr)[-6000:]}")
    return json.loads(result_file.read_text())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-multiprocess-") as tmp:
        args.work_dir = Path(tmp)
        for label, num_processes, threads in SETTINGS:
            measured = launch(args, num_processes, threads, Path(tmp) / f"{num_processes}x{threads}.json")
            rows.append({"setting": label, **measured})
            print(
                f"{label}: scoring {measured['scoring']['rows_per_second']:.0f} rows/s, generation "
                f"{measured['generation']['candidates_per_second']:.2f} candidates/s",
                flush=True,
            )
    by_label = {row["setting"]: row for row in rows}
    two = by_label["2 procs x 1 thread"]
    ratios = {
        f"2 procs x 1 thread vs {label}": {
            "scoring": two["scoring"]["rows_per_second"] / by_label[label]["scoring"]["rows_per_second"],
            "generation": two["generation"]["candidates_per_second"]
            / by_label[label]["generation"]["candidates_per_second"],
        }
        for label in ("1 proc x 1 thread", "1 proc x 2 threads")
    }
    report = {
        "benchmark": "bench_multiprocess",
        "command": "python benchmarks/bench_multiprocess.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "date": datetime.date.today().isoformat(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "versions": _versions(),
            "cpu_count": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "result_file", "work_dir", "output")},
        "results": rows,
        "ratios": ratios,
    }
    print_table(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")
    return report


def _versions() -> dict[str, str]:
    import accelerate
    import diffusers
    import torch
    import transformers

    return {module.__name__: module.__version__ for module in (torch, transformers, accelerate, diffusers)}


def print_table(report: dict[str, Any]) -> None:
    print()
    print("| setting | scoring rows/s | generation candidates/s |")
    print("|---|---:|---:|")
    for row in report["results"]:
        print(
            f"| {row['setting']} | {row['scoring']['rows_per_second']:.0f} | "
            f"{row['generation']['candidates_per_second']:.2f} |"
        )
    for name, ratio in report["ratios"].items():
        print(f"| ratio {name} | {ratio['scoring']:.2f}x | {ratio['generation']:.2f}x |")


if __name__ == "__main__":
    main()

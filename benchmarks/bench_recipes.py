"""End-to-end cost of the default recipes, stage by stage, before and after a change, measured in one run.

Runs each recipe's default config (`recipes/configs/digits.yaml`, `recipes/configs/sst2.yaml`) from two source
trees — `--before`, a git revision checked out into a temporary worktree, and `--after`, by default this checkout —
one after the other in interleaved rounds, every run a fresh subprocess with `OMP_NUM_THREADS=1`. From each run's
`history.json` it takes the seconds of every stage of every synthesis cycle (`stage_seconds`; cycle 0, the real-only
training, is reported apart) and the generator's `generation_stats` (tokens/s and candidates/s for text), plus the
wall time of the whole command. The table gives, per recipe and stage, the median seconds per synthesis cycle for
each tree and their ratio.

The digits DDPM is trained once (an untimed one-cycle run of the `after` tree) and its cache copied into every
run's output folder: the recipes key it by their training images, which both trees share, so no timed run trains it.

    python benchmarks/bench_recipes.py --before 9b6ea87          # -> benchmarks/results/recipes.json
    python benchmarks/bench_recipes.py --before HEAD~3 --recipes digits --num-cycles 1 --repeats 1
    python benchmarks/bench_recipes.py --quick --before HEAD     # smoke run (tests/test_benchmarks.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SST2_PATH = ROOT.parent / "shared" / "data" / "sst2"


@dataclass(frozen=True)
class RecipeSpec:
    """One recipe as the benchmark runs it: its script, its default config and the options every run adds."""

    name: str
    script: str
    config: str
    extra_args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    caches: tuple[str, ...] = ()
    """Folders inside output_dir that a warm-up run fills and every timed run reuses (copied)."""


RECIPES = {
    "digits": RecipeSpec(
        name="digits",
        script="recipes/image_classification.py",
        config="recipes/configs/digits.yaml",
        quick_args=("--ddpm_train_steps", "5", "--synthetic_samples_per_cycle", "10", "--num_train_epochs", "1",
                    "--member_num_train_epochs", "1", "--ensemble_size", "2", "--num_inference_steps", "2",
                    "--min_label_probability", "0.01"),  # an untrained 2-member ensemble is sure of nothing
        caches=("ddpm",),
    ),
    "sst2": RecipeSpec(
        name="sst2",
        script="recipes/text_classification.py",
        config="recipes/configs/sst2.yaml",
        extra_args=("--dataset_path", str(SST2_PATH)),
        quick_args=("--train_budget", "8", "--eval_size", "16", "--pool_size", "16", "--synthetic_samples_per_cycle", "2",
                    "--targets_per_class", "1", "--num_train_epochs", "1", "--member_num_train_epochs", "1",
                    "--ensemble_size", "2", "--max_new_tokens", "4"),
    ),
}


@dataclass
class RunResult:
    """The figures of one recipe run."""

    tree: str
    wall_seconds: float
    cycle0_seconds: dict[str, float]
    cycle_seconds: list[dict[str, float]]
    generation_stats: list[dict[str, Any]] = field(default_factory=list)


def _run_recipe(
    spec: RecipeSpec, tree: Path, output_dir: Path, num_cycles: int, quick: bool, cache_from: Path | None
) -> tuple[float, Path]:
    """Runs `spec` from `tree` into `output_dir` (caches copied from `cache_from` first); returns its wall time."""
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    for cache in spec.caches if cache_from is not None else ():
        if (cache_from / cache).exists():
            shutil.copytree(cache_from / cache, output_dir / cache)
    command = [
        sys.executable, spec.script, "--config", spec.config, "--output_dir", str(output_dir),
        "--num_cycles", str(num_cycles), *spec.extra_args, *(spec.quick_args if quick else ()),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(
            f"{spec.name} from {tree} failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}"
        )
    return wall, output_dir


def _read_history(output_dir: Path) -> tuple[dict[str, float], list[dict[str, float]], list[dict[str, Any]]]:
    history = json.loads((output_dir / "history.json").read_text())
    cycles = sorted(history["cycles"], key=lambda cycle: cycle["cycle"])
    cycle0 = next((cycle["stage_seconds"] for cycle in cycles if cycle["cycle"] == 0), {})
    later = [cycle for cycle in cycles if cycle["cycle"] > 0]
    return cycle0, [cycle["stage_seconds"] for cycle in later], [cycle.get("generation_stats", {}) for cycle in later]


def _worktree(revision: str, parent: Path) -> Path:
    path = parent / f"tree-{revision.replace('/', '_')}"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), revision], cwd=ROOT, check=True,
                   capture_output=True)
    return path


def _stage_medians(runs: list[RunResult]) -> dict[str, float]:
    stages = sorted({stage for run in runs for cycle in run.cycle_seconds for stage in cycle})
    return {
        stage: statistics.median(cycle.get(stage, 0.0) for run in runs for cycle in run.cycle_seconds)
        for stage in stages
    }


def _summaries(runs: list[RunResult]) -> dict[str, Any]:
    per_cycle_total = [sum(cycle.values()) for run in runs for cycle in run.cycle_seconds]
    tokens = [stats["tokens_per_second"] for run in runs for stats in run.generation_stats if "tokens_per_second" in stats]
    candidates = [
        stats["candidates_per_second"] for run in runs for stats in run.generation_stats if "candidates_per_second" in stats
    ]
    return {
        "stage_seconds_per_cycle": _stage_medians(runs),
        "seconds_per_cycle": statistics.median(per_cycle_total) if per_cycle_total else None,
        "wall_seconds": statistics.median(run.wall_seconds for run in runs),
        "tokens_per_second": statistics.median(tokens) if tokens else None,
        "candidates_per_second": statistics.median(candidates) if candidates else None,
    }


def _table(name: str, summaries: dict[str, dict[str, Any]]) -> list[str]:
    before, after = summaries["before"], summaries["after"]
    stages = sorted(set(before["stage_seconds_per_cycle"]) | set(after["stage_seconds_per_cycle"]))
    rows = [f"| {name} | stage | before (s/cycle) | after (s/cycle) | after / before |", "|---|---|---:|---:|---:|"]

    def row(label: str, old: float | None, new: float | None) -> str:
        ratio = f"{new / old:.2f}×" if old and new is not None else "–"
        return f"| {name} | {label} | {old if old is not None else '–'} | {new if new is not None else '–'} | {ratio} |"

    for stage in stages:
        old = round(before["stage_seconds_per_cycle"].get(stage, 0.0), 2)
        new = round(after["stage_seconds_per_cycle"].get(stage, 0.0), 2)
        rows.append(row(stage, old, new))
    rows.append(row("**all stages**", _round(before["seconds_per_cycle"]), _round(after["seconds_per_cycle"])))
    rows.append(row("whole command (wall)", _round(before["wall_seconds"]), _round(after["wall_seconds"])))
    if before["tokens_per_second"] is not None or after["tokens_per_second"] is not None:
        rows.append(row("generation tokens/s", _round(before["tokens_per_second"]), _round(after["tokens_per_second"])))
        rows.append(
            row("generation candidates/s", _round(before["candidates_per_second"]), _round(after["candidates_per_second"]))
        )
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision of the 'before' tree (e.g. a commit).")
    parser.add_argument("--after", default=None, help="git revision of the 'after' tree; default: this checkout.")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--num-cycles", type=int, default=1, help="Synthesis cycles per run (after cycle 0).")
    parser.add_argument("--repeats", type=int, default=1, help="Interleaved rounds (runs per tree and recipe).")
    parser.add_argument("--output", default="benchmarks/results/recipes.json")
    parser.add_argument("--quick", action="store_true", help="Tiny settings: a smoke run, no meaningful timing.")
    args = parser.parse_args()
    if args.repeats < 1 or args.num_cycles < 1:
        parser.error("--repeats and --num-cycles must be >= 1.")

    scratch = Path(tempfile.mkdtemp(prefix="bench-recipes-"))
    worktrees = []
    try:
        trees = {"before": _worktree(args.before, scratch)}
        worktrees.append(trees["before"])
        if args.after is None:
            trees["after"] = ROOT
        else:
            trees["after"] = _worktree(args.after, scratch)
            worktrees.append(trees["after"])
        report: dict[str, Any] = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
            "settings": vars(args) | {"after": args.after or "working tree"},
            "revisions": {
                name: subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()
                for name, tree in trees.items()
            },
            "recipes": {},
        }
        lines = []
        for name in args.recipes:
            spec = RECIPES[name]
            cache_dir = None
            if spec.caches:  # untimed warm-up that fills the caches every timed run copies
                _, cache_dir = _run_recipe(spec, trees["after"], scratch / f"{name}-cache", 1, args.quick, None)
            runs: dict[str, list[RunResult]] = {"before": [], "after": []}
            for round_index in range(args.repeats):
                order = ["before", "after"] if round_index % 2 == 0 else ["after", "before"]
                for tree_name in order:
                    wall, output_dir = _run_recipe(
                        spec, trees[tree_name], scratch / f"{name}-{tree_name}", args.num_cycles, args.quick, cache_dir
                    )
                    cycle0, cycles, stats = _read_history(output_dir)
                    runs[tree_name].append(RunResult(tree_name, wall, cycle0, cycles, stats))
                    print(f"{name} {tree_name} round {round_index}: {wall:.1f} s", flush=True)
            summaries = {tree_name: _summaries(tree_runs) for tree_name, tree_runs in runs.items()}
            report["recipes"][name] = {
                "summary": summaries,
                "runs": {tree_name: [vars(run) for run in tree_runs] for tree_name, tree_runs in runs.items()},
            }
            lines += _table(name, summaries) + [""]
        report["machine"]["load_average_after"] = os.getloadavg()
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))
        print("\n".join(lines))
        print(f"JSON: {output}")
    finally:
        for tree in worktrees:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

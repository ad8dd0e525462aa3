"""Pick recipe settings on validation data: run comparison variants, then tabulate their paired validation results.

Each variant is a set of recipe options (a YAML mapping `name -> {option: value}` such as `recipes/sweeps/digits.yaml`)
run as a full comparison of the chosen methods into `ROOT/<variant>/` (the recipe's own `--compare true` machinery,
so runs are reused and resumed). The table reads only validation figures (never test accuracy):

* `val_acc`: validation accuracy of the model each run hands back (its `loaded_cycle`), per method, mean over pairs;
* `method - baseline`: the paired difference of that figure within the variant (same seed and split), with the
  95 % t interval and wins, for every method but the baseline (`--methods` adds the ablations);
* `oracle`: mean oracle label agreement of the accepted samples over the cycles (the independent label audit);
* `samples to reach`: per pair, the synthetic samples a method needed to reach the baseline's final validation
  accuracy (interpolated along its cycle curve; the cycles' budget when never reached), median over pairs;
* `vs <reference>`: each method's paired validation difference against the same method in the reference variant.

Usage (two processes, one per split, then the table):

    python recipes/sweeps/validation_sweep.py run --variants recipes/sweeps/digits.yaml --variant pool_ddpm \
        --root runs/digits-sweep --split 0
    python recipes/sweeps/validation_sweep.py table --variants recipes/sweeps/digits.yaml --root runs/digits-sweep \
        --output recipes/results/digits/sweep.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from statistics import mean
from typing import Any

import yaml

from hf_active_synth.evaluation.efficiency import data_efficiency
from hf_active_synth.evaluation.paired import paired_difference
from hf_active_synth.evaluation.tables import write_table_files

RECIPE_SCRIPTS = {"image": "recipes/image_classification.py", "text": "recipes/text_classification.py"}


def load_variants(path: str | Path) -> dict[str, Any]:
    spec = yaml.safe_load(Path(path).read_text())
    for key in ("recipe", "config", "methods", "variants"):
        if key not in spec:
            raise ValueError(f"{path} needs a {key!r} entry (see recipes/sweeps/digits.yaml).")
    if spec["recipe"] not in RECIPE_SCRIPTS:
        raise ValueError(f"recipe must be one of {sorted(RECIPE_SCRIPTS)}, got {spec['recipe']!r}.")
    return spec


def option_arguments(options: dict[str, Any]) -> list[str]:
    arguments = []
    for name, value in options.items():
        values = value if isinstance(value, list) else [value]
        arguments += [f"--{name}", *(str(item) for item in values)]
    return arguments


def run_variant(spec: dict[str, Any], variant: str, root: Path, splits: list[int] | None) -> None:
    if variant not in spec["variants"]:
        raise KeyError(f"Unknown variant {variant!r}; the file defines {sorted(spec['variants'])}.")
    command = [
        sys.executable,
        RECIPE_SCRIPTS[spec["recipe"]],
        "--config",
        spec["config"],
        *option_arguments(spec.get("common", {}) or {}),
        "--compare",
        "true",
        "--compare_preset",
        spec.get("preset", "quick"),
        "--compare_methods",
        *spec["methods"],
        "--output_dir",
        str(root / variant),
        *option_arguments(spec["variants"][variant] or {}),
    ]
    if splits is not None:
        command += ["--compare_splits", *(str(split) for split in splits)]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def run_figures(run_dir: Path) -> dict[str, Any] | None:
    """Validation accuracy of the handed-back cycle, mean oracle agreement, and the validation curve (synthetic
    samples in the training data after each cycle, accuracy then) of one finished run."""
    history_path = run_dir / "history.json"
    if not (run_dir / "final_metrics.json").is_file() or not history_path.is_file():
        return None  # unfinished
    history = json.loads(history_path.read_text())
    cycles = {cycle["cycle"]: cycle for cycle in history["cycles"]}
    handed_back = history.get("loaded_cycle", max(cycles))
    agreements = [
        cycle["label_audit"]["oracle_label_agreement"]
        for cycle in history["cycles"]
        if (cycle.get("label_audit") or {}).get("oracle_label_agreement") is not None
    ]
    ordered = [cycles[number] for number in sorted(cycles)]
    return {
        "val_acc": cycles[handed_back]["eval_metrics"]["eval_accuracy"],
        "oracle": mean(agreements) if agreements else None,
        "curve": [[cycle.get("num_synthetic_total", 0) for cycle in ordered],
                  [cycle["eval_metrics"]["eval_accuracy"] for cycle in ordered]],
        "budget": history.get("config", {}).get("num_cycles", 0)
        * history.get("config", {}).get("synthetic_samples_per_cycle", 0),
    }  # fmt: skip


def collect(root: Path, variant: str, methods: list[str]) -> dict[str, dict[tuple[int, int], dict[str, Any]]]:
    runs: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    for method in methods:
        for seed_dir in sorted((root / variant / method).glob("split-*/seed-*")):
            figures = run_figures(seed_dir)
            if figures is not None:
                key = (int(seed_dir.parent.name.split("-")[1]), int(seed_dir.name.split("-")[1]))
                runs.setdefault(method, {})[key] = figures
    return runs


def difference_cell(runs_a: dict, runs_b: dict) -> str:
    keys = sorted(set(runs_a) & set(runs_b))
    if not keys:
        return "–"
    return paired_difference([runs_a[k]["val_acc"] for k in keys], [runs_b[k]["val_acc"] for k in keys]).format_cell()


def samples_to_reach_cell(runs: dict, baseline_runs: dict) -> str:
    """Median samples the runs needed to reach their paired baseline run's final validation accuracy."""
    keys = sorted(k for k in set(runs) & set(baseline_runs) if "curve" in runs[k] and "curve" in baseline_runs[k])
    if not keys:
        return "–"
    curves = {k: tuple(runs[k]["curve"]) for k in keys}
    targets = {k: baseline_runs[k]["curve"][1][-1] for k in keys}
    result = data_efficiency(curves, targets, cap=max(runs[k]["budget"] for k in keys))
    return f"{result.median_samples:.0f} ({result.num_reached}/{result.n} reach it)"


def previous_runs(data: dict[str, Any], variant: str, methods: list[str]) -> dict[str, dict[tuple[int, int], Any]]:
    """A variant's runs as an earlier `table --output` recorded them in its `.json` (same shape as [`collect`])."""
    recorded = (data.get(variant) or {}).get("runs", {})
    runs: dict[str, dict[tuple[int, int], Any]] = {}
    for method in methods:
        for key, figures in (recorded.get(method) or {}).items():
            split, seed = (int(part.split("-")[1]) for part in key.split("/"))
            runs.setdefault(method, {})[(split, seed)] = figures
    return runs


def table(
    spec: dict[str, Any], root: Path, methods: list[str] | None = None, previous: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The markdown table (one row per variant with finished runs) and its per-run data.

    `previous` (an earlier `table --output` JSON) supplies the runs of variants that have none under `root` (e.g.
    run in an earlier session whose run folders are gone); a variant with runs under `root` is read from there only.
    """
    methods = list(methods or spec["methods"])
    previous = previous or {}

    def variant_runs(variant: str) -> dict[str, dict[tuple[int, int], Any]]:
        return collect(root, variant, methods) or previous_runs(previous, variant, methods)

    baseline = spec.get("baseline", methods[0])
    contrasts = [name for name in methods if name != baseline]
    reference = spec.get("reference", next(iter(spec["variants"])))
    reference_runs = variant_runs(reference)
    header = ["variant", "pairs"] + [f"val_acc {name}" for name in methods]
    header += [f"{name} − {baseline}" for name in contrasts]
    header += [f"oracle {name}" for name in methods] + [f"{name} vs {reference}" for name in methods]
    header += [f"{name}: samples to reach {baseline}'s final" for name in contrasts]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    data: dict[str, Any] = {}
    for variant in spec["variants"]:
        runs = variant_runs(variant)
        if not runs:
            continue
        pairs = len(runs.get(baseline, {}))  # the baseline's finished (seed, split) pairs
        cells = [variant, str(pairs)]
        for name in methods:
            values = [figures["val_acc"] for figures in runs.get(name, {}).values()]
            cells.append(f"{mean(values):.4f}" if values else "–")
        cells += [difference_cell(runs.get(name, {}), runs.get(baseline, {})) for name in contrasts]
        for name in methods:
            values = [f["oracle"] for f in runs.get(name, {}).values() if f["oracle"] is not None]
            cells.append(f"{mean(values):.3f}" if values else "–")
        for name in methods:
            same = variant == reference
            cells.append("–" if same else difference_cell(runs.get(name, {}), reference_runs.get(name, {})))
        cells += [samples_to_reach_cell(runs.get(name, {}), runs.get(baseline, {})) for name in contrasts]
        lines.append("| " + " | ".join(cells) + " |")
        data[variant] = {
            "options": spec["variants"][variant],
            "runs": {name: {f"split-{k[0]}/seed-{k[1]}": v for k, v in r.items()} for name, r in runs.items()},
        }
    return "\n".join(lines) + "\n", data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="Run one variant's comparison.")
    run.add_argument("--variants", required=True)
    run.add_argument("--variant", required=True)
    run.add_argument("--root", required=True, type=Path)
    run.add_argument("--split", type=int, nargs="*", default=None, help="Only these splits (one process per split).")
    show = commands.add_parser("table", help="Tabulate the finished runs of every variant (validation only).")
    show.add_argument("--variants", required=True)
    show.add_argument("--root", required=True, type=Path)
    show.add_argument("--output", type=Path, default=None, help="Write the table (.md) and its runs (.json) here.")
    show.add_argument("--methods", nargs="*", default=None, help="Tabulate these methods (default: the file's).")
    show.add_argument(
        "--previous",
        type=Path,
        default=None,
        help="An earlier table's .json: variants with no runs under --root are read from it.",
    )
    args = parser.parse_args()
    spec = load_variants(args.variants)
    if args.command == "run":
        run_variant(spec, args.variant, args.root, args.split)
        return
    previous = json.loads(args.previous.read_text()) if args.previous is not None else None
    markdown, data = table(spec, args.root, args.methods, previous)
    print(markdown)
    if args.output is not None:
        write_table_files(args.output, markdown, data)


if __name__ == "__main__":
    main()

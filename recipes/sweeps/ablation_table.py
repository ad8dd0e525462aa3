"""Which mechanism moved the paired validation difference, and by how much: one row per mechanism, from committed sweeps.

Each row of the ablation file (such as `recipes/sweeps/digits_ablation.yaml`) names a mechanism, a sweep table's
per-run JSON (what `validation_sweep.py table --output` commits beside its `.md`), the variant that has the mechanism
and the reference variant of the same sweep that lacks it (so both ran at the same commit, on the same pairs). Every
figure is recomputed from the per-run validation accuracies, paired by (seed, split), with 95 % t intervals:

* `method − baseline` within the variant (e.g. active − random synthesis);
* `Δ(method − baseline)`: how much the mechanism moved that paired difference, per pair
  `(method_v − baseline_v) − (method_ref − baseline_ref)`;
* the method alone and the baseline alone, each against itself in the reference variant (a mechanism can widen the
  margin by lowering the baseline);
* the method's mean oracle label agreement in the variant.

A sweep that ran the method only (e.g. guidance, which changes the targeted arm alone) fills the method column only.
Only validation figures are read; test accuracy is never in these files.

Usage:

    python recipes/sweeps/ablation_table.py --ablation recipes/sweeps/digits_ablation.yaml \
        --output recipes/results/digits/ablation.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean
from typing import Any

import yaml

from hf_active_synth.evaluation.paired import PairedDifference, paired_difference
from hf_active_synth.evaluation.tables import write_table_files

REQUIRED_ROW_KEYS = ("mechanism", "table", "variant", "reference")


def load_ablation(path: str | Path) -> dict[str, Any]:
    """The ablation file, checked: `method`, `baseline` and `rows` of `mechanism, table, variant, reference`."""
    spec = yaml.safe_load(Path(path).read_text()) or {}
    for key in ("method", "baseline", "rows"):
        if key not in spec:
            raise ValueError(f"{path} needs a {key!r} entry (see recipes/sweeps/digits_ablation.yaml).")
    for index, row in enumerate(spec["rows"]):
        missing = [key for key in REQUIRED_ROW_KEYS if key not in row]
        if missing:
            raise ValueError(f"{path}: row {index} ({row.get('mechanism', '?')!r}) lacks {missing}.")
    return spec


def validation_accuracies(table: dict[str, Any], variant: str, method: str, source: str) -> dict[str, float]:
    """`"split-S/seed-R" -> validation accuracy` of one method in one variant of a sweep table's JSON."""
    if variant not in table:
        raise KeyError(f"{source} has no variant {variant!r}; it has {sorted(table)}.")
    runs = table[variant]["runs"].get(method, {})
    return {key: figures["val_acc"] for key, figures in runs.items()}


def ablation_row(row: dict[str, Any], method: str, baseline: str, root: Path) -> tuple[list[str], dict[str, Any]]:
    """One row's cells and its JSON record."""
    source = root / row["table"]
    table = json.loads(source.read_text())
    method_v = validation_accuracies(table, row["variant"], method, str(source))
    method_ref = validation_accuracies(table, row["reference"], method, str(source))
    baseline_v = validation_accuracies(table, row["variant"], baseline, str(source))
    baseline_ref = validation_accuracies(table, row["reference"], baseline, str(source))
    method_keys = sorted(set(method_v) & set(method_ref))
    both_keys = sorted(set(method_keys) & set(baseline_v) & set(baseline_ref))

    def paired(values_a: dict[str, float], values_b: dict[str, float], keys: list[str]) -> PairedDifference:
        return paired_difference([values_a[k] for k in keys], [values_b[k] for k in keys])

    margins_v = {k: method_v[k] - baseline_v[k] for k in both_keys}
    margins_ref = {k: method_ref[k] - baseline_ref[k] for k in both_keys}
    margin_moved, method_moved = paired(margins_v, margins_ref, both_keys), paired(method_v, method_ref, method_keys)
    oracle = [
        figures["oracle"]
        for figures in table[row["variant"]]["runs"].get(method, {}).values()
        if figures.get("oracle") is not None
    ]
    cells = [
        row["mechanism"],
        f"`{row['variant']}` vs `{row['reference']}` ({Path(row['table']).stem})",
        str(len(method_keys)),
        *(
            difference.format_cell() if difference.n else "–"
            for difference in (
                paired(method_v, baseline_v, both_keys),
                margin_moved,
                method_moved,
                paired(baseline_v, baseline_ref, both_keys),
            )
        ),
        f"{mean(oracle):.3f}" if oracle else "–",
    ]
    record = {
        **row,
        "pairs": method_keys,
        "margin_moved": margin_moved.to_dict() if both_keys else None,
        "method_moved": method_moved.to_dict(),
    }
    return cells, record


def ablation_table(spec: dict[str, Any], root: Path = Path(".")) -> tuple[str, list[dict[str, Any]]]:
    """The markdown table (one row per mechanism, in the file's order) and its JSON records."""
    method, baseline = spec["method"], spec["baseline"]
    header = [
        "Mechanism",
        "Variant vs reference (sweep)",
        "Pairs",
        f"{method} − {baseline}",
        f"Δ({method} − {baseline}) vs reference",
        f"{method} vs reference",
        f"{baseline} vs reference",
        f"Oracle agreement, {method}",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    records = []
    for row in spec["rows"]:
        cells, record = ablation_row(row, method, baseline, root)
        lines.append("| " + " | ".join(cells) + " |")
        records.append(record)
    return "\n".join(lines) + "\n", records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ablation", required=True, type=Path, help="The ablation file (YAML).")
    parser.add_argument("--output", type=Path, default=None, help="Write the table (.md) and its records (.json).")
    args = parser.parse_args()
    markdown, records = ablation_table(load_ablation(args.ablation))
    print(markdown)
    if args.output is not None:
        write_table_files(args.output, markdown, records)


if __name__ == "__main__":
    main()

"""The end-to-end recipe benchmark's bookkeeping: what it reads from a run's history and how it tabulates it.

Running it (`benchmarks/bench_recipes.py`) launches full recipes from two source trees, minutes of work, so the suite
checks the parts that turn runs into figures on histories written here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/bench_recipes.py")


def _history(path: Path, generate_seconds: list[float], tokens: list[float] | None = None) -> Path:
    cycles = [{"cycle": 0, "stage_seconds": {"train": 5.0, "evaluate": 1.0}}]
    for index, seconds in enumerate(generate_seconds, start=1):
        cycle = {"cycle": index, "stage_seconds": {"train": 4.0, "generate": seconds}}
        if tokens is not None:
            cycle["generation_stats"] = {"tokens_per_second": tokens[index - 1], "candidates_per_second": 1.0}
        cycles.append(cycle)
    path.mkdir(parents=True)
    (path / "history.json").write_text(json.dumps({"cycles": cycles[::-1]}))  # order on disk must not matter
    return path


def test_cycle_zero_is_reported_apart_and_cycles_in_order(bench, tmp_path):
    cycle0, cycles, stats = bench._read_history(_history(tmp_path / "run", [10.0, 20.0], tokens=[3.0, 5.0]))

    assert cycle0 == {"train": 5.0, "evaluate": 1.0}
    assert [cycle["generate"] for cycle in cycles] == [10.0, 20.0]
    assert [entry["tokens_per_second"] for entry in stats] == [3.0, 5.0]


def test_table_gives_per_stage_medians_and_the_after_before_ratio(bench, tmp_path):
    runs = {}
    for name, seconds, tokens in (("before", [30.0, 10.0, 20.0], [2.0, 2.0, 4.0]), ("after", [5.0, 5.0, 8.0], None)):
        cycle0, cycles, stats = bench._read_history(_history(tmp_path / name, seconds, tokens))
        runs[name] = [bench.RunResult(name, 100.0 if name == "before" else 50.0, cycle0, cycles, stats)]
    summaries = {name: bench._summaries(tree_runs) for name, tree_runs in runs.items()}

    assert summaries["before"]["stage_seconds_per_cycle"] == {"generate": 20.0, "train": 4.0}
    assert summaries["before"]["seconds_per_cycle"] == 24.0
    assert summaries["before"]["tokens_per_second"] == 2.0
    assert summaries["after"]["tokens_per_second"] is None
    rows = bench._table("digits", summaries)
    generate = next(row for row in rows if "| generate |" in row)
    assert generate == "| digits | generate | 20.0 | 5.0 | 0.25× |"
    wall = next(row for row in rows if "whole command" in row)
    assert wall.endswith("| 0.50× |")
    assert any("generation tokens/s" in row for row in rows)

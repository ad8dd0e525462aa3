"""Previews of a run's accepted samples: the image grid shows exactly the samples it says it drew, next to real
examples of their class; text previews pair sentences with their target; the report and cards link them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

from hf_active_synth.evaluation.preview_grid import choose_image_grid
from hf_active_synth.evaluation.previews import (
    PREVIEW_FILE,
    Preview,
    format_text_examples,
    load_run_samples,
    save_real_examples,
    target_text,
)
from hf_active_synth.evaluation.report import build_report
from hf_active_synth.generators.text_prompts import PromptTemplates

LABELS = ClassLabel(names=["zero", "one", "two"])


def image_dataset(seed: int, labels: list[int]) -> Dataset:
    rng = np.random.default_rng(seed)
    pixels = [rng.integers(0, 256, size=(8, 8), dtype=np.uint8) for _ in labels]
    return Dataset.from_dict(
        {"image": [PILImage.fromarray(p) for p in pixels], "label": labels, "synth_cycle": [seed] * len(labels)},
        features=Features({"image": Image(), "label": LABELS, "synth_cycle": Value("int64")}),
    )


@pytest.fixture
def image_run(tmp_path):
    """A run folder as the trainer leaves it: two cycles of accepted images (cycle 2 has no `two`), real examples."""
    run = tmp_path / "run"
    image_dataset(1, [0, 1, 2, 0, 1, 2, 0, 0, 1]).save_to_disk(str(run / "cycle-1" / "synthetic"))
    image_dataset(2, [1, 0, 1, 1, 0]).save_to_disk(str(run / "cycle-2" / "synthetic"))
    (run / "cycle-0").mkdir()  # cycle 0 generates nothing
    save_real_examples(image_dataset(0, [0, 1, 2] * 5), run, per_class=3)
    return run


def test_image_grid_shows_the_accepted_samples(image_run, tmp_path):
    samples = load_run_samples(image_run)
    assert sorted(samples.cycles) == [1, 2] and samples.is_image and len(samples.real) == 9
    preview = Preview.write(samples, tmp_path / "out")
    grid = preview.grid
    assert preview.image == PREVIEW_FILE and preview.shows_real and grid.labels == (0, 1, 2)
    assert grid.row_titles == ("zero", "one", "two")
    assert [c.title for c in grid.columns] == ["real"] * 3 + ["cycle 1"] * 3 + ["cycle 2"] * 3
    sources = {None: samples.real, 1: samples.cycles[1], 2: samples.cycles[2]}

    with PILImage.open(tmp_path / "out" / PREVIEW_FILE) as png:
        assert png.format == "PNG" and png.size == grid.size
        picture = np.asarray(png.convert("RGB"))
    for row, label in enumerate(grid.labels):
        for column_index, column in enumerate(grid.columns):
            index = grid.cells.get((row, column_index))
            left, top, right, bottom = grid.cell_box(row, column_index)
            cell = picture[top:bottom, left:right]
            if index is None:
                assert (cell == 232).all()  # an empty cell, not a stale image
                continue
            # Each cell holds a sample of its row's class, from its column's cycle, pixel for pixel (4x, nearest).
            source = sources[column.cycle]
            assert source[index]["label"] == label
            expected = np.kron(np.asarray(source[index]["image"]), np.ones((4, 4), dtype=np.uint8))
            np.testing.assert_array_equal(cell, np.repeat(expected[:, :, None], 3, axis=2))
    # Class `zero` has four samples in cycle 1: three are shown, all different; cycle 2 has no `two`.
    cycle_1_zero = [grid.cells[(0, c)] for c in range(3, 6)]
    assert len(set(cycle_1_zero)) == 3 and set(cycle_1_zero) <= {0, 3, 6, 7}
    assert [(2, c) in grid.cells for c in range(6, 9)] == [False] * 3
    assert len(grid.cells) == 3 * 3 + 3 * 3 - 1 + 3 + 2  # real: 3 per class; cycle 1: `two` has 2; cycle 2: 3+2

    # Seeded: drawn again, the same picture; without real data, no real column.
    again = Preview.write(samples, tmp_path / "again")
    assert (tmp_path / "again" / PREVIEW_FILE).read_bytes() == (tmp_path / "out" / PREVIEW_FILE).read_bytes()
    assert again.grid == grid
    private = Preview.write(samples, tmp_path / "private", include_real=False)
    assert not private.shows_real and all(column.cycle is not None for column in private.grid.columns)
    assert "real examples" not in private.markdown() and "](preview.png)" in private.markdown()


def test_grid_limits_classes_and_sizes_cells(image_run):
    samples = load_run_samples(image_run)
    grid = choose_image_grid(samples, samples_per_cycle=1, real_per_class=0, max_classes=2, cell_size=16)
    assert grid.labels == (0, 1) and [c.cycle for c in grid.columns] == [1, 2] and grid.cell_size == 16
    assert load_run_samples(image_run, cycles=[2]).cycles.keys() == {2}
    assert load_run_samples(image_run / "cycle-0") is None


def text_run(run, prompts: list[str | None]) -> None:
    n = len(prompts)
    rows = {
        "text": [f"synthetic sentence {i}" for i in range(n)],
        "label": [i % 2 for i in range(n)],
        "synth_prompt": prompts,
    }
    features = Features(
        {"text": Value("string"), "label": ClassLabel(names=["neg", "pos"]), "synth_prompt": Value("string")}
    )
    Dataset.from_dict(rows, features=features).save_to_disk(str(run / "cycle-1" / "synthetic"))
    (run / "history.json").write_text(json.dumps({"config": {"input_column": "text", "label_column": "label"}}))


def test_text_preview_pairs_sentences_with_their_target(tmp_path):
    templates = PromptTemplates()
    # The generator shows drawn extras first and the target's own example last.
    prompts = [templates.render("negative", ["another one", f"the target | {i}"]) for i in range(4)] + [None]
    assert target_text(prompts[2]) == "the target | 2"
    assert target_text(templates.render("negative", [])) is None  # zero-shot: no example shown
    assert target_text("Say:\n* «x» !", example_template="* «{text}» !") == "x"
    text_run(tmp_path, prompts)

    samples = load_run_samples(tmp_path)
    preview = Preview.write(samples, tmp_path / "out")
    assert not samples.is_image and preview.image is None and not (tmp_path / "out" / PREVIEW_FILE).exists()
    assert [(e.label, e.cycle) for e in preview.examples] == [("neg", 1)] * 3 + [("pos", 1)] * 2
    for example in preview.examples:
        assert example.text == f"synthetic sentence {example.index}"
        assert example.target == (None if example.index == 4 else f"the target | {example.index}")
    table = format_text_examples(preview.examples)
    assert "| Class | Cycle | Synthetic sentence | Target (real) sentence |" in table
    assert "| neg | 1 | synthetic sentence 0 | the target \\| 0 |" in table and "| — |" in table
    # Published cards show no real sentence unless the run publishes real data.
    private = Preview.write(samples, tmp_path / "out", include_real=False)
    assert not private.shows_real and all(e.target is None for e in private.examples)
    assert "Target" not in private.markdown() and "the target" not in private.markdown()


def test_report_shows_the_run_preview(image_run, tmp_path):
    history = {
        "cycles": [
            {"cycle": k, "eval_metrics": {"eval_accuracy": 0.5 + k / 10}, "num_synthetic_total": 9 * k}
            for k in range(3)
        ],
        "config": {},
    }
    path = build_report({"active_synthesis": [history]}, tmp_path / "report", run_dir=image_run)
    report = path.read_text()
    assert "## Synthetic samples" in report and f"]({PREVIEW_FILE})" in report and "real examples" in report
    assert (tmp_path / "report" / PREVIEW_FILE).is_file()
    # Without a run folder (or for a run without samples), no section and no stale picture.
    build_report({"active_synthesis": [history]}, tmp_path / "report", run_dir=image_run / "cycle-0")
    assert "## Synthetic samples" not in path.read_text() and not (tmp_path / "report" / PREVIEW_FILE).exists()

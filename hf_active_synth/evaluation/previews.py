"""Previews of a run's accepted synthetic samples, for people who would rather look than read.

* Images: a PNG grid, one row per class, with real examples of the class in the first columns and then a few
  samples of each cycle (`write_image_preview`). The grid records which row of which dataset fills each cell
  (`ImageGrid.cells`), so what it shows can be checked.
* Text: a few accepted sentences per class, each with the real sentence it was generated from (its target), as a
  markdown table (`choose_text_examples`, `format_text_examples`).

The samples are the `cycle-k/synthetic/` datasets of a run folder (`load_run_samples`); the real examples are those
`save_real_examples` wrote into it (`real_examples/`), when it did. Every choice is seeded, so a preview is the same
each time it is drawn. Cards that are published show real data only when the run publishes it
(`include_real_data`): `Preview.write` is told whether it may.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..columns import PROMPT_COLUMN, infer_columns
from ..cycle import HISTORY_FILE, SYNTHETIC_DIR
from ..generators.text_prompts import PromptTemplates
from .preview_grid import ImageGrid, label_title, rows_by_label, seeded_draw, seeded_rng, write_image_preview

__all__ = [
    "PREVIEW_FILE",
    "REAL_EXAMPLES_DIR",
    "ImageGrid",
    "Preview",
    "RunSamples",
    "TextExample",
    "choose_text_examples",
    "format_text_examples",
    "load_run_samples",
    "save_real_examples",
    "target_text",
]

PREVIEW_FILE = "preview.png"
REAL_EXAMPLES_DIR = "real_examples"
_CYCLE_DIR = re.compile(r"^cycle-(\d+)$")


@dataclass(frozen=True)
class RunSamples:
    """The accepted samples of a run, by cycle, and the real examples saved beside them.

    Args:
        cycles (`dict[int, datasets.Dataset]`): Cycle -> its accepted samples (cycles without samples are left out).
        input_column (`str`): The input column (an `Image` feature, or text).
        label_column (`str`): The integer label column.
        real (`datasets.Dataset`, *optional*): Real labelled examples (`save_real_examples`).
    """

    cycles: dict[int, Any]
    input_column: str
    label_column: str
    real: Any | None = None

    @property
    def is_image(self) -> bool:
        """Whether the inputs are images (an `Image` feature)."""
        first = next(iter(self.cycles.values()))
        return type(first.features.get(self.input_column)).__name__ == "Image"

    @property
    def label_names(self) -> list[str] | None:
        """Class names from the label column's `ClassLabel`, if it has one."""
        feature = next(iter(self.cycles.values())).features.get(self.label_column)
        return list(feature.names) if type(feature).__name__ == "ClassLabel" else None


def load_run_samples(
    run_dir: str | os.PathLike, settings: Mapping[str, Any] | None = None, cycles: Sequence[int] | None = None
) -> RunSamples | None:
    """The accepted samples in `run_dir/cycle-k/synthetic/` (and `run_dir/real_examples/`), or `None` without any.

    Args:
        run_dir (`str` or `os.PathLike`): A run's output directory.
        settings (`Mapping`, *optional*): Its settings; `input_column` and `label_column` are read when present.
            Defaults to the `config` of `run_dir/history.json`.
        cycles (`Sequence[int]`, *optional*): Only these cycles; defaults to every cycle with samples.
    """
    from datasets import load_from_disk

    run_dir = Path(run_dir)
    if settings is None and (run_dir / HISTORY_FILE).is_file():
        settings = json.loads((run_dir / HISTORY_FILE).read_text()).get("config") or {}
    found = {}
    for path in run_dir.glob(f"cycle-*/{SYNTHETIC_DIR}"):
        match = _CYCLE_DIR.match(path.parent.name)
        if match and path.is_dir() and (cycles is None or int(match.group(1)) in cycles):
            dataset = load_from_disk(str(path))
            if len(dataset):
                found[int(match.group(1))] = dataset
    if not found:
        return None
    found = dict(sorted(found.items()))
    input_column, label_column = infer_columns(next(iter(found.values())).features, settings)
    if label_column is None:
        raise ValueError(f"The samples in {run_dir} have no label column; pass `label_column` in the settings.")
    real_dir = run_dir / REAL_EXAMPLES_DIR
    real = load_from_disk(str(real_dir)) if real_dir.is_dir() else None
    return RunSamples(found, input_column, label_column, real)


def save_real_examples(
    dataset: Any, output_dir: str | os.PathLike, label_column: str = "label", per_class: int = 4, seed: int = 0
) -> Path:
    """Keeps `per_class` real examples of each class in `output_dir/real_examples/`, for the previews to show next
    to the synthetic samples (the run folder holds no real data otherwise). Returns that folder.

    The folder stays local: Hub-layout repositories only show real examples when the run publishes real data.
    """
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    rows = rows_by_label(dataset, label_column)
    chosen = sorted(
        i for label, indices in rows.items() for i in seeded_draw(indices, per_class, seeded_rng(seed, 0, label))
    )
    path = Path(output_dir) / REAL_EXAMPLES_DIR
    # A few rows: no progress bar for them (and the caller's setting comes back afterwards).
    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        dataset.select(chosen).save_to_disk(str(path))
    finally:
        if not was_disabled:
            enable_progress_bars()
    return path


# -------------------------------------------------------------------------------------------------------- text
@dataclass(frozen=True)
class TextExample:
    """One accepted sentence of the text preview."""

    label: str
    cycle: int
    index: int
    text: str
    target: str | None = None


def target_text(prompt: str | None, example_template: str = PromptTemplates().example) -> str | None:
    """The real sentence a text sample was generated from: the last seed example of its prompt (the generator shows
    the target's own example last, see `PromptWriter.shots`), rendered with `example_template`; `None` when the
    prompt shows none (zero-shot) or was not kept."""
    if not prompt:
        return None
    before, _, after = example_template.partition("{text}")
    pattern = re.compile(rf"^{re.escape(before)}(.*){re.escape(after)}$", re.MULTILINE)
    found = pattern.findall(prompt)
    return found[-1] if found else None


def choose_text_examples(
    samples: RunSamples, per_class: int = 3, seed: int = 0, example_template: str = PromptTemplates().example
) -> list[TextExample]:
    """`per_class` accepted sentences of each class over all cycles, drawn at random (seeded), each with its target
    (from the prompt, when the run kept it)."""
    names = samples.label_names
    pooled: dict[int, list[tuple[int, int]]] = {}
    for cycle, dataset in samples.cycles.items():
        for label, rows in rows_by_label(dataset, samples.label_column).items():
            pooled.setdefault(label, []).extend((cycle, index) for index in rows)
    examples = []
    for label in sorted(pooled):
        rows = pooled[label]
        for position in seeded_draw(range(len(rows)), per_class, seeded_rng(seed, 0, label)):
            cycle, index = rows[position]
            row = samples.cycles[cycle][index]
            examples.append(
                TextExample(
                    label=label_title(label, names),
                    cycle=cycle,
                    index=index,
                    text=str(row[samples.input_column]),
                    target=target_text(row.get(PROMPT_COLUMN), example_template),
                )
            )
    return examples


def _cell(text: str | None) -> str:
    return "—" if text is None else text.replace("|", "\\|").replace("\n", " ")


def format_text_examples(examples: Sequence[TextExample], with_targets: bool = True) -> str:
    """The text preview as a markdown table (class, cycle, sentence, and the real target sentence)."""
    header = ["Class", "Cycle", "Synthetic sentence"] + (["Target (real) sentence"] if with_targets else [])
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---|" + ("---|" if with_targets else "")]
    for example in examples:
        cells = [_cell(example.label), str(example.cycle), _cell(example.text)]
        lines.append("| " + " | ".join(cells + ([_cell(example.target)] if with_targets else [])) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- both
@dataclass(frozen=True)
class Preview:
    """A written preview: the grid PNG's file name (images) or the chosen sentences (text).

    Args:
        image (`str`, *optional*): File name of the grid, relative to the folder it was written into.
        grid (`ImageGrid`, *optional*): What the grid shows.
        examples (`list[TextExample]`): The sentences (text runs).
        shows_real (`bool`): Whether real data is shown (real examples in the grid, or target sentences).
    """

    image: str | None = None
    grid: ImageGrid | None = None
    examples: list[TextExample] = field(default_factory=list)
    shows_real: bool = False

    @classmethod
    def write(cls, samples: RunSamples, folder: str | os.PathLike, include_real: bool = True) -> Preview:
        """The preview of `samples`: the grid written as `folder/preview.png` for images, sentences for text.
        `include_real=False` leaves real data out (real examples, target sentences)."""
        if samples.is_image:
            grid = write_image_preview(samples, Path(folder) / PREVIEW_FILE, include_real=include_real)
            shows_real = any(column.cycle is None for column in grid.columns)
            return cls(image=PREVIEW_FILE, grid=grid, shows_real=shows_real)
        examples = choose_text_examples(samples)
        if not include_real:  # the targets are real training sentences
            examples = [dataclasses.replace(example, target=None) for example in examples]
        return cls(examples=examples, shows_real=any(example.target is not None for example in examples))

    @property
    def num_cycles(self) -> int:
        """How many cycles the preview shows."""
        cycles = {c.cycle for c in self.grid.columns} if self.grid else {e.cycle for e in self.examples}
        return len(cycles - {None})

    def markdown(self) -> str:
        """The preview as a markdown section body (the image link, or the table of sentences)."""
        if self.image is not None:
            real = "real examples of each class, then " if self.shows_real else ""
            return (
                f"One row per class: {real}accepted synthetic samples of each cycle, drawn at random.\n\n"
                f"![Synthetic samples per class and cycle]({self.image})"
            )
        targets = ", each with the real sentence it was generated from" if self.shows_real else ""
        return f"Accepted sentences drawn at random per class{targets}.\n\n" + format_text_examples(
            self.examples, with_targets=self.shows_real
        )

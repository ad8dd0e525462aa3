"""The image preview of a run: a grid with one row per class, real examples of the class first, then a few
accepted samples of each cycle (see `evaluation.previews`). `ImageGrid` records which image fills each cell and where
the cell is in the picture, so a test can check the picture shows exactly those images."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .previews import RunSamples

__all__ = ["GridColumn", "ImageGrid", "choose_image_grid", "draw_image_grid", "write_image_preview"]

_BACKGROUND, _EMPTY_CELL, _INK = (255, 255, 255), (232, 232, 232), (40, 40, 40)
_REAL_STREAM = 0  # seed stream of the real examples; cycle k draws from stream k + 1


def seeded_rng(seed: int, stream: int, label: int) -> np.random.Generator:
    """The generator of one (column group, class) pair: a cell's draw does not depend on how many classes or cycles
    there are."""
    return np.random.default_rng([seed, stream, label])


def rows_by_label(dataset: Any, label_column: str) -> dict[int, list[int]]:
    """Label -> the row indices of `dataset` with that label, in row order."""
    rows: dict[int, list[int]] = {}
    for index, label in enumerate(dataset[label_column]):
        rows.setdefault(int(label), []).append(index)
    return rows


def seeded_draw(rows: Sequence[int], count: int, rng: np.random.Generator) -> list[int]:
    """`count` of `rows` (all of them when there are fewer), drawn without replacement, in row order."""
    if len(rows) <= count:
        return list(rows)
    return sorted(int(rows[i]) for i in rng.choice(len(rows), size=count, replace=False))


def label_title(label: int, names: Sequence[str] | None) -> str:
    """The name of class `label` (its id when there are no names)."""
    return str(names[label]) if names and 0 <= label < len(names) else str(label)


@dataclass(frozen=True)
class GridColumn:
    """One column of the image grid: real examples (`cycle` is `None`) or the samples of `cycle`."""

    cycle: int | None
    slot: int

    @property
    def title(self) -> str:
        return "real" if self.cycle is None else f"cycle {self.cycle}"


@dataclass(frozen=True)
class ImageGrid:
    """Which image fills each cell of a preview grid, and where the cells are in the picture.

    Args:
        labels (`tuple[int, ...]`): The class of each row.
        row_titles (`tuple[str, ...]`): The name written left of each row.
        columns (`tuple[GridColumn, ...]`): The columns, grouped (real examples, then cycle by cycle).
        cells (`Mapping[tuple[int, int], int]`): `(row, column)` -> row index, in the column's dataset (the real
            examples or its cycle's samples), of the image drawn there; empty cells are absent.
        cell_size (`int`): Side of a cell, in pixels.
    """

    labels: tuple[int, ...]
    row_titles: tuple[str, ...]
    columns: tuple[GridColumn, ...]
    cells: Mapping[tuple[int, int], int]
    cell_size: int = 32
    padding: int = 2
    group_gap: int = 8
    header_height: int = 16

    @property
    def label_width(self) -> int:
        return 8 + 7 * max((len(title) for title in self.row_titles), default=1)

    def _column_left(self, column: int) -> int:
        groups = sum(1 for a, b in zip(self.columns[:column], self.columns[1 : column + 1]) if a.cycle != b.cycle)
        return self.label_width + column * (self.cell_size + self.padding) + groups * self.group_gap

    def cell_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """`(left, top, right, bottom)` of a cell, in pixels."""
        left = self._column_left(column)
        top = self.header_height + row * (self.cell_size + self.padding)
        return left, top, left + self.cell_size, top + self.cell_size

    @property
    def size(self) -> tuple[int, int]:
        """`(width, height)` of the picture."""
        right = self.cell_box(0, len(self.columns) - 1)[2] if self.columns else self.label_width
        return right + self.padding, self.header_height + len(self.labels) * (self.cell_size + self.padding)


def choose_image_grid(
    samples: RunSamples,
    samples_per_cycle: int = 3,
    real_per_class: int = 3,
    seed: int = 0,
    max_classes: int = 20,
    include_real: bool = True,
    cell_size: int | None = None,
) -> ImageGrid:
    """Chooses the images of a preview grid: for every class (the first `max_classes`), `real_per_class` real
    examples (when `include_real` and the run saved some) and `samples_per_cycle` accepted samples of each cycle,
    drawn at random (seeded).

    Args:
        cell_size (`int`, *optional*): Side of a cell; defaults to 32 pixels for images up to 16 pixels (4x for the
            8x8 digits) and 64 for larger ones.
    """
    real = samples.real if include_real and real_per_class > 0 else None
    sources: list[tuple[int | None, Any, int]] = [(None, real, real_per_class)] if real is not None else []
    sources += [(cycle, dataset, samples_per_cycle) for cycle, dataset in samples.cycles.items()]
    by_label = {cycle: rows_by_label(dataset, samples.label_column) for cycle, dataset, _ in sources}
    labels = sorted({label for rows in by_label.values() for label in rows})[:max_classes]
    columns = tuple(GridColumn(cycle, slot) for cycle, _, count in sources for slot in range(count))
    cells: dict[tuple[int, int], int] = {}
    for row, label in enumerate(labels):
        for cycle, _, count in sources:
            stream = _REAL_STREAM if cycle is None else cycle + 1
            drawn = seeded_draw(by_label[cycle].get(label, []), count, seeded_rng(seed, stream, label))
            first = next(i for i, column in enumerate(columns) if column.cycle == cycle)
            cells.update({(row, first + slot): index for slot, index in enumerate(drawn)})
    if cell_size is None:
        first_image = next(iter(samples.cycles.values()))[0][samples.input_column]
        cell_size = 32 if max(first_image.size) <= 16 else 64
    names = samples.label_names
    titles = tuple(label_title(label, names) for label in labels)
    return ImageGrid(tuple(labels), tuple(title[:16] for title in titles), columns, cells, cell_size=cell_size)


def _fit(image: Any, size: int) -> Any:
    """`image` in RGB, scaled to fit a `size` square: nearest-neighbour when enlarging (pixels stay crisp)."""
    from PIL import Image, ImageOps

    image = image.convert("RGB")
    method = Image.Resampling.NEAREST if max(image.size) <= size else Image.Resampling.LANCZOS
    return ImageOps.contain(image, (size, size), method=method)


def draw_image_grid(grid: ImageGrid, samples: RunSamples) -> Any:
    """Draws `grid` with the images of `samples`; returns a `PIL.Image.Image` of `grid.size`."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.new("RGB", grid.size, _BACKGROUND)
    pen = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    datasets = {None: samples.real, **samples.cycles}
    for index, column in enumerate(grid.columns):
        if column.slot == 0:
            pen.text((grid.cell_box(0, index)[0], 2), column.title, fill=_INK, font=font)
    for row, title in enumerate(grid.row_titles):
        top = grid.cell_box(row, 0)[1]
        pen.text((4, top + grid.cell_size // 2 - 6), title, fill=_INK, font=font)
        for column_index, column in enumerate(grid.columns):
            box = grid.cell_box(row, column_index)
            index = grid.cells.get((row, column_index))
            if index is None:
                pen.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=_EMPTY_CELL)
                continue
            image = _fit(datasets[column.cycle][index][samples.input_column], grid.cell_size)
            # Centred in its cell (non-square images leave a margin).
            canvas.paste(
                image,
                (box[0] + (grid.cell_size - image.width) // 2, box[1] + (grid.cell_size - image.height) // 2),
            )
    return canvas


def write_image_preview(samples: RunSamples, path: str | os.PathLike, **choose_kwargs: Any) -> ImageGrid:
    """Chooses (`choose_image_grid(samples, **choose_kwargs)`), draws and saves the grid as a PNG at `path`."""
    grid = choose_image_grid(samples, **choose_kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_image_grid(grid, samples).save(path, format="PNG")
    return grid

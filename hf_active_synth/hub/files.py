"""Filesystem primitives of the local Hub folder: atomic writes, hard-link mirroring, swapping in a rebuilt folder."""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Writes through a temporary file and `os.replace`, so a hard-linked `path` is replaced, never modified."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not supported: copy instead
        shutil.copy2(source, target)


def link_tree(source: Path, target: Path, exclude: Sequence[str] = ()) -> None:
    """Mirrors the files of `source` into `target` (hard links where possible), skipping names matching `exclude`."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in exclude):
            continue
        link_or_copy(path, target / relative)


def replace_dir(target: Path, build: Callable[[Path], None], staging_root: Path) -> None:
    """Builds a directory in a staging place with `build(tmp)`, then swaps it in for `target`."""
    staging_root.mkdir(parents=True, exist_ok=True)
    tmp = staging_root / f"{target.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    build(tmp)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)

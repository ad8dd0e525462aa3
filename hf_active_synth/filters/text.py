"""Text filters: length bounds, near-duplicates among candidates, near-copies of real training texts (privacy).

Similarity is measured on shingle sets. By default a text is lower-cased, stripped of everything but letters and
digits (so "it 's" and "it's", or PTB-tokenised SST-2 and LLM output, compare equal) and cut into overlapping
character 5-grams; `unit="word"` uses word n-grams instead. Overlaps are computed as sparse matrix products over a
shingle vocabulary, so thousands of real texts against hundreds of candidates take well under a second, and the real
side is indexed once per real dataset (by its fingerprint) and reused across cycles.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import sparse

from ..columns import MAX_REAL_OVERLAP_COLUMN, SCORE_COLUMN, set_column
from .base import FilterContext

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "MAX_REAL_OVERLAP_COLUMN",
    "LengthFilter",
    "NearDuplicateFilter",
    "RealNearCopyFilter",
    "shingles",
    "text_overlap",
]

Unit = Literal["char", "word"]
Metric = Literal["jaccard", "containment"]
_WORD = re.compile(r"[^\W_]+")


def _check_unit(unit: str, n: int) -> None:
    if unit not in ("char", "word"):
        raise ValueError(f"unit must be 'char' or 'word', got {unit!r}.")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the shingle length) must be a positive integer, got {n!r}.")


def _check_metric(metric: str) -> None:
    if metric not in ("jaccard", "containment"):
        raise ValueError(f"metric must be 'jaccard' or 'containment', got {metric!r}.")


def shingles(text: str, n: int = 5, unit: Unit = "char") -> set[str]:
    """The set of overlapping n-grams of a normalised text.

    Normalisation: NFKC, lower case, only letters and digits kept. `unit="char"` joins the words without spaces and
    takes character n-grams; `unit="word"` takes word n-grams. Texts shorter than `n` give one shingle (the whole
    normalised text); texts without letters or digits give none.
    """
    _check_unit(unit, n)
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    if not words:
        return set()
    if unit == "char":
        joined = "".join(words)
        return {joined[i : i + n] for i in range(max(1, len(joined) - n + 1))}
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def text_overlap(first: str, second: str, n: int = 5, unit: Unit = "char", metric: Metric = "jaccard") -> float:
    """Overlap of two texts' shingle sets: Jaccard, or the fraction of `first`'s shingles found in `second`."""
    _check_metric(metric)
    a, b = shingles(first, n, unit), shingles(second, n, unit)
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / len(a) if metric == "containment" else shared / len(a | b)


class _ShingleIndex:
    """Binary text × shingle matrix (CSR) with each text's number of distinct shingles."""

    def __init__(self, texts: Iterable[str], n: int, unit: Unit, vocabulary: dict[str, int] | None = None):
        grow = vocabulary is None
        self.vocabulary: dict[str, int] = {} if vocabulary is None else vocabulary
        indptr, indices, sizes = [0], [], []
        for text in texts:
            grams = shingles(text, n, unit)
            sizes.append(len(grams))
            for gram in grams:
                column = self.vocabulary.get(gram)
                if column is None and grow:
                    column = self.vocabulary[gram] = len(self.vocabulary)
                if column is not None:
                    indices.append(column)
            indptr.append(len(indices))
        self.sizes = np.asarray(sizes, dtype=np.float64)
        self.matrix = sparse.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
            shape=(len(sizes), max(len(self.vocabulary), 1)),
        )

    def __len__(self) -> int:
        return self.matrix.shape[0]


def _pair_overlaps(
    shared: sparse.spmatrix, row_sizes: np.ndarray, column_sizes: np.ndarray, metric: Metric
) -> sparse.coo_matrix:
    """Turns a sparse matrix of shared-shingle counts into overlaps (same sparsity)."""
    shared = shared.tocoo()
    counts = shared.data.astype(np.float64)
    if metric == "containment":
        denominator = row_sizes[shared.row]
    else:
        denominator = row_sizes[shared.row] + column_sizes[shared.col] - counts
    values = np.divide(counts, denominator, out=np.zeros_like(counts), where=denominator > 0)
    return sparse.coo_matrix((values, (shared.row, shared.col)), shape=shared.shape)


def _max_overlap(
    texts: Sequence[str], reference: _ShingleIndex, n: int, unit: Unit, metric: Metric, chunk_size: int = 8192
) -> np.ndarray:
    """Each text's highest overlap with any text of `reference` (0.0 when `reference` is empty)."""
    result = np.zeros(len(texts), dtype=np.float64)
    if not texts or len(reference) == 0:
        return result
    # Texts use the reference vocabulary without growing it: unknown shingles cannot be shared anyway.
    index = _ShingleIndex(texts, n, unit, vocabulary=reference.vocabulary)
    for start in range(0, len(reference), chunk_size):
        block = reference.matrix[start : start + chunk_size]
        overlaps = _pair_overlaps(
            index.matrix @ block.T, index.sizes, reference.sizes[start : start + chunk_size], metric
        )
        np.maximum.at(result, overlaps.row, overlaps.data)
    return result


def _texts(dataset: Dataset, column: str) -> list[str]:
    if column not in dataset.column_names:
        raise ValueError(f"Text column {column!r} not found (columns: {dataset.column_names}).")
    texts = dataset[column]
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"Text filters need str inputs in column {column!r}, found {type(text).__name__}.")
    return list(texts)


class LengthFilter:
    """Keeps candidates whose word count (whitespace-separated) is within `[min_words, max_words]`.

    Args:
        min_words (`int`, defaults to 3): Shortest accepted candidate.
        max_words (`int`, *optional*, defaults to 64): Longest accepted candidate; `None` for no upper bound.
    """

    name = "length"
    checks_real_data = False

    def __init__(self, min_words: int = 3, max_words: int | None = 64):
        if min_words < 0 or (max_words is not None and max_words < min_words):
            raise ValueError(f"Need 0 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}.")
        self.min_words = min_words
        self.max_words = max_words

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset:
        lengths = np.asarray([len(text.split()) for text in _texts(candidates, context.input_column)], dtype=int)
        keep = lengths >= self.min_words
        if self.max_words is not None:
            keep &= lengths <= self.max_words
        return candidates.select(np.flatnonzero(keep))


class NearDuplicateFilter:
    """Drops candidates that nearly repeat another candidate, keeping the more uncertain one of each pair.

    Candidates are visited in order of decreasing `synth_score` (row order when the column is absent, ties by row
    order); one is dropped when its overlap with an already kept candidate is at least `threshold`. Candidates that
    nearly repeat a synthetic sample accepted in an earlier cycle (`context.accepted_dataset`) are dropped too.

    Args:
        threshold (`float`, defaults to 0.7): Overlap at which two candidates count as near-duplicates.
        n (`int`, defaults to 5): Shingle length.
        unit (`str`, defaults to `"char"`): `"char"` or `"word"` shingles.
        metric (`str`, defaults to `"jaccard"`): `"jaccard"` (symmetric) or `"containment"` (a candidate contained in
            a kept one is a duplicate).
    """

    name = "near_duplicate"
    checks_real_data = False  # compares candidates with each other and with accepted synthetic samples

    def __init__(self, threshold: float = 0.7, n: int = 5, unit: Unit = "char", metric: Metric = "jaccard"):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}.")
        _check_unit(unit, n)
        _check_metric(metric)
        self.threshold = threshold
        self.n = n
        self.unit = unit
        self.metric = metric

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset:
        texts = _texts(candidates, context.input_column)
        accepted = getattr(context, "accepted_dataset", None)
        if accepted is not None and len(accepted) > 0 and texts:
            reference = _ShingleIndex(_texts(accepted, context.input_column), self.n, self.unit)
            fresh = _max_overlap(texts, reference, self.n, self.unit, self.metric) < self.threshold
            if not fresh.all():
                candidates = candidates.select(np.flatnonzero(fresh))
                texts = [text for text, keep in zip(texts, fresh) if keep]
        if len(texts) < 2:
            return candidates
        index = _ShingleIndex(texts, self.n, self.unit)
        overlaps = _pair_overlaps(index.matrix @ index.matrix.T, index.sizes, index.sizes, self.metric).tocsr()
        if SCORE_COLUMN in candidates.column_names:
            order = np.argsort(-np.asarray(candidates[SCORE_COLUMN], dtype=np.float64), kind="stable")
        else:
            order = np.arange(len(texts))
        kept = np.zeros(len(texts), dtype=bool)
        for row in order:
            start, end = overlaps.indptr[row], overlaps.indptr[row + 1]
            neighbours = overlaps.indices[start:end]
            close = neighbours[(overlaps.data[start:end] >= self.threshold) & (neighbours != row)]
            kept[row] = not kept[close].any()
        return candidates.select(np.flatnonzero(kept))


class RealNearCopyFilter:
    """Privacy check: drops candidates that nearly copy a real training text, and records the closest overlap.

    Adds `synth_max_real_overlap` (the candidate's highest overlap with any text in `context.real_dataset`) and keeps
    candidates whose value is below `max_overlap`. With the default `metric="containment"` the overlap is the
    fraction of the candidate's shingles found in one real text: a candidate that is a real text, or a piece of one,
    scores 1.0, while a fresh sentence that reuses a common phrase scores low.

    Args:
        max_overlap (`float`, defaults to 0.8): Candidates at or above this overlap are dropped.
        n (`int`, defaults to 5): Shingle length.
        unit (`str`, defaults to `"char"`): `"char"` or `"word"` shingles.
        metric (`str`, defaults to `"containment"`): `"containment"` or `"jaccard"`.
        chunk_size (`int`, defaults to 8192): Real texts compared per sparse product (bounds memory).
    """

    name = "real_near_copy"
    checks_real_data = True

    def __init__(
        self,
        max_overlap: float = 0.8,
        n: int = 5,
        unit: Unit = "char",
        metric: Metric = "containment",
        chunk_size: int = 8192,
    ):
        if not 0.0 < max_overlap <= 1.0:
            raise ValueError(f"max_overlap must be in (0, 1], got {max_overlap}.")
        _check_unit(unit, n)
        _check_metric(metric)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}.")
        self.max_overlap = max_overlap
        self.n = n
        self.unit = unit
        self.metric = metric
        self.chunk_size = chunk_size

    def _real_index(self, context: FilterContext) -> _ShingleIndex:
        """The shingle index of the real texts, cached per real dataset fingerprint."""
        fingerprint = getattr(context.real_dataset, "_fingerprint", None)
        key = (fingerprint, context.input_column, self.n, self.unit)
        cached = getattr(self, "real_index_", None)
        if fingerprint is not None and cached is not None and cached[0] == key:
            return cached[1]
        index = _ShingleIndex(_texts(context.real_dataset, context.input_column), self.n, self.unit)
        self.real_index_ = (key, index)
        return index

    def max_real_overlap(self, texts: Sequence[str], context: FilterContext) -> np.ndarray:
        """Each text's highest overlap with any real training text (0.0 when there are none)."""
        if not texts or len(context.real_dataset) == 0:
            return np.zeros(len(texts), dtype=np.float64)
        return _max_overlap(texts, self._real_index(context), self.n, self.unit, self.metric, self.chunk_size)

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset:
        texts = _texts(candidates, context.input_column)
        overlap = self.max_real_overlap(texts, context)
        candidates = set_column(candidates, MAX_REAL_OVERLAP_COLUMN, overlap.tolist())
        return candidates.select(np.flatnonzero(overlap < self.max_overlap))

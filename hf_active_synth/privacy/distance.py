"""Distance to the closest record (DCR): how far each sample lies from its nearest real training record.

The feature space depends on the modality:

* **images**: flattened pixels in `[0, 1]` at a common size and mode (the smaller size, grayscale if either side is),
  compared by root-mean-square difference (the Euclidean distance divided by `sqrt(num_pixel_values)`), the very
  measure of `filters.image.NearCopyFilter`, so a DCR below that filter's threshold is a near-copy it would reject;
* **text**: TF-IDF of character 3-5-grams (within word boundaries) and word 1-2-grams, fitted on the real training
  texts, compared by cosine distance `1 - cos` (0: the same n-gram profile, 1: nothing in common).

A DCR means little alone; it is compared with the DCR of held-out real rows to the same training set (see
`privacy.audit`): fresh real data is the reference for "as far from the training records as new data is".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

__all__ = ["MEASURES", "Modality", "closest_record_distances", "infer_modality"]

Modality = Literal["image", "text"]

MEASURES: dict[str, str] = {
    "image": "RMS pixel distance",
    "text": "cosine distance of TF-IDF character and word n-grams",
}
"""The DCR measure of each modality, as cards and reports name it."""


def audited_modality(features: Mapping[str, Any], input_column: str) -> Modality | None:
    """The modality the audit measures `input_column` in, or `None` for a column it has no distance for (a missing
    column, vectors, ...)."""
    feature = features.get(input_column)
    kind = type(feature).__name__
    if kind == "Image":
        return "image"
    if kind == "Value" and getattr(feature, "dtype", None) in ("string", "large_string"):
        return "text"
    return None


def infer_modality(features: Mapping[str, Any], input_column: str) -> Modality:
    """`"image"` when `input_column` is a `datasets.Image` feature, `"text"` when it holds strings.

    Raises:
        `ValueError`: when the column is missing or holds something else (name the modality explicitly).
    """
    feature = features.get(input_column)
    if feature is None:
        raise ValueError(f"No column {input_column!r} in the features {list(features)}; set `input_column`.")
    modality = audited_modality(features, input_column)
    if modality is not None:
        return modality
    raise ValueError(
        f"Column {input_column!r} is a {feature!r}: the privacy audit measures images (`datasets.Image`) or texts "
        "(string `Value`). Pass `modality=` explicitly if the column holds one of them in another form."
    )


def _image_features(queries: Sequence[Any], records: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    from ..filters.image import image_matrix
    from ..image_utils import to_pil_image

    def geometry(image: Any) -> tuple[int, tuple[int, int]]:
        pil = to_pil_image(image)
        return (1 if pil.mode in ("L", "1", "I", "F") else 3), (pil.height, pil.width)

    (q_channels, (q_h, q_w)), (r_channels, (r_h, r_w)) = geometry(queries[0]), geometry(records[0])
    # Compared at the smaller size and the fewer channels, as the near-copy filter compares them.
    channels, size = min(q_channels, r_channels), (min(q_h, r_h), min(q_w, r_w))
    return image_matrix(list(queries), channels, size).numpy(), image_matrix(list(records), channels, size).numpy()


def _text_features(queries: Sequence[str], records: Sequence[str]) -> tuple[Any, Any]:
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    vectorizers = (
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True),
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
    )
    # Fitted on the training records only: the vocabulary and IDF describe the data being protected.
    fitted = [vectorizer.fit(records) for vectorizer in vectorizers]
    stack = lambda texts: normalize(sparse.hstack([v.transform(texts) for v in fitted]).tocsr())  # noqa: E731
    return stack(queries), stack(records)


def closest_record_distances(
    queries: Sequence[Any], records: Sequence[Any], modality: Modality
) -> tuple[np.ndarray, np.ndarray]:
    """The distance from each query to its closest record, and that record's index.

    Args:
        queries (`Sequence`): Synthetic samples (or held-out real rows): images or texts.
        records (`Sequence`): The real training records, of the same modality.
        modality (`str`): `"image"` or `"text"` (see the module docstring for each feature space).

    Returns:
        `(distances [len(queries)], indices [len(queries)])`: float64 distances and int64 record indices.
    """
    from sklearn.neighbors import NearestNeighbors

    if len(records) == 0:
        raise ValueError("There are no real training records to measure distances to.")
    if len(queries) == 0:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    if modality == "image":
        query_features, record_features = _image_features(queries, records)
        scale = 1.0 / max(query_features.shape[1], 1) ** 0.5  # Euclidean -> RMS pixel difference
        index = NearestNeighbors(n_neighbors=1, metric="euclidean").fit(record_features)
    elif modality == "text":
        query_features, record_features = _text_features([str(q) for q in queries], [str(r) for r in records])
        scale = 1.0
        index = NearestNeighbors(n_neighbors=1, metric="cosine", algorithm="brute").fit(record_features)
    else:
        raise ValueError(f"Unknown modality {modality!r}: use 'image' or 'text'.")
    distances, indices = index.kneighbors(query_features)
    # Cosine distances of identical vectors can come out a hair below 0.
    return np.clip(distances[:, 0] * scale, 0.0, None).astype(np.float64), indices[:, 0].astype(np.int64)

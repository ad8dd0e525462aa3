"""Confidence-gated pseudo-labels for unlabelled images, so the embedded DDPM can learn from the unlabelled pool.

The semi-supervised setting users are in: few labelled images, many unlabelled ones. A generator trained on the
labelled images alone knows nothing they do not, so its samples are a learned augmentation of them and targeting can
only re-weight that. Training the class-conditional DDPM on the pool as well needs a class per pool image: scikit-learn's
`LabelSpreading` (a k-nearest-neighbour graph over the labelled and unlabelled pixels, labels diffused along it) gives
one with a confidence, and only confident pool images are kept. The pool's own labels are never read.

Nothing here sees validation or test images: the caller passes the labelled training split and the pool only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PseudoLabels", "pseudo_label_images"]


@dataclass(frozen=True)
class PseudoLabels:
    """The confident part of an unlabelled set with its spread labels.

    Attributes:
        dataset (`datasets.Dataset`): The kept unlabelled rows, with the label column set to the pseudo-label.
        rows (`np.ndarray`): Their row indices in the unlabelled set.
        confidence (`np.ndarray`): Their label-spreading probability of the pseudo-label.
        num_unlabelled (`int`): Rows offered.
    """

    dataset: Any
    rows: np.ndarray
    confidence: np.ndarray
    num_unlabelled: int

    @property
    def kept_share(self) -> float:
        return len(self.rows) / max(1, self.num_unlabelled)


def pseudo_label_images(
    labelled: Any,
    unlabelled: Any,
    *,
    image_column: str = "image",
    label_column: str = "label",
    min_confidence: float = 0.9,
    n_neighbors: int = 7,
    alpha: float = 0.2,
) -> PseudoLabels:
    """Pseudo-labels `unlabelled` images by label spreading from `labelled` ones and keeps the confident ones.

    Images are compared as flattened 8x8 grayscale pixels in `[0, 1]` (the DDPM's own resolution). The spreading is
    deterministic (no seed needed): the same inputs always give the same labels.

    Args:
        labelled (`datasets.Dataset`): Labelled real images (`image_column`, integer `label_column`).
        unlabelled (`datasets.Dataset`): Unlabelled real images (`image_column`; a `label_column`, if present, is
            overwritten in the result and never read).
        image_column (`str`, defaults to `"image"`), label_column (`str`, defaults to `"label"`): Columns.
        min_confidence (`float`, defaults to 0.9): Keep a pool image when its spread label distribution gives its
            arg-max class at least this probability (in `[0, 1)`).
        n_neighbors (`int`, defaults to 7), alpha (`float`, defaults to 0.2): `LabelSpreading`'s kNN graph size and
            clamping factor (scikit-learn's digits example settings).

    Returns:
        [`PseudoLabels`].
    """
    from sklearn.semi_supervised import LabelSpreading

    from .digits import images_to_tensor

    if not 0.0 <= min_confidence < 1.0:
        raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence}.")
    if len(labelled) == 0:
        raise ValueError("Pseudo-labelling needs at least one labelled image; the labelled set is empty.")
    if len(unlabelled) == 0:
        raise ValueError("The unlabelled set is empty: there is nothing to pseudo-label.")
    if n_neighbors >= len(labelled) + len(unlabelled):
        raise ValueError(
            f"n_neighbors={n_neighbors} needs more than {n_neighbors} images; got "
            f"{len(labelled) + len(unlabelled)}. Lower n_neighbors."
        )
    features = np.concatenate(
        [
            images_to_tensor(labelled[image_column]).flatten(1).numpy(),
            images_to_tensor(unlabelled[image_column]).flatten(1).numpy(),
        ]
    )
    labels = np.asarray(labelled[label_column], dtype=np.int64)
    targets = np.concatenate([labels, np.full(len(unlabelled), -1, dtype=np.int64)])  # -1: unlabelled
    model = LabelSpreading(kernel="knn", n_neighbors=n_neighbors, alpha=alpha, max_iter=100).fit(features, targets)
    distributions = model.label_distributions_[len(labels) :]
    confidence = distributions.max(axis=1)
    predicted = model.classes_[distributions.argmax(axis=1)]
    rows = np.flatnonzero(confidence >= min_confidence)
    kept = unlabelled.select(rows.tolist())
    pseudo = predicted[rows].astype(np.int64).tolist()
    if label_column in kept.column_names:
        feature = kept.features[label_column]
        kept = kept.remove_columns(label_column).add_column(label_column, pseudo, feature=feature)
    else:
        kept = kept.add_column(label_column, pseudo)
    return PseudoLabels(kept, rows, confidence[rows], len(unlabelled))

"""Filters for image candidates: near-duplicates, near-copies of real training images (privacy), and realism.

All three compare images as flattened pixel vectors in `[0, 1]`, at the size and mode (grayscale or RGB) of the
first candidate; against real images, at the smaller of the two sizes and in grayscale if either is grayscale. Distances are either the root-mean-square pixel
difference (`"l2"`: the Euclidean distance divided by `sqrt(num_pixel_values)`, so thresholds do not depend on image
size) or the cosine distance `1 - cos` (`"cosine"`). For reference, on scikit-learn's 8x8 digits the nearest other
real digit is at RMS distance 0.042 at the least, 0.073 at the 1st percentile and 0.126 at the median (cosine:
0.0044, 0.011, 0.032).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from ..columns import NEAREST_REAL_DISTANCE_COLUMN, REALISM_COLUMN, SCORE_COLUMN, column_feature, set_column
from ..image_utils import pil_to_tensor, to_pil_image
from .base import FilterContext

if TYPE_CHECKING:
    from datasets import Dataset

Metric = Literal["l2", "cosine"]


def _geometry(images: list[Any]) -> tuple[int, tuple[int, int]]:
    first = to_pil_image(images[0])
    channels = 1 if first.mode in ("L", "1", "I", "F") else 3
    return channels, (first.height, first.width)


def _common_geometry(images: list[Any], real_images: list[Any]) -> tuple[int, tuple[int, int]]:
    # Compare at the smaller size and the fewer channels: downscaling loses less than upscaling invents.
    channels, (height, width) = _geometry(images)
    real_channels, (real_height, real_width) = _geometry(real_images)
    return min(channels, real_channels), (min(height, real_height), min(width, real_width))


def image_matrix(images: list[Any], channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Images as a float `[N, channels * H * W]` matrix of pixels in `[0, 1]`, converted and resized as given."""
    if not images:
        return torch.zeros(0, channels * size[0] * size[1])
    return torch.stack([pil_to_tensor(image, channels, size).reshape(-1) for image in images])


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, metric: Metric) -> torch.Tensor:
    """Distances `[len(a), len(b)]` between rows of pixel matrices: RMS (`"l2"`) or cosine distance."""
    if metric == "l2":
        return torch.cdist(a.double(), b.double()).float() / max(a.shape[1], 1) ** 0.5
    if metric == "cosine":
        a = torch.nn.functional.normalize(a.double(), dim=1, eps=1e-12)
        b = torch.nn.functional.normalize(b.double(), dim=1, eps=1e-12)
        return (1.0 - a @ b.T).clamp_min(0.0).float()
    raise ValueError(f"Unknown metric {metric!r}: use 'l2' (RMS pixel distance) or 'cosine'.")


def _with_column(candidates: Dataset, column: str, values: list[float]) -> Dataset:
    """`candidates` with the provenance column `column` set to `values`, typed as `hf_active_synth.columns` says."""
    # Re-running a filter (a resumed cycle) replaces its column instead of failing on a duplicate.
    return set_column(candidates, column, values, feature=column_feature(column))


def _check_threshold(threshold: float, metric: str) -> None:
    if metric not in ("l2", "cosine"):
        raise ValueError(f"Unknown metric {metric!r}: use 'l2' (RMS pixel distance) or 'cosine'.")
    if threshold < 0:
        raise ValueError(f"Distance thresholds must be >= 0, got {threshold}.")


class NearDuplicateFilter:
    """Drops candidates that nearly duplicate another candidate (pixel distance below `threshold`).

    Candidates are visited from the highest `synth_score` down (in row order without scores); each one is kept
    unless it lies within `threshold` of a candidate already kept.

    Args:
        threshold (`float`, defaults to 0.03): Distance under which two images count as duplicates.
        metric (`str`, defaults to `"l2"`): `"l2"` (RMS pixel distance) or `"cosine"`.
        same_label_only (`bool`, defaults to `False`): Only compare candidates with the same label.
    """

    name = "near_duplicate"
    checks_real_data = False  # compares candidates with each other only

    def __init__(self, threshold: float = 0.03, metric: Metric = "l2", same_label_only: bool = False):
        self.threshold = threshold
        self.metric = metric
        self.same_label_only = same_label_only

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset:
        _check_threshold(self.threshold, self.metric)
        if len(candidates) < 2:
            return candidates
        images = list(candidates[context.input_column])
        channels, size = _geometry(images)
        pixels = image_matrix(images, channels, size)
        distances = pairwise_distances(pixels, pixels, self.metric)
        if self.same_label_only:
            labels = torch.as_tensor(list(candidates[context.label_column]))
            distances[labels[:, None] != labels[None, :]] = float("inf")
        if SCORE_COLUMN in candidates.column_names:
            scores = np.asarray(candidates[SCORE_COLUMN], dtype=np.float64)
            order = np.argsort(-scores, kind="stable")
        else:
            order = np.arange(len(candidates))
        kept: list[int] = []
        for index in order.tolist():
            if not kept or distances[index, kept].min().item() >= self.threshold:
                kept.append(index)
        return candidates.select(sorted(kept))


class NearCopyFilter:
    """Privacy check: drops candidates closer than `threshold` to any real training image.

    Records each candidate's distance to its nearest real training image (`context.real_dataset`) in
    `synth_nearest_real_distance`, on every row it returns.

    Args:
        threshold (`float`, defaults to 0.04): Minimum allowed distance to a real image. The default is just under
            the smallest distance between two different real 8x8 digits (RMS): raise it for stricter privacy.
        metric (`str`, defaults to `"l2"`): `"l2"` (RMS pixel distance) or `"cosine"`.
        batch_size (`int`, defaults to 1024): Candidates compared at once (memory: batch × real images).
    """

    name = "near_copy"
    checks_real_data = True

    def __init__(self, threshold: float = 0.04, metric: Metric = "l2", batch_size: int = 1024):
        self.threshold = threshold
        self.metric = metric
        self.batch_size = batch_size

    def nearest_real_distances(self, candidates: Dataset, context: FilterContext) -> np.ndarray:
        """Distance from each candidate to its nearest real training image, shape `[len(candidates)]`."""
        images = list(candidates[context.input_column])
        real_images = list(context.real_dataset[context.input_column])
        if not real_images:
            raise ValueError("context.real_dataset is empty: the near-copy check needs the real training images.")
        channels, size = _common_geometry(images, real_images)
        real = image_matrix(real_images, channels, size)
        nearest = []
        for start in range(0, len(images), self.batch_size):
            batch = image_matrix(images[start : start + self.batch_size], channels, size)
            nearest.append(pairwise_distances(batch, real, self.metric).min(dim=1).values)
        return torch.cat(nearest).numpy().astype(np.float64)

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset:
        _check_threshold(self.threshold, self.metric)
        if len(candidates) == 0:
            return _with_column(candidates, NEAREST_REAL_DISTANCE_COLUMN, [])
        distances = self.nearest_real_distances(candidates, context)
        candidates = _with_column(candidates, NEAREST_REAL_DISTANCE_COLUMN, distances.tolist())
        return candidates.select(np.flatnonzero(distances >= self.threshold))


class RealismFilter:
    """Scores how real each candidate looks with a real-vs-synthetic discriminator fitted on the fly.

    A logistic regression on standardized pixels learns to tell real training images (`context.real_dataset`) from
    this batch of candidates; each candidate's `synth_realism` is its cross-fitted probability of being real
    (`n_splits`-fold, so no candidate is scored by a model that saw it). About 0.5 means indistinguishable from
    real data, near 0 obviously synthetic. Classes are balanced by weight. With a single candidate there is nothing
    to cross-fit: its realism is NaN and no threshold drops it.

    A fixed `min_realism` means different things for different batches (the discriminator is refitted on each), so
    the threshold can instead be calibrated on held-out real images at every call: with `calibration_quantile=q`
    it is the q-quantile of the realism the same discriminators give real images they never saw, either
    `calibration_images` (scored by every fold's discriminator) or, by default, the real training images
    themselves (each scored by the fold that held it out). `q=0.05` rejects what looks less real than 95% of real
    images do. The threshold of the last call is kept in `threshold_`.

    Args:
        min_realism (`float`, *optional*): Drop candidates scoring below this; `None` (default) only records scores
            (unless `calibration_quantile` is set).
        max_side (`int`, defaults to 32): Images are compared at their candidates' size, shrunk so that no side
            exceeds this.
        n_splits (`int`, defaults to 5): Cross-fitting folds.
        regularization (`float`, defaults to 0.01): Inverse regularization strength `C` of the logistic
            regression. Strong regularization keeps the discriminator from memorising individual candidates.
        seed (`int`, defaults to 0): Seeds the fold assignment.
        calibration_quantile (`float`, *optional*): Calibrate the threshold as this quantile (in `(0, 1)`) of
            held-out real images' realism; exclusive with `min_realism`.
        calibration_images (`Sequence`, *optional*): Held-out real images (e.g. the validation images, never the
            test images) to calibrate on; defaults to the cross-fitted real training images.
    """

    name = "realism"
    # It looks at the real images, but drops candidates for looking synthetic, not for being close to one of them.
    checks_real_data = False

    def __init__(
        self,
        min_realism: float | None = None,
        max_side: int = 32,
        n_splits: int = 5,
        regularization: float = 0.01,
        seed: int = 0,
        *,
        calibration_quantile: float | None = None,
        calibration_images: Sequence[Any] | None = None,
    ):
        self.min_realism = min_realism
        self.max_side = max_side
        self.n_splits = n_splits
        self.regularization = regularization
        self.seed = seed
        self.calibration_quantile = calibration_quantile
        self.calibration_images = calibration_images

    @classmethod
    def calibrated(
        cls, quantile: float = 0.05, calibration_images: Sequence[Any] | None = None, **kwargs: Any
    ) -> RealismFilter:
        """A filter rejecting candidates that look less real than the `quantile` of held-out real images.

        Args:
            quantile (`float`, defaults to 0.05): The share of held-out real images that would be rejected.
            calibration_images (`Sequence`, *optional*): Held-out real images (e.g. validation images); defaults to
                the cross-fitted real training images.
            kwargs: The other constructor arguments (`max_side`, `n_splits`, `regularization`, `seed`).
        """
        return cls(calibration_quantile=quantile, calibration_images=calibration_images, **kwargs)

    def realism_scores(self, candidates: Dataset, context: FilterContext) -> np.ndarray:
        """Cross-fitted discriminator probability that each candidate is real, shape `[len(candidates)]`."""
        return self._cross_fit(candidates, context)[0]

    def _cross_fit(self, candidates: Dataset, context: FilterContext) -> tuple[np.ndarray, np.ndarray]:
        """`(candidate realism, held-out real realism)`: the latter for the calibration images (every fold's
        scores, pooled) or else for each real training image from the fold that held it out."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        images = list(candidates[context.input_column])
        real_images = list(context.real_dataset[context.input_column])
        if len(real_images) < 2:
            raise ValueError(
                f"The realism discriminator needs at least 2 real training images; context.real_dataset has "
                f"{len(real_images)}."
            )
        if len(images) < 2:  # nothing to cross-fit against: realism unknown
            return np.full(len(images), np.nan), np.full(0, np.nan)
        channels, (height, width) = _geometry(images)
        shrink = min(1.0, self.max_side / max(height, width))
        size = (max(1, round(height * shrink)), max(1, round(width * shrink)))
        features = torch.cat([image_matrix(real_images, channels, size), image_matrix(images, channels, size)])
        features = features.numpy().astype(np.float64)
        held_out = None
        if self.calibration_images is not None:
            held_out = image_matrix(list(self.calibration_images), channels, size).numpy().astype(np.float64)
        is_real = np.r_[np.ones(len(real_images), dtype=int), np.zeros(len(images), dtype=int)]
        scores, real_scores, pooled = np.empty(len(images)), np.empty(len(real_images)), []
        n_splits = min(self.n_splits, len(images), len(real_images))
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.seed)
        for train_rows, test_rows in folds.split(features, is_real):
            model = make_pipeline(
                StandardScaler(),
                LogisticRegression(C=self.regularization, class_weight="balanced", max_iter=1000),
            )
            model.fit(features[train_rows], is_real[train_rows])
            synthetic_rows = test_rows[is_real[test_rows] == 0]
            if len(synthetic_rows):
                scores[synthetic_rows - len(real_images)] = model.predict_proba(features[synthetic_rows])[:, 1]
            real_rows = test_rows[is_real[test_rows] == 1]
            if held_out is None and len(real_rows):
                real_scores[real_rows] = model.predict_proba(features[real_rows])[:, 1]
            elif held_out is not None and len(held_out):
                pooled.append(model.predict_proba(held_out)[:, 1])
        return scores, (real_scores if held_out is None else np.concatenate(pooled or [np.empty(0)]))

    def _check_options(self) -> None:
        if self.min_realism is not None and not 0.0 <= self.min_realism <= 1.0:
            raise ValueError(f"min_realism is a probability: pass a value in [0, 1] or None, got {self.min_realism}.")
        if self.calibration_quantile is not None:
            if not 0.0 < self.calibration_quantile < 1.0:
                raise ValueError(f"calibration_quantile must be in (0, 1), got {self.calibration_quantile}.")
            if self.min_realism is not None:
                raise ValueError("Pass min_realism (a fixed threshold) or calibration_quantile, not both.")

    def __call__(self, candidates: Dataset, context: FilterContext) -> Dataset:
        self._check_options()
        self.threshold_ = self.min_realism
        if len(candidates) == 0:
            return _with_column(candidates, REALISM_COLUMN, [])
        scores, real_scores = self._cross_fit(candidates, context)
        candidates = _with_column(candidates, REALISM_COLUMN, scores.tolist())
        if self.calibration_quantile is not None:
            finite = real_scores[np.isfinite(real_scores)]
            self.threshold_ = float(np.quantile(finite, self.calibration_quantile)) if len(finite) else None
        if self.threshold_ is None:
            return candidates
        return candidates.select(np.flatnonzero(~(scores < self.threshold_)))  # NaN (unknown) is kept

"""Independent audits of accepted synthetic samples: an oracle's label check and held-out members' disagreement.

The ensemble that guides generation and selects candidates cannot vouch for the labels of what it selected: a
sample chosen *because* the ensemble disagrees on it is exactly where the ensemble is least trustworthy. So the audit
uses judges that took no part in either step:

* an **oracle**: a classifier of another model family, fitted on real labelled data only, that reads every accepted
  sample and says whether it agrees with the label the sample was generated for (`audit_accepted`):
  - images (`ImageOracle`): an RBF SVC (or a kNN) on flattened pixels, fitted on every real image outside the test
    split; on the 8x8 digits it is about 99 % accurate on held-out real digits;
  - text (`TextOracle`): TF-IDF word n-grams + logistic regression fitted on the full labelled training split.
    The issue suggests a *fine-tuned* classifier; this is a different, deliberately cheap model family (about
    79 % accurate on held-out Rotten Tomatoes snippets) chosen for its independence from the guiding ensemble:
    its errors are not the ensemble's errors. Read agreement as "the oracle's view", not ground truth, and compare it with the oracle's
    own accuracy on real held-out rows (`oracle.agreement(real_test_texts, real_test_labels)`);
* **held-out members** (`heldout_disagreement`): ensemble members that neither guided nor selected, whose mean
  disagreement (BALD, variance) on the accepted samples measures how hard those samples really are.

Oracles follow scikit-learn's conventions: constructors store parameters, `fit` returns `self`, fitted state ends
in `_`. They are deterministic: the same data and seed give the same predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from ..acquisition import uncertainty_summary
from ..generators.base import CYCLE_COLUMN
from ..image_utils import pil_to_tensor, to_pil_image

__all__ = ["ImageOracle", "OracleAudit", "TextOracle", "audit_accepted", "audit_by_cycle", "heldout_disagreement"]


class OracleAudit:
    """An independent label oracle: `fit(real_inputs, labels)`, then `predict` / `agreement` on synthetic inputs.

    Subclasses turn raw inputs into features (`_features`) and build the scikit-learn estimator
    (`_build_estimator`); the rest is shared.

    Attributes (after `fit`):
        estimator_: The fitted scikit-learn estimator.
        classes_ (`np.ndarray`): The labels seen in fitting.
    """

    name: str = "oracle"

    def _features(self, inputs: Sequence[Any], fitting: bool) -> Any:
        raise NotImplementedError

    def _build_estimator(self) -> Any:
        raise NotImplementedError

    def fit(self, inputs: Sequence[Any], labels: Sequence[int]) -> OracleAudit:
        """Fits the oracle on real, labelled inputs (never on synthetic ones, never on the test split).

        Args:
            inputs (`Sequence`): Real inputs (images or texts, see the subclass).
            labels (`Sequence[int]`): Their labels.

        Returns:
            The fitted oracle (`self`).
        """
        labels = np.asarray(labels)
        if len(inputs) != len(labels) or len(labels) == 0:
            raise ValueError(f"fit needs as many labels as inputs, and some: got {len(inputs)} and {len(labels)}.")
        if len(np.unique(labels)) < 2:
            raise ValueError("The oracle needs real examples of at least 2 classes to be fitted.")
        features = self._features(inputs, fitting=True)
        self.estimator_ = self._build_estimator().fit(features, labels)
        self.classes_ = self.estimator_.classes_
        return self

    def predict(self, inputs: Sequence[Any]) -> np.ndarray:
        """The oracle's label for each input, an integer array `[N]`."""
        if not hasattr(self, "estimator_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(real_inputs, labels) first.")
        if len(inputs) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self.estimator_.predict(self._features(inputs, fitting=False))).astype(np.int64)

    def agreement(self, inputs: Sequence[Any], labels: Sequence[int]) -> float:
        """Share of `inputs` whose oracle label equals the given label (NaN for no inputs)."""
        labels = np.asarray(labels, dtype=np.int64)
        if len(inputs) != len(labels):
            raise ValueError(f"Got {len(inputs)} inputs but {len(labels)} labels.")
        if len(labels) == 0:
            return math.nan
        return float(np.mean(self.predict(inputs) == labels))


class ImageOracle(OracleAudit):
    """Images: an RBF SVC (or kNN) on flattened pixels in `[0, 1]`.

    Accepts anything `image_utils.to_pil_image` reads: PIL images (what a `datasets.Image()` column decodes to,
    e.g. the digits' 8x8 grayscale images), `datasets` image dicts, `[H, W(, C)]` arrays and `[C, H, W]` tensors.
    Every image is converted to the size and mode of the first real image seen in `fit` (synthetic RGB or larger
    images included), so real and synthetic samples are compared on the same pixels.

    Args:
        method (`"svc"` or `"knn"`, defaults to `"svc"`): The classifier.
        C (`float`, defaults to 10.0): SVC regularization.
        gamma (`float` or `"scale"`, defaults to `"scale"`): SVC RBF width.
        n_neighbors (`int`, defaults to 3): kNN neighbours.
        image_size (`tuple[int, int]`, *optional*): `(height, width)` to resize to; defaults to the first real image's.
        channels (`int`, *optional*): 1 or 3; defaults to 1 when every real image is grayscale, else 3.
        seed (`int`, defaults to 0): Seed of the SVC (it draws nothing random without probability estimates, but
            the seed is fixed so the oracle is reproducible whatever scikit-learn does).
    """

    name = "image_oracle"

    def __init__(
        self,
        method: Literal["svc", "knn"] = "svc",
        C: float = 10.0,
        gamma: float | str = "scale",
        n_neighbors: int = 3,
        image_size: tuple[int, int] | None = None,
        channels: int | None = None,
        seed: int = 0,
    ):
        self.method = method
        self.C = C
        self.gamma = gamma
        self.n_neighbors = n_neighbors
        self.image_size = image_size
        self.channels = channels
        self.seed = seed

    def _build_estimator(self) -> Any:
        if self.method == "svc":
            from sklearn.svm import SVC

            return SVC(C=self.C, gamma=self.gamma, kernel="rbf", random_state=self.seed)
        if self.method == "knn":
            from sklearn.neighbors import KNeighborsClassifier

            return KNeighborsClassifier(n_neighbors=self.n_neighbors)
        raise ValueError(f"Unknown method {self.method!r}; choose 'svc' or 'knn'.")

    def _features(self, inputs: Sequence[Any], fitting: bool) -> np.ndarray:
        if fitting:
            pils = [to_pil_image(image) for image in inputs]
            first = pils[0]
            self.image_size_ = tuple(self.image_size) if self.image_size else (first.height, first.width)
            grayscale = all(pil.mode in ("L", "1", "I", "F") for pil in pils)
            self.channels_ = self.channels if self.channels else (1 if grayscale else 3)
            inputs = pils
        return np.stack(
            [
                pil_to_tensor(image, channels=self.channels_, size=self.image_size_).numpy().reshape(-1)
                for image in inputs
            ]
        ).astype(np.float64)


class TextOracle(OracleAudit):
    """Texts: TF-IDF word uni- and bigrams + multinomial logistic regression (a model family the ensemble is not).

    Args:
        C (`float`, defaults to 4.0): Inverse regularization of the logistic regression.
        ngram_range (`tuple[int, int]`, defaults to `(1, 2)`): Word n-grams.
        min_df (`int`, defaults to 1): Minimum document frequency of an n-gram.
        max_iter (`int`, defaults to 2000): Solver iterations.
        seed (`int`, defaults to 0): `random_state` of the solver.
    """

    name = "text_oracle"

    def __init__(
        self,
        C: float = 4.0,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 1,
        max_iter: int = 2000,
        seed: int = 0,
    ):
        self.C = C
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_iter = max_iter
        self.seed = seed

    def _build_estimator(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        return make_pipeline(
            TfidfVectorizer(ngram_range=tuple(self.ngram_range), min_df=self.min_df, sublinear_tf=True),
            LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed),
        )

    def _features(self, inputs: Sequence[Any], fitting: bool) -> list[str]:
        if not all(isinstance(text, str) for text in inputs):
            raise TypeError("TextOracle reads strings; pass the text column.")
        return list(inputs)


def audit_accepted(
    accepted_dataset: Any,
    oracle: OracleAudit,
    input_column: str,
    label_column: str = "label",
) -> dict[str, Any]:
    """The oracle's verdict on accepted synthetic samples: overall and per-class agreement, and the off-label rows.

    Args:
        accepted_dataset (`datasets.Dataset` or `Mapping[str, Sequence]`): The accepted samples of one cycle (or
            of several); anything indexable by column name.
        oracle ([`OracleAudit`]): A fitted oracle that never guided nor selected.
        input_column (`str`): The image or text column.
        label_column (`str`, defaults to `"label"`): The label each sample was generated for.

    Returns:
        `dict` (JSON-ready):
        - `oracle_label_agreement` (`float` or `None` when there is no sample): share of samples the oracle labels
          as they are labelled;
        - `num_samples` (`int`);
        - `per_class`: `{str(label): {"agreement", "count"}}` over the samples' given labels;
        - `off_label_indices` (`list[int]`): row positions where the oracle disagrees, ascending;
        - `off_label_oracle_labels` (`list[int]`): the oracle's label for each of those rows;
        - `oracle` (`str`): the oracle's name.
    """
    inputs, labels = _inputs_and_labels(accepted_dataset, input_column, label_column)
    predictions = oracle.predict(inputs)
    return {**_verdict(labels, predictions, np.arange(len(labels))), "oracle": oracle.name}


def audit_by_cycle(
    synthetic_dataset: Any,
    oracle: OracleAudit,
    input_column: str,
    label_column: str = "label",
    cycle_column: str = CYCLE_COLUMN,
) -> dict[str, dict[str, Any]]:
    """`audit_accepted` per synthesis cycle of a synthetic dataset that spans several (grouped by `cycle_column`).

    Returns:
        `{str(cycle): audit}` in cycle order; each audit is `audit_accepted`'s dict, with `off_label_indices`
        given as row positions in `synthetic_dataset` (not within the cycle).
    """
    inputs, labels = _inputs_and_labels(synthetic_dataset, input_column, label_column)
    cycles = np.asarray([int(c) for c in synthetic_dataset[cycle_column]], dtype=np.int64)
    predictions = oracle.predict(inputs)
    return {
        str(int(cycle)): {**_verdict(labels, predictions, np.flatnonzero(cycles == cycle)), "oracle": oracle.name}
        for cycle in np.unique(cycles)
    }


def _inputs_and_labels(dataset: Any, input_column: str, label_column: str) -> tuple[list[Any], np.ndarray]:
    inputs = list(dataset[input_column])
    labels = np.asarray([int(label) for label in dataset[label_column]], dtype=np.int64)
    if len(inputs) != len(labels):
        raise ValueError(f"{input_column!r} has {len(inputs)} rows but {label_column!r} has {len(labels)}.")
    return inputs, labels


def _verdict(labels: np.ndarray, predictions: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    labels, predictions = labels[rows], predictions[rows]
    agrees = predictions == labels
    per_class = {
        str(int(label)): {"agreement": float(agrees[labels == label].mean()), "count": int((labels == label).sum())}
        for label in np.unique(labels)
    }
    off = np.flatnonzero(~agrees)
    return {
        "oracle_label_agreement": float(agrees.mean()) if len(labels) else None,
        "num_samples": int(len(labels)),
        "per_class": per_class,
        "off_label_indices": rows[off].tolist(),
        "off_label_oracle_labels": predictions[off].tolist(),
    }


def heldout_disagreement(
    member_logits: torch.Tensor,
    judge_members: Sequence[int],
    excluded_members: Sequence[int] = (),
) -> dict[str, float]:
    """Mean disagreement on a set of samples under only the held-out judging members.

    Args:
        member_logits (`torch.Tensor`): Logits `[N, C, K]` of all `K` members on the `N` audited samples.
        judge_members (`Sequence[int]`): Member indices (on the `K` axis) that judge the audit. They must have
            taken no part in guiding generation or selecting candidates; at least two, since one model has no
            disagreement. Note that the loop's own JUDGE members (which score and filter candidates) *did* select,
            so they belong in `excluded_members`, not here: audit members are a third, held-out group.
        excluded_members (`Sequence[int]`, *optional*): The members that did guide or select; checked to be
            disjoint from `judge_members`.

    Returns:
        `dict[str, float]`: `bald`, `variance` and `entropy` means over the `N` samples (NaN for `N = 0`, see
        `acquisition.uncertainty_summary`) and `num_members`.
    """
    if not isinstance(member_logits, torch.Tensor) or member_logits.ndim != 3:
        raise ValueError("member_logits must be a tensor shaped [N, C, K] (samples, classes, members).")
    members = [int(k) for k in judge_members]
    num_members = member_logits.shape[2]
    if len(members) < 2 or len(set(members)) != len(members):
        raise ValueError(f"Need at least 2 distinct judging members to measure disagreement, got {members}.")
    if any(not 0 <= k < num_members for k in members):
        raise IndexError(f"judge_members {members} out of range for K={num_members} members.")
    overlap = sorted(set(members) & {int(k) for k in excluded_members})
    if overlap:
        raise ValueError(f"Members {overlap} guided or selected, so they cannot judge the audit.")
    summary: dict[str, float] = dict(uncertainty_summary(member_logits[:, :, members]))
    summary["num_members"] = len(members)
    return summary

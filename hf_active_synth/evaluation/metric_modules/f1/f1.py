"""F1 score, with `average="macro"` and friends (an offline copy of the Hub's `f1`).

Shipped inside `hf_active_synth` so that `evaluate.load` never has to reach the Hugging Face Hub; computed with
scikit-learn's `f1_score`. Self-contained on purpose: `evaluate` copies this file into its modules cache.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import f1_score

_DESCRIPTION = """
The F1 score is the harmonic mean of precision and recall: F1 = 2 * (precision * recall) / (precision + recall).
For more than two classes choose how per-class scores are combined with `average` (e.g. `"macro"`).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): Predicted class ids.
    references (`list[int]`): Ground-truth class ids.
    labels (`list[int]`, *optional*): The labels to include when `average != "binary"`; defaults to every label
        present in `predictions` or `references` (scikit-learn's default).
    pos_label (`int`, defaults to 1): The positive class when `average="binary"`.
    average (`str` or `None`, defaults to `"binary"`): One of `"binary"`, `"micro"`, `"macro"`, `"weighted"`, or
        `None` for per-class scores.
    sample_weight (`list[float]`, *optional*): Per-example weights.
    zero_division (`"warn"`, `0.0`, `1.0` or `nan`, defaults to `"warn"`): The value for classes without predicted
        or true examples.

Returns:
    f1 (`float` or `list[float]`): The F1 score, or one score per class if `average=None`.

Examples:
    >>> f1 = evaluate.load("hf_active_synth/evaluation/metric_modules/f1")
    >>> f1.compute(predictions=[0, 2, 1, 0], references=[0, 1, 2, 0], average="macro")
    {'f1': 0.3333333333333333}
"""

_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, pp. 2825-2830, 2011."
_REFERENCE_URL = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    """F1 score of class-id predictions, computed with `sklearn.metrics.f1_score`."""

    def _info(self) -> evaluate.MetricInfo:
        class_ids = datasets.Value("int64")
        features = datasets.Features({"predictions": class_ids, "references": class_ids})
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=features,
            reference_urls=[_REFERENCE_URL],
        )

    def _compute(
        self,
        predictions,
        references,
        labels=None,
        pos_label=1,
        average="binary",
        sample_weight=None,
        zero_division="warn",
    ):
        score = f1_score(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        return {"f1": float(score) if np.ndim(score) == 0 else np.asarray(score, dtype=float).tolist()}

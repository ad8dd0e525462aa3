"""Accuracy: the fraction of predictions equal to their references (an offline copy of the Hub's `accuracy`).

Shipped inside `hf_active_synth` so that `evaluate.load` never has to reach the Hugging Face Hub; computed with
scikit-learn's `accuracy_score`. Self-contained on purpose: `evaluate` copies this file into its modules cache.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score

_DESCRIPTION = """
Accuracy is the proportion of correct predictions among the total number of cases processed:
Accuracy = (TP + TN) / (TP + TN + FP + FN).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): Predicted class ids.
    references (`list[int]`): Ground-truth class ids.
    normalize (`bool`, defaults to `True`): If `False`, return the number of correct predictions instead of the
        fraction.
    sample_weight (`list[float]`, *optional*): Per-example weights.

Returns:
    accuracy (`float` or `int`): The fraction (or count, if `normalize=False`) of correct predictions.

Examples:
    >>> accuracy = evaluate.load("hf_active_synth/evaluation/metric_modules/accuracy")
    >>> accuracy.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'accuracy': 0.75}
"""

_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, pp. 2825-2830, 2011."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    """Accuracy of class-id predictions, computed with `sklearn.metrics.accuracy_score`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        value = accuracy_score(references, predictions, normalize=normalize, sample_weight=sample_weight)
        return {"accuracy": float(value) if normalize or sample_weight is not None else int(value)}

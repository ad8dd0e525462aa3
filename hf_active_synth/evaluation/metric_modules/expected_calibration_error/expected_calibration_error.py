"""Expected calibration error (ECE) of predicted class probabilities, with equal-width confidence bins.

Shipped inside `hf_active_synth` so that `evaluate.load` never has to reach the Hugging Face Hub. Self-contained on
purpose: `evaluate` copies this file into its modules cache.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Expected calibration error (Naeini et al., 2015; Guo et al., 2017) of the top-label confidence: predictions are
grouped into `n_bins` equal-width bins of confidence max_c p(y=c|x) over [0, 1], bin m holding the confidences in
((m-1)/M, m/M], and ECE = sum_m |B_m| / N * |accuracy(B_m) - confidence(B_m)|. Zero for a perfectly calibrated
model, at most 1.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): Class probabilities shaped [N, C] (each row sums to 1). Pass
        probabilities, not logits: apply a softmax first.
    references (`list[int]`): Ground-truth class ids in [0, C).
    n_bins (`int`, defaults to 15): Number of equal-width confidence bins.

Returns:
    expected_calibration_error (`float`): The ECE, in [0, 1].

Examples:
    >>> ece = evaluate.load("hf_active_synth/evaluation/metric_modules/expected_calibration_error")
    >>> ece.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 0], n_bins=10)
    {'expected_calibration_error': 0.45}
"""

_CITATION = """
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={International Conference on Machine Learning},
  pages={1321--1330},
  year={2017}
}
"""


def _check_inputs(probabilities, references, n_bins):
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    if probabilities.ndim != 2 or probabilities.shape[0] == 0 or probabilities.shape[1] < 2:
        raise ValueError(
            f"predictions must be class probabilities shaped [N, C] with N >= 1 and C >= 2, got shape "
            f"{probabilities.shape}. For a binary classifier pass both columns, [1 - p, p]."
        )
    if references.shape != (probabilities.shape[0],):
        raise ValueError(
            f"references must hold one class id per prediction row: got {references.shape[0]} references for "
            f"{probabilities.shape[0]} predictions."
        )
    if not np.all(np.isfinite(probabilities)) or probabilities.min() < 0.0 or probabilities.max() > 1.0:
        raise ValueError("predictions must be probabilities in [0, 1]; these look like logits: apply a softmax first.")
    row_sums = probabilities.sum(axis=1)
    if not np.allclose(row_sums, 1.0, atol=1e-3):
        worst = float(row_sums[np.argmax(np.abs(row_sums - 1.0))])
        raise ValueError(
            f"each row of predictions must sum to 1 (one row sums to {worst:.4f}); pass softmax probabilities over "
            "all classes."
        )
    if references.min() < 0 or references.max() >= probabilities.shape[1]:
        raise ValueError(
            f"references must be class ids in [0, {probabilities.shape[1]}), got values in "
            f"[{references.min()}, {references.max()}]."
        )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExpectedCalibrationError(evaluate.Metric):
    """Top-label expected calibration error with equal-width bins."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/1706.04599"],
        )

    def _compute(self, predictions, references, n_bins=15):
        probabilities = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.int64)
        _check_inputs(probabilities, references, n_bins)
        confidences = probabilities.max(axis=1)
        correct = (probabilities.argmax(axis=1) == references).astype(np.float64)
        # Right-closed bins ((m-1)/M, m/M]; a confidence is never 0 (it is at least 1/C), so bin 0 is (0, 1/M].
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        bins = np.searchsorted(edges[1:-1], confidences, side="left")
        confidence_sums = np.bincount(bins, weights=confidences, minlength=n_bins)
        correct_sums = np.bincount(bins, weights=correct, minlength=n_bins)
        ece = np.abs(correct_sums - confidence_sums).sum() / len(confidences)
        return {"expected_calibration_error": float(ece)}

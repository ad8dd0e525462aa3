"""Acquisition functions: pure functions of ensemble logits ``[N, C, K]`` that return uncertainty scores ``[N]``.

Every function takes *logits* (never probabilities, so nothing has to be guessed from value ranges) with ``N``
examples, ``C`` classes and ``K`` ensemble members or stochastic passes, and returns one float score per example
where **higher means more uncertain**. They are the scores that choose targets for synthesis, re-rank generated
candidates, and guide diffusion sampling, so they are also differentiable (``random`` aside).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

AcquisitionName = Literal["entropy", "variance", "bald", "margin", "random"]
AcquisitionFunction = Callable[..., torch.Tensor]


def _check_logits(logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"Expected a torch.Tensor of logits shaped [N, C, K], got {type(logits).__name__}.")
    if logits.ndim != 3:
        raise ValueError(
            f"Expected logits shaped [N, C, K] (examples, classes, members), got shape {tuple(logits.shape)}. "
            "For a single model, add a member axis with `logits.unsqueeze(-1)`."
        )
    if logits.shape[1] < 2:
        raise ValueError(f"Need at least 2 classes to score uncertainty, got C={logits.shape[1]}.")
    return logits.float()


def member_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Per-member class probabilities ``[N, C, K]`` (softmax over the class axis)."""
    return torch.softmax(_check_logits(logits), dim=1)


def mean_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Ensemble-mean predictive distribution ``p̄(y|x)``, shaped ``[N, C]``."""
    return member_probabilities(logits).mean(dim=2)


def _entropy(probabilities: torch.Tensor, dim: int) -> torch.Tensor:
    # xlogy gives 0·log 0 = 0, so one-hot distributions have exactly zero entropy.
    return -torch.special.xlogy(probabilities, probabilities).sum(dim=dim)


def predictive_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the ensemble-mean prediction, ``H(ȳ|x) = -Σ_c p̄_c log p̄_c`` (nats). Shape ``[N]``."""
    return _entropy(mean_probabilities(logits), dim=1)


def expected_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over members of each member's predictive entropy, ``E_k[H(y|x, θ_k)]``. Shape ``[N]``."""
    return _entropy(member_probabilities(logits), dim=1).mean(dim=1)


def ensemble_variance(logits: torch.Tensor) -> torch.Tensor:
    """The proposal's ensemble variance ``Var(y|x) = 1/K Σ_k ||f_k(x) - f̄(x)||²`` on class probabilities.

    ``f_k(x)`` is member ``k``'s probability vector and ``f̄(x)`` their mean; the population variance (``1/K``) of
    each class probability is summed over classes. Zero when all members agree. Shape ``[N]``.
    """
    probabilities = member_probabilities(logits)
    return probabilities.var(dim=2, unbiased=False).sum(dim=1)


def bald(logits: torch.Tensor) -> torch.Tensor:
    """BALD mutual information ``I(y; θ | x) = H(ȳ|x) - E_k[H(y|x, θ_k)]`` (Houlsby et al., 2011). Shape ``[N]``.

    High only where members are individually confident but disagree (epistemic uncertainty). Clamped at zero to
    absorb floating-point round-off.
    """
    return (predictive_entropy(logits) - expected_entropy(logits)).clamp_min(0.0)


def margin(logits: torch.Tensor) -> torch.Tensor:
    """One minus the margin between the two most probable classes of the mean prediction. Shape ``[N]``.

    ``1`` when the top two classes tie, ``0`` when one class has all the mass.
    """
    top_two = mean_probabilities(logits).topk(2, dim=1).values
    return 1.0 - (top_two[:, 0] - top_two[:, 1])


def random_scores(logits: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Uniform random scores in ``[0, 1)`` from a seeded generator: random targets or selection for the baselines. Shape ``[N]``."""
    logits = _check_logits(logits)
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(logits.shape[0], generator=generator)


ACQUISITION_FUNCTIONS: dict[str, AcquisitionFunction] = {
    "entropy": predictive_entropy,
    "variance": ensemble_variance,
    "bald": bald,
    "margin": margin,
    "random": random_scores,
}
"""Resolves the acquisition names used in configs and on the command line."""


def get_acquisition_function(name: AcquisitionName | str) -> AcquisitionFunction:
    """Returns the acquisition function called ``name`` (one of ``ACQUISITION_FUNCTIONS``)."""
    try:
        return ACQUISITION_FUNCTIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown acquisition function {name!r}; choose one of {sorted(ACQUISITION_FUNCTIONS)}."
        ) from None


def score(logits: torch.Tensor, name: AcquisitionName | str, seed: int = 0) -> torch.Tensor:
    """Scores ``logits`` with the acquisition function ``name``; ``seed`` is only used by ``random``."""
    function = get_acquisition_function(name)
    if function is random_scores:
        return random_scores(logits, seed=seed)
    return function(logits)


def uncertainty_summary(logits: torch.Tensor) -> dict[str, float]:
    """Mean predictive entropy, ensemble variance and BALD over a set of examples (the cycle history's view)."""
    if logits.shape[0] == 0:
        return {"entropy": float("nan"), "variance": float("nan"), "bald": float("nan")}
    return {
        "entropy": predictive_entropy(logits).mean().item(),
        "variance": ensemble_variance(logits).mean().item(),
        "bald": bald(logits).mean().item(),
    }


def select_per_class(
    scores: torch.Tensor,
    labels: torch.Tensor,
    per_class: int,
    num_classes: int,
) -> dict[int, list[int]]:
    """Indices of the ``per_class`` highest-scoring examples of each class, most uncertain first.

    Ties are broken by the lower index, so the selection is deterministic. Classes with fewer examples than
    ``per_class`` return all of theirs; classes with none return an empty list.
    """
    if scores.shape != labels.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} must have the same shape.")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}.")
    selected: dict[int, list[int]] = {}
    for label in range(num_classes):
        indices = torch.nonzero(labels == label, as_tuple=True)[0]
        # A stable sort on -score keeps lower indices first among equal scores.
        order = torch.sort(-scores[indices], stable=True).indices
        selected[label] = indices[order[:per_class]].tolist()
    return selected

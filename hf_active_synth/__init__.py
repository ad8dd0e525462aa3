"""hf-active-synth: targeted synthetic data, generated where your model is uncertain.

The public API: the trainer and its config, the uncertainty estimators, acquisition functions, the generator and
filter protocols, and the built-in filters. Generators for text (LLMs) and images (diffusion) live in
`hf_active_synth.generators.text` and `hf_active_synth.generators.diffusion`.

Names are imported lazily (on first use), so `import hf_active_synth` and light submodules such as
`hf_active_synth.acquisition` do not pay for importing `transformers.Trainer`, peft and accelerate up front.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "ACQUISITION_FUNCTIONS": "acquisition",
    "bald": "acquisition",
    "ensemble_variance": "acquisition",
    "margin": "acquisition",
    "predictive_entropy": "acquisition",
    "random_scores": "acquisition",
    "CycleCallback": "callbacks",
    "ActiveSynthesisConfig": "config",
    "ActiveSynthesisHistory": "cycle",
    "CycleResult": "cycle",
    "ExactDuplicateFilter": "filters",
    "Filter": "filters",
    "FilterContext": "filters",
    "LabelAgreementFilter": "filters",
    "GenerationRequest": "generators.base",
    "Generator": "generators.base",
    "SynthesisTarget": "generators.base",
    "ActiveSynthesisTrainer": "trainer",
    "ESTIMATORS": "uncertainty",
    "DeepEnsemble": "uncertainty",
    "FitContext": "uncertainty",
    "LoRAEnsemble": "uncertainty",
    "MCDropout": "uncertainty",
    "UncertaintyEstimator": "uncertainty",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_active_synth' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs (the names are exported lazily above)
    # ruff: noqa: F401
    from .acquisition import ACQUISITION_FUNCTIONS, bald, ensemble_variance, margin, predictive_entropy, random_scores
    from .callbacks import CycleCallback
    from .config import ActiveSynthesisConfig
    from .cycle import ActiveSynthesisHistory, CycleResult
    from .filters import ExactDuplicateFilter, Filter, FilterContext, LabelAgreementFilter
    from .generators.base import GenerationRequest, Generator, SynthesisTarget
    from .trainer import ActiveSynthesisTrainer
    from .uncertainty import ESTIMATORS, DeepEnsemble, FitContext, LoRAEnsemble, MCDropout, UncertaintyEstimator

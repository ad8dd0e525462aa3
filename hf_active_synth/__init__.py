"""hf-active-synth: targeted synthetic data, generated where your model is uncertain.

The public API: the trainer and its config, the uncertainty estimators, acquisition functions, the generator and
filter protocols, and the built-in filters. Generators for text (LLMs) and images (diffusion) live in
`hf_active_synth.generators`.
"""

from .acquisition import (
    ACQUISITION_FUNCTIONS,
    bald,
    ensemble_variance,
    margin,
    predictive_entropy,
    random_scores,
)
from .config import ActiveSynthesisConfig
from .cycle import ActiveSynthesisHistory, CycleResult
from .filters import ExactDuplicateFilter, Filter, FilterContext, LabelAgreementFilter
from .generators.base import GenerationRequest, Generator, SynthesisTarget
from .trainer import ActiveSynthesisTrainer
from .uncertainty import DeepEnsemble, LoRAEnsemble, MCDropout, UncertaintyEstimator

__version__ = "0.1.0"

__all__ = [
    "ACQUISITION_FUNCTIONS",
    "ActiveSynthesisConfig",
    "ActiveSynthesisHistory",
    "ActiveSynthesisTrainer",
    "CycleResult",
    "DeepEnsemble",
    "ExactDuplicateFilter",
    "Filter",
    "FilterContext",
    "GenerationRequest",
    "Generator",
    "LabelAgreementFilter",
    "LoRAEnsemble",
    "MCDropout",
    "SynthesisTarget",
    "UncertaintyEstimator",
    "bald",
    "ensemble_variance",
    "margin",
    "predictive_entropy",
    "random_scores",
]

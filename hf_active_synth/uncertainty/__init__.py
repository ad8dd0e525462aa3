"""Uncertainty estimators: each fits K members and returns logits shaped `[N, C, K]`."""

from .base import BatchedEstimator, UncertaintyEstimator
from .context import FitContext, ScoringArgs
from .deep_ensemble import DeepEnsemble
from .lora_ensemble import LoRAEnsemble, default_lora_config
from .mc_dropout import MCDropout, dropout_sampling
from .registry import ESTIMATORS, UncertaintyMethod, make_estimator
from .subset import MemberSubset, split_members

__all__ = [
    "ESTIMATORS",
    "BatchedEstimator",
    "DeepEnsemble",
    "FitContext",
    "LoRAEnsemble",
    "MCDropout",
    "MemberSubset",
    "ScoringArgs",
    "UncertaintyEstimator",
    "UncertaintyMethod",
    "default_lora_config",
    "dropout_sampling",
    "make_estimator",
    "split_members",
]

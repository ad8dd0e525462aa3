"""Uncertainty estimators: each fits K members and returns logits shaped `[N, C, K]`."""

from .base import BatchedEstimator, UncertaintyEstimator
from .context import FitContext, MemberDataContext, ScoringArgs
from .deep_ensemble import DeepEnsemble
from .lora_ensemble import LoRAEnsemble
from .lora_members import AdapterInit, HeadInit, bootstrap_rows, default_lora_config
from .mc_dropout import MCDropout, dropout_sampling
from .registry import ESTIMATORS, UncertaintyMethod, make_estimator
from .subset import MemberSubset, split_members

__all__ = [
    "ESTIMATORS",
    "AdapterInit",
    "BatchedEstimator",
    "DeepEnsemble",
    "FitContext",
    "HeadInit",
    "LoRAEnsemble",
    "MCDropout",
    "MemberDataContext",
    "MemberSubset",
    "ScoringArgs",
    "UncertaintyEstimator",
    "UncertaintyMethod",
    "bootstrap_rows",
    "default_lora_config",
    "dropout_sampling",
    "make_estimator",
    "split_members",
]

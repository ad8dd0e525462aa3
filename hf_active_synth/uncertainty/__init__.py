"""Uncertainty estimators: each fits K members and returns logits shaped `[N, C, K]`."""

from .base import BatchedEstimator, UncertaintyEstimator
from .deep_ensemble import DeepEnsemble
from .lora_ensemble import LoRAEnsemble, default_lora_config
from .mc_dropout import MCDropout, dropout_sampling

__all__ = [
    "BatchedEstimator",
    "DeepEnsemble",
    "LoRAEnsemble",
    "MCDropout",
    "UncertaintyEstimator",
    "default_lora_config",
    "dropout_sampling",
]

"""Model-agnostic helpers: getting logits out of whatever a model's forward returns."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from peft import PeftModel
from transformers import PreTrainedModel


def extract_logits(outputs: Any) -> torch.Tensor:
    """Returns the `[B, C]` logits from a model's output.

    Accepts a `ModelOutput`/object with `.logits`, a mapping with a `"logits"` key, or a bare tensor (a plain
    `nn.Module` classifier). Raises `TypeError` for anything else, naming what was returned.
    """
    logits = None
    if isinstance(outputs, torch.Tensor):
        logits = outputs
    elif isinstance(outputs, Mapping):
        logits = outputs.get("logits")
    else:
        logits = getattr(outputs, "logits", None)
    if not isinstance(logits, torch.Tensor):
        keys = list(outputs.keys()) if isinstance(outputs, Mapping) else type(outputs).__name__
        raise TypeError(
            f"The model returned {keys}, with no logits. Active synthesis needs a classifier whose forward returns "
            "a logits tensor [batch, num_labels], an object with `.logits`, or a dict with a 'logits' key."
        )
    if logits.ndim != 2:
        raise TypeError(
            f"Expected classification logits shaped [batch, num_labels], got {tuple(logits.shape)}. "
            "Sequence-to-sequence or token-level heads are not supported."
        )
    return logits


def default_model_init(model: torch.nn.Module) -> Callable[[], torch.nn.Module]:
    """A factory of fresh, untrained copies of `model`, for ensemble members that must be independently initialised.

    * a transformers model loaded from a checkpoint: reload that checkpoint, so pretrained weights are kept and the
      task head is newly initialised (the standard deep ensemble for fine-tuning);
    * a transformers model built from a config: a new random initialisation of the same config;
    * a plain `nn.Module`: a deep copy whose layers are re-initialised with their `reset_parameters()`.

    Call the factory under a seed (`torch.manual_seed`) to get a reproducible member.
    """
    if isinstance(model, PeftModel):
        raise ValueError(
            "Cannot build fresh copies of a peft-wrapped model automatically: pass `DeepEnsemble(model_init=...)` "
            "(a function returning a new, untrained model) or use `LoRAEnsemble`."
        )
    if isinstance(model, PreTrainedModel):
        source = getattr(model, "name_or_path", "") or ""
        config = copy.deepcopy(model.config)
        if source:
            # A local folder or a Hub id; a Hub id needs the network (or the HF cache) only when the factory is called.
            return lambda: type(model).from_pretrained(source, config=config)
        return lambda: type(model)(config)

    template = copy.deepcopy(model)

    def fresh_module() -> torch.nn.Module:
        member = copy.deepcopy(template)
        resettable = [m for m in member.modules() if callable(getattr(m, "reset_parameters", None))]
        if not resettable:
            raise ValueError(
                f"{type(model).__name__} has no layers with `reset_parameters()`, so fresh members cannot be built "
                "automatically; pass `DeepEnsemble(model_init=...)`."
            )
        for module in resettable:
            module.reset_parameters()
        return member

    return fresh_module

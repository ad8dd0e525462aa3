"""Loading the causal LM of `TextGenerationGenerator`: a Hub id, a local folder, a `.gguf` file or a loaded model."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["eos_token_ids", "load_causal_lm", "model_display_name", "split_gguf"]

logger = logging.getLogger(__name__)


def load_causal_lm(
    model: str | os.PathLike | PreTrainedModel,
    tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None = None,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Loads (or adopts) a causal LM and its tokenizer, in eval mode, with a pad token for left padding.

    Args:
        model (`str`, `os.PathLike` or `PreTrainedModel`): A Hub id or local folder, a `.gguf` path, or a loaded model
            (cast to `dtype` when given).
        tokenizer (`str` or `PreTrainedTokenizerBase`, *optional*): Defaults to the tokenizer stored with `model`;
            required for a loaded model.
        gguf_file (`str`, *optional*): Name of the GGUF file inside the `model` folder.
        dtype (`torch.dtype` or `str`, *optional*): Load (or cast) the model in this dtype.
        device (`str` or `torch.device`, *optional*): Move the model there.
        model_kwargs (`Mapping`, *optional*): Extra `from_pretrained` arguments.

    Returns:
        `tuple`: `(model, tokenizer)`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    source, gguf_file = split_gguf(model, gguf_file)
    if isinstance(model, PreTrainedModel):
        loaded = model
        if dtype is not None:
            loaded = loaded.to(dtype)
    elif isinstance(model, (str, os.PathLike)):
        kwargs = dict(model_kwargs or {})
        if gguf_file is not None:
            kwargs["gguf_file"] = gguf_file
        if dtype is not None:
            kwargs["dtype"] = dtype
        loaded = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    else:
        raise TypeError(
            "TextGenerationGenerator(model=...) must be a Hub id, a local folder, a .gguf path or a loaded "
            f"transformers PreTrainedModel, got {type(model).__name__}."
        )
    if tokenizer is None:
        if isinstance(model, PreTrainedModel):
            raise ValueError(
                "TextGenerationGenerator got an already-loaded model but no tokenizer: pass tokenizer=..."
            )
        tokenizer = AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}))
    elif isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("The tokenizer has neither a pad nor an eos token: set tokenizer.pad_token first.")
        logger.info("Tokenizer has no pad token; using its eos token %r for (left) padding.", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    if device is not None:
        loaded = loaded.to(device)
    return loaded.eval(), tokenizer


def split_gguf(model: Any, gguf_file: str | None) -> tuple[Any, str | None]:
    """`path/to/model.gguf` → (`path/to`, `model.gguf`); anything else is returned unchanged."""
    if isinstance(model, (str, os.PathLike)) and gguf_file is None and str(model).endswith(".gguf"):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist.")
        return str(path.parent), path.name
    return (str(model) if isinstance(model, os.PathLike) else model), gguf_file


def model_display_name(model: Any, gguf_file: str | None) -> str:
    """A short name of `model` for the generator's default name: the GGUF file, the folder or the Hub id."""
    if gguf_file is not None:
        return Path(gguf_file).name
    if isinstance(model, (str, os.PathLike)):
        path = str(model).rstrip("/")
        return Path(path).name if os.path.isabs(path) or os.path.exists(path) else path
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", "") or ""
    return Path(name).name if name else type(model).__name__


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The end-of-sequence token ids: the model's generation config's, else the tokenizer's (empty if neither)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(value) for value in (eos if isinstance(eos, (list, tuple)) else [eos])]

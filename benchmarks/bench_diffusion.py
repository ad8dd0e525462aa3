"""Guided vs unguided diffusion sampling cost on the digits DDPM.

Measures images/s of `DiffusionGenerator`, interleaved over repeats (median), in four settings:

* `unguided`: guidance off (scales 0, the same code path);
* `guided_repredict_loop`: the old guided path, a second denoiser call per step (`reuse_denoiser_prediction=False`)
  and the K members scored in a loop (`DeepEnsemble(stack_members=False)`);
* `guided`: the default, which scores the step's own `x̂0` (one denoiser call per step) with the members stacked
  into one vectorised forward (`DeepEnsemble()`'s default for the digits ResNet);
* `guided_window`: the default guiding only the first half of the steps (`guidance_end=0.5`);
* `guided_joint`: the default with the two gradient terms normalised jointly (`guidance_normalization="joint"`),
  which needs one backward pass through the ensemble per step instead of two;
* `guided_joint_window`: joint normalisation, first half of the steps;
* `guided_split_joint_window`: the same, guided by 3 of the 5 members (`MemberSubset`, the guide side of a
  `judge_members=2` split), which run alone (`DeepEnsemble.subset_member_logits`).

The ensemble is the library's `DeepEnsemble` over K digits ResNets, each trained briefly on a bootstrap of the DDPM's training split (weights do not
change the cost, but they make the quality columns mean something); the DDPM is the recipe's (trained on the digits
training split, cached). Quality columns, from the first round's samples scored by the guiding ensemble itself: mean
ensemble variance (disagreement, what guidance raises) and label agreement (ensemble-mean argmax == intended label,
what the label term keeps), so a faster path that stopped guiding would show.

    python benchmarks/bench_diffusion.py                       # table + benchmarks/results/diffusion.json
    python benchmarks/bench_diffusion.py --quick               # tiny smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from hf_active_synth.acquisition import ensemble_variance
from hf_active_synth.generators.base import GenerationRequest, SynthesisTarget
from hf_active_synth.generators.diffusion import DiffusionGenerator
from hf_active_synth.tasks.digits import (
    digits_to_model_inputs,
    images_to_tensor,
    make_digits_classifier,
    split_digits,
    train_class_conditional_ddpm,
)
from hf_active_synth.uncertainty import MemberSubset, split_members
from hf_active_synth.uncertainty.deep_ensemble import DeepEnsemble


def _ensemble(members: list[torch.nn.Module], stack_members: bool | None) -> DeepEnsemble:
    """The library's `DeepEnsemble` over already-trained `members` (scored in a loop, or stacked by default)."""
    ensemble = DeepEnsemble(len(members), stack_members=stack_members)
    ensemble.members_ = members
    return ensemble.refresh()


def _train_member(
    seed: int, pixel_values: torch.Tensor, labels: torch.Tensor, epochs: int, batch_size: int = 32
) -> torch.nn.Module:
    """A digits ResNet trained for `epochs` on a bootstrap resample (seeded), in eval mode."""
    model = make_digits_classifier(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(labels), (len(labels),), generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        order = rows[torch.randperm(len(rows), generator=generator)]
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = model(pixel_values=pixel_values[batch], labels=labels[batch]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def _quality(members: DeepEnsemble, dataset) -> dict[str, float]:
    """Mean ensemble variance and label agreement of generated samples under the guiding ensemble."""
    logits = members.member_logits(digits_to_model_inputs(images_to_tensor(list(dataset["image"]))))
    labels = torch.tensor(dataset["label"])
    agreement = (logits.softmax(dim=1).mean(dim=2).argmax(dim=1) == labels).float().mean()
    return {"disagreement": ensemble_variance(logits).mean().item(), "label_agreement": agreement.item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ddpm-steps", type=int, default=600)
    parser.add_argument("--member-epochs", type=int, default=15)
    parser.add_argument("--cache", default="benchmarks/results/ddpm-cache")
    parser.add_argument("--output", default="benchmarks/results/diffusion.json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.steps, args.members, args.repeats, args.ddpm_steps = 8, 3, 4, 1, 10
        args.member_epochs = 1

    train = split_digits(train_per_class=10, seed=0)["train"]
    pipeline = train_class_conditional_ddpm(train, args.cache, num_train_steps=args.ddpm_steps, seed=0)
    pixel_values = digits_to_model_inputs(images_to_tensor(list(train["image"])))["pixel_values"]
    train_labels = torch.tensor(train["label"])
    trained = [_train_member(seed, pixel_values, train_labels, args.member_epochs) for seed in range(args.members)]
    # The old path scored the members in a loop; the library now stacks the digits ResNets by default.
    looped, members = _ensemble(trained, stack_members=False), _ensemble(trained, stack_members=None)
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
    base_request = GenerationRequest(
        targets=targets,
        cycle=1,
        seed=0,
        candidates_per_sample=1,
        input_column="image",
        label_column="label",
        estimator=members,
    )
    guided = {"guidance_scale": 0.2, "label_scale": 0.1}
    # name -> (generator options, estimator): the settings of the module docstring, in its order.
    joint = {"guidance_normalization": "joint"}
    guide_members, _ = split_members(args.members, judge_members=2) if args.members >= 4 else (None, None)
    settings: dict[str, tuple[dict, DeepEnsemble | MemberSubset]] = {
        "unguided": ({"guidance_scale": 0.0, "label_scale": 0.0}, members),
        "guided_repredict_loop": (guided | {"reuse_denoiser_prediction": False}, looped),
        "guided": (guided, members),
        "guided_window": (guided | {"guidance_end": 0.5}, members),
        "guided_joint": (guided | joint, members),
        "guided_joint_window": (guided | joint | {"guidance_end": 0.5}, members),
    }
    if guide_members is not None:
        settings["guided_split_joint_window"] = (
            guided | joint | {"guidance_end": 0.5},
            MemberSubset(members, guide_members),
        )
    requests = {
        name: dataclasses.replace(base_request, estimator=estimator) for name, (_, estimator) in settings.items()
    }
    generators = {
        name: DiffusionGenerator(
            pipeline, digits_to_model_inputs, num_inference_steps=args.steps, show_progress=False, **kwargs
        )
        for name, (kwargs, _) in settings.items()
    }
    generators["guided"].generate(requests["guided"])  # warm-up (the guided path too: autograd's first call is slower)
    timings: dict[str, list[float]] = {name: [] for name in settings}
    quality: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        for name, generator in generators.items():
            start = time.perf_counter()
            dataset = generator.generate(requests[name])
            timings[name].append(len(dataset) / (time.perf_counter() - start))
            if name not in quality:  # samples are seeded per candidate: every round draws the same ones
                quality[name] = _quality(members, dataset)
    results = {name: statistics.median(values) for name, values in timings.items()}
    ratios = {name: results["unguided"] / value for name, value in results.items()}
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "settings": vars(args)
        | {
            "samples_per_run": per_target * 10,
            "generators": {name: kwargs for name, (kwargs, _) in settings.items()},
            "stacked_members": {
                name: getattr(estimator, "estimator", estimator).stacked_ is not None
                for name, (_, estimator) in settings.items()
            },
            "guiding_members": {name: estimator.num_members for name, (_, estimator) in settings.items()},
        },
        "images_per_second": results,
        "time_ratio_to_unguided": ratios,
        "guided_cost_ratio": ratios["guided"],
        "quality": quality,
        "raw": timings,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(
        f"| sampling ({args.steps} DDIM steps, K={args.members}) | images/s (median of {args.repeats}) "
        "| time vs unguided | disagreement | label agreement |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, value in results.items():
        row = quality[name]
        print(
            f"| {name} | {value:.1f} | {ratios[name]:.2f}x | {row['disagreement']:.4f} | {row['label_agreement']:.3f} |"
        )
    print(f"\nguided (default) costs {ratios['guided']:.2f}x unguided; JSON: {output}")


if __name__ == "__main__":
    main()

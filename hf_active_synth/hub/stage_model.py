"""Staging model revisions in the local Hub folder: a cycle's branch `cycle-k` (its checkpoint) and `main` (the
best cycle's), each with its model card and `active_synthesis.json`."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, constants

from ..card_usage import IMAGE_CLASSIFICATION, TEXT_CLASSIFICATION
from ..cards import render_model_card
from .files import link_tree, replace_dir, write_text_atomic
from .layout import CHECKPOINT_DIR, RUN_FILE, HubLayout, branch_name, relative_link
from .secrets import redact

logger = logging.getLogger(__package__)  # `hf_active_synth.hub`: one logger for the whole package

# Files of a checkpoint folder that are never published: pickled TrainingArguments (may hold `hub_token`) and
# optimizer / scheduler / RNG states.
EXCLUDED_CHECKPOINT_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "*.partial")


# The end of a model class name (`config.json` "architectures") -> its pipeline tag.
_ARCHITECTURE_TASKS = (
    ("ForImageClassification", IMAGE_CLASSIFICATION),
    ("ForSequenceClassification", TEXT_CLASSIFICATION),
)
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


@dataclass(frozen=True)
class CheckpointKind:
    """What a saved checkpoint folder holds, as far as its model card is concerned.

    Args:
        library (`str`): `"transformers"` (a `config.json`), `"peft"` (an adapter) or `"safetensors"` (a plain
            `state_dict`).
        base_model (`str`, *optional*): The base model (from the settings, or the adapter's config).
        pipeline_tag (`str`, *optional*): `"image-classification"` or `"text-classification"`, from the `task`
            setting, the saved processor, or the model class in `config.json`.
        has_processor (`bool`): Whether the folder holds the processor of that task (image processor or tokenizer).
    """

    library: str
    base_model: str | None
    pipeline_tag: str | None
    has_processor: bool


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def checkpoint_kind(checkpoint: Path, settings: Mapping[str, Any]) -> CheckpointKind:
    """Reads what the checkpoint folder holds: library, base model, task and whether its processor was saved."""
    base_model = settings.get("base_model")
    library, architectures = "safetensors", []
    if (checkpoint / "adapter_config.json").is_file():
        library = "peft"
        base_model = base_model or _json(checkpoint / "adapter_config.json").get("base_model_name_or_path")
    elif (checkpoint / "config.json").is_file():
        library = "transformers"
        architectures = _json(checkpoint / "config.json").get("architectures") or []
    image_processor = "image_processor_type" in _json(checkpoint / "preprocessor_config.json")
    tokenizer = any((checkpoint / name).is_file() for name in _TOKENIZER_FILES)
    pipeline_tag = settings.get("task")
    if pipeline_tag is None:
        if image_processor:
            pipeline_tag = IMAGE_CLASSIFICATION
        elif tokenizer:
            pipeline_tag = TEXT_CLASSIFICATION
        else:
            # A model saved without its processor (the embedded digits classifier): its class says the task.
            pipeline_tag = next(
                (task for suffix, task in _ARCHITECTURE_TASKS for name in architectures if name.endswith(suffix)),
                None,
            )
    has_processor = image_processor if pipeline_tag == IMAGE_CLASSIFICATION else tokenizer
    return CheckpointKind(library, base_model, pipeline_tag, has_processor)


def run_file(
    cycle: int,
    revision: str,
    best_cycle: int,
    history: list[dict],
    settings: Mapping,
    secrets: Sequence[str | None] = (),
) -> str:
    """The `active_synthesis.json` of a model revision: its cycle, the best cycle, the history and the settings."""
    payload = {
        "format_version": 1,
        "cycle": cycle,
        "revision": revision,
        "best_cycle": best_cycle,
        "history": history,
        "run_settings": dict(settings),
    }
    return redact(json.dumps(payload, indent=2, default=str), secrets) + "\n"


def _model_card(
    layout: HubLayout,
    folder: Path,
    checkpoint: Path,
    revision: str,
    cycle: int,
    best_cycle: int,
    history: list[dict],
    settings: Mapping[str, Any],
) -> ModelCard:
    kind = checkpoint_kind(checkpoint, settings)
    # Without a dataset repository, the card points at the local dataset folder once a cycle has written it.
    dataset_dir = layout.dataset_dir()
    local_dataset = layout.dataset_repo_id is None and (dataset_dir / constants.REPOCARD_NAME).is_file()
    return render_model_card(
        repo_id=layout.model_display_id,
        local_path=None if layout.model_repo_id else layout.local_path(folder),
        revision=revision,
        cycle=cycle,
        best_cycle=best_cycle,
        history=history,
        settings=settings,
        dataset_repo_id=layout.dataset_repo_id,
        library_name=kind.library,
        base_model=kind.base_model,
        pipeline_tag=kind.pipeline_tag,
        has_processor=kind.has_processor,
        dataset_local_path=layout.local_path(dataset_dir) if local_dataset else None,
        # A relative link only works where both folders are: locally (not in a pushed model's card).
        dataset_link=relative_link(dataset_dir, folder) if local_dataset and not layout.model_repo_id else None,
        endpoint=constants.ENDPOINT,
    )


def stage_model_branch(
    layout: HubLayout,
    cycle: int,
    cycle_dir: Path,
    history: list[dict],
    best_cycle: int,
    settings: Mapping[str, Any],
    secrets: Sequence[str | None] = (),
) -> Path:
    """Writes the folder of branch `cycle-k` from `cycle_dir/checkpoint/` (minus `EXCLUDED_CHECKPOINT_FILES`);
    returns it."""
    checkpoint = cycle_dir / CHECKPOINT_DIR
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{checkpoint} does not exist: the trainer saves each cycle's model there.")
    revision = branch_name(cycle)
    folder = layout.model_dir(revision)
    card = _model_card(layout, folder, checkpoint, revision, cycle, best_cycle, history, settings)

    def build(tmp: Path) -> None:
        link_tree(checkpoint, tmp, exclude=(*EXCLUDED_CHECKPOINT_FILES, constants.REPOCARD_NAME, RUN_FILE))
        write_text_atomic(tmp / constants.REPOCARD_NAME, str(card))
        write_text_atomic(tmp / RUN_FILE, run_file(cycle, revision, best_cycle, history, settings, secrets))

    replace_dir(folder, build, layout.staging)
    return folder


def stage_model_main(
    layout: HubLayout,
    source: Path,
    best_cycle: int,
    history: list[dict],
    settings: Mapping[str, Any],
    secrets: Sequence[str | None] = (),
) -> Path:
    """Writes the folder of `main` from `source`, a staged revision holding the checkpoint of `best_cycle`;
    returns it."""
    folder = layout.model_dir("main")
    card = _model_card(layout, folder, source, "main", best_cycle, best_cycle, history, settings)
    current = max(int(entry["cycle"]) for entry in history)

    def build(tmp: Path) -> None:
        link_tree(source, tmp, exclude=(constants.REPOCARD_NAME, RUN_FILE, ".gitattributes", ".cache"))
        write_text_atomic(tmp / constants.REPOCARD_NAME, str(card))
        write_text_atomic(tmp / RUN_FILE, run_file(best_cycle, "main", best_cycle, history, settings, secrets))

    logger.debug("main <- cycle %d (after cycle %d)", best_cycle, current)
    replace_dir(folder, build, layout.staging)
    return folder

"""Staging model revisions in the local Hub folder: a cycle's branch `cycle-k` (its checkpoint) and `main` (the
best cycle's), each with its model card and `active_synthesis.json`."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, constants

from ..cards import render_model_card
from .files import link_tree, replace_dir, write_text_atomic
from .layout import CHECKPOINT_DIR, DEFAULT_MODEL_NAME, RUN_FILE, HubLayout, branch_name
from .secrets import redact

logger = logging.getLogger(__package__)  # `hf_active_synth.hub`: one logger for the whole package

# Files of a checkpoint folder that are never published: pickled TrainingArguments (may hold `hub_token`) and
# optimizer / scheduler / RNG states.
EXCLUDED_CHECKPOINT_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "*.partial")


def checkpoint_kind(checkpoint: Path, settings: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """Returns `(library_name, base_model, pipeline_tag)` of a saved checkpoint."""
    base_model = settings.get("base_model")
    library = "safetensors"
    if (checkpoint / "adapter_config.json").is_file():
        library = "peft"
        adapter = json.loads((checkpoint / "adapter_config.json").read_text())
        base_model = base_model or adapter.get("base_model_name_or_path")
    elif (checkpoint / "config.json").is_file():
        library = "transformers"
    pipeline_tag = settings.get("task")
    if pipeline_tag is None:
        processor = checkpoint / "preprocessor_config.json"
        if processor.is_file() and "image_processor_type" in json.loads(processor.read_text()):
            pipeline_tag = "image-classification"
        elif (checkpoint / "tokenizer_config.json").is_file() or (checkpoint / "tokenizer.json").is_file():
            pipeline_tag = "text-classification"
    return library, base_model, pipeline_tag


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
    library, base_model, pipeline_tag = checkpoint_kind(checkpoint, settings)
    return render_model_card(
        repo_id=layout.model_repo_id or DEFAULT_MODEL_NAME,
        local_path=None if layout.model_repo_id else layout.local_path(folder),
        revision=revision,
        cycle=cycle,
        best_cycle=best_cycle,
        history=history,
        settings=settings,
        dataset_repo_id=layout.dataset_repo_id,
        library_name=library,
        base_model=base_model,
        pipeline_tag=pipeline_tag,
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

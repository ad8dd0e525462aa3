"""Names and paths of a run's Hub artifacts: branch, tag and configuration names, file names, and where each
repository revision lives in the local Hub-layout folder."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cycle import CHECKPOINT_DIR, CYCLE_FILE, HISTORY_FILE, SYNTHETIC_DIR  # noqa: F401  (the run's own layout)

LOCAL_HUB_DIR = "hub"
RUN_FILE = "active_synthesis.json"
SPLIT = "train"
ALL_CONFIG = "all"
# Local folder names of the repositories when neither a repository id nor the run's settings name them.
DEFAULT_MODEL_NAME = "model"
DEFAULT_DATASET_NAME = "synthetic"
REPO_SUFFIX = "active-synth"
_MAX_REPO_NAME = 96  # the Hub's limit on a repository name
# A model class name used as `base_model` when a model has no checkpoint name, e.g. `ResNetForImageClassification`.
_CLASS_NAME = re.compile(r"^([A-Z][A-Za-z0-9]*?)For[A-Z]\w*$")


def branch_name(cycle: int) -> str:
    """Model repository branch holding the checkpoint of `cycle`."""
    return f"cycle-{cycle}"


def tag_name(cycle: int) -> str:
    """Tag pinning the commit first published for `cycle` (in the model and the dataset repository)."""
    return f"cycle-{cycle}-final"


def config_name(cycle: int) -> str:
    """Dataset configuration holding the samples accepted in `cycle`."""
    return f"cycle_{cycle}"


def repo_name(repo_id: str | None, default: str) -> str:
    """The name part of `repo_id` (`namespace/name`), or `default` without one."""
    return repo_id.rstrip("/").split("/")[-1] if repo_id else default


def relative_link(target: Path, card_folder: Path) -> str:
    """A markdown link from a card in `card_folder` to `target` (both in the local Hub folder)."""
    return Path(os.path.relpath(target, card_folder)).as_posix()


def _name_part(value: Any) -> str:
    """A Hub-valid piece of a repository name from a Hub id, a path or a model class name ("" for none)."""
    name = str(value or "").rstrip("/").split("/")[-1]
    match = _CLASS_NAME.match(name)
    if match:
        name = match.group(1).lower()  # `ResNetForImageClassification` -> `resnet`
    # The Hub allows letters, digits, `-`, `_` and `.`, but neither `--` nor `..`, nor a leading or trailing `-`/`.`.
    name = re.sub(r"[^\w.-]+", "-", name)
    return re.sub(r"\.{2,}", ".", re.sub(r"-{2,}", "-", name)).strip("-.")


def default_repo_names(settings: Mapping[str, Any], output_dir: str | os.PathLike) -> tuple[str, str]:
    """`(model name, dataset name)` of a run whose repository ids are not given, derived from what it trained.

    The model is `<base model>-<data>-active-synth` and the dataset `<data>-active-synth-synthetic`, where the base
    model is the name part of `settings["base_model"]` (a class name such as `ResNetForImageClassification` gives
    `resnet`) and the data the name part of `settings["dataset_name"]`, or else of `output_dir` (the embedded
    tasks have no dataset id: `runs/digits` gives `digits`).

    Args:
        settings (`Mapping`): The run's settings (`base_model`, `dataset_name`).
        output_dir (`str` or `os.PathLike`): The run's output directory.
    """
    data = _name_part(settings.get("dataset_name")) or _name_part(Path(output_dir).resolve().name)
    model = _name_part(settings.get("base_model"))
    model_name = "-".join(part for part in (model, data, REPO_SUFFIX) if part)
    dataset_name = "-".join(part for part in (data, REPO_SUFFIX, DEFAULT_DATASET_NAME) if part)
    # Trim the prefix when too long: the suffix says what the repository is.
    return model_name[-_MAX_REPO_NAME:].lstrip("-._"), dataset_name[-_MAX_REPO_NAME:].lstrip("-._")


@dataclass(frozen=True)
class HubLayout:
    """Where the repositories of a run live in the local Hub-layout folder.

    Args:
        hub_dir (`Path`): The local Hub-layout folder.
        model_repo_id (`str`, *optional*): Model repository; names the local model folders.
        dataset_repo_id (`str`, *optional*): Dataset repository; names the local dataset folder.
        model_name (`str`, defaults to `"model"`): Local model folder name when there is no `model_repo_id`.
        dataset_name (`str`, defaults to `"synthetic"`): Local dataset folder name when there is no
            `dataset_repo_id`.
    """

    hub_dir: Path
    model_repo_id: str | None = None
    dataset_repo_id: str | None = None
    model_name: str = DEFAULT_MODEL_NAME
    dataset_name: str = DEFAULT_DATASET_NAME

    @classmethod
    def for_run(
        cls,
        output_dir: str | os.PathLike,
        local_hub_dir: str | os.PathLike | None = None,
        model_repo_id: str | None = None,
        dataset_repo_id: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> HubLayout:
        """The layout of a run in `output_dir`: its Hub folder is `local_hub_dir`, by default `output_dir/hub`.
        With `settings`, repositories without an id are named by `default_repo_names(settings, output_dir)`."""
        hub_dir = Path(local_hub_dir) if local_hub_dir is not None else Path(output_dir) / LOCAL_HUB_DIR
        names = default_repo_names(settings, output_dir) if settings is not None else ()
        return cls(hub_dir, model_repo_id, dataset_repo_id, *names)

    @property
    def model_display_id(self) -> str:
        """The model repository id, or the local model name without one (what the cards call the model)."""
        return self.model_repo_id or self.model_name

    @property
    def staging(self) -> Path:
        """Where folders are built before they are swapped in."""
        return self.hub_dir / ".staging"

    def dataset_dir(self) -> Path:
        """Local folder of the dataset repository (`load_dataset(path, "cycle_k")`)."""
        return self.hub_dir / "datasets" / repo_name(self.dataset_repo_id, self.dataset_name)

    def model_dir(self, revision: str = "main") -> Path:
        """Local folder of the model repository at `revision` (`"main"` or `"cycle-k"`; `from_pretrained(path)`)."""
        name = repo_name(self.model_repo_id, self.model_name)
        return self.hub_dir / "models" / (name if revision == "main" else f"{name}@{revision}")

    def local_path(self, folder: Path) -> str:
        """`folder` as the run was given its paths (relative to the launch directory when `output_dir` was), for the
        usage snippets of local-only repositories."""
        return folder.as_posix()

    def relative(self, path: Path) -> str:
        """`path` relative to the Hub folder, as pending pushes record it."""
        return path.relative_to(self.hub_dir).as_posix()

"""Names and paths of a run's Hub artifacts: branch, tag and configuration names, file names, and where each
repository revision lives in the local Hub-layout folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..cycle import CHECKPOINT_DIR, CYCLE_FILE, HISTORY_FILE, SYNTHETIC_DIR  # noqa: F401  (the run's own layout)

LOCAL_HUB_DIR = "hub"
RUN_FILE = "active_synthesis.json"
SPLIT = "train"
ALL_CONFIG = "all"
# Local folder names of the repositories when no repository id is given.
DEFAULT_MODEL_NAME = "model"
DEFAULT_DATASET_NAME = "synthetic"


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


@dataclass(frozen=True)
class HubLayout:
    """Where the repositories of a run live in the local Hub-layout folder.

    Args:
        hub_dir (`Path`): The local Hub-layout folder.
        model_repo_id (`str`, *optional*): Model repository; names the local model folders.
        dataset_repo_id (`str`, *optional*): Dataset repository; names the local dataset folder.
    """

    hub_dir: Path
    model_repo_id: str | None = None
    dataset_repo_id: str | None = None

    @classmethod
    def for_run(
        cls,
        output_dir: str | os.PathLike,
        local_hub_dir: str | os.PathLike | None = None,
        model_repo_id: str | None = None,
        dataset_repo_id: str | None = None,
    ) -> HubLayout:
        """The layout of a run in `output_dir`: its Hub folder is `local_hub_dir`, by default `output_dir/hub`."""
        hub_dir = Path(local_hub_dir) if local_hub_dir is not None else Path(output_dir) / LOCAL_HUB_DIR
        return cls(hub_dir, model_repo_id, dataset_repo_id)

    @property
    def staging(self) -> Path:
        """Where folders are built before they are swapped in."""
        return self.hub_dir / ".staging"

    def dataset_dir(self) -> Path:
        """Local folder of the dataset repository (`load_dataset(path, "cycle_k")`)."""
        return self.hub_dir / "datasets" / repo_name(self.dataset_repo_id, DEFAULT_DATASET_NAME)

    def model_dir(self, revision: str = "main") -> Path:
        """Local folder of the model repository at `revision` (`"main"` or `"cycle-k"`; `from_pretrained(path)`)."""
        name = repo_name(self.model_repo_id, DEFAULT_MODEL_NAME)
        return self.hub_dir / "models" / (name if revision == "main" else f"{name}@{revision}")

    def local_path(self, folder: Path) -> str:
        """`folder` relative to the output directory's parent, for usage snippets of local-only repositories."""
        return folder.relative_to(self.hub_dir.parent).as_posix()

    def relative(self, path: Path) -> str:
        """`path` relative to the Hub folder, as pending pushes record it."""
        return path.relative_to(self.hub_dir).as_posix()

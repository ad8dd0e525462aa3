"""`pull_run`: downloads a published run from the Hub into an `output_dir` the trainer can resume from."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import HfApi, constants

from .files import link_tree
from .layout import CHECKPOINT_DIR, CYCLE_FILE, HISTORY_FILE, RUN_FILE, SYNTHETIC_DIR, HubLayout, branch_name, tag_name
from .retry import call_with_retries
from .transfer import download_revision

logger = logging.getLogger(__package__)  # `hf_active_synth.hub`: one logger for the whole package

T = TypeVar("T")


def _latest_cycle_branch(api: HfApi, repo_id: str) -> str:
    refs = api.list_repo_refs(repo_id)
    cycles = [int(m.group(1)) for b in refs.branches if (m := re.fullmatch(r"cycle-(\d+)", b.name))]
    if not cycles:
        raise ValueError(f"{repo_id} has no `cycle-k` branch: it was not published by an active-synthesis run.")
    return branch_name(max(cycles))


def pull_run(
    model_repo_id: str,
    dataset_repo_id: str | None,
    output_dir: str | os.PathLike,
    revision: str | None = None,
    *,
    token: str | None = None,
    local_hub_dir: str | os.PathLike | None = None,
) -> int:
    """Downloads a published run into an `output_dir` the trainer can resume from.

    Writes `output_dir/cycle-j/cycle.json` for every cycle up to the pulled one `k`, `cycle-k/checkpoint/` (the
    weights and processor files of revision `revision`), `cycle-j/synthetic/` (`save_to_disk`) for every cycle
    `j <= k` with samples, and `history.json`; and mirrors the repositories (the dataset, the branch of cycle `k` and
    of the best cycle so far) into the local Hub folder (`output_dir/hub/` by default) so the next `publish_cycle`
    continues the same repositories. Model predictions on the real pool (`pool_logits.pt`) are not published: a
    resumed trainer recomputes them.

    Args:
        model_repo_id (`str`): Model repository of the run.
        dataset_repo_id (`str`, *optional*): Its dataset repository (`None`: no synthetic samples are pulled).
        output_dir (`str` or `os.PathLike`): Where to write the run; must not hold cycles already.
        revision (`str`, *optional*): Model revision to resume from (`"cycle-k"`, `"cycle-k-final"` or `"main"`);
            defaults to the latest `cycle-k` branch.
        token (`str`, *optional*): Hub token (for private repositories).
        local_hub_dir (`str` or `os.PathLike`, *optional*): The local Hub folder; defaults to `output_dir/hub`.

    Returns:
        `int`: the cycle pulled (`k`).
    """
    output_dir = Path(output_dir)
    existing = sorted(p.name for p in output_dir.glob("cycle-*")) if output_dir.is_dir() else []
    if existing:
        raise FileExistsError(f"{output_dir} already holds {existing}; pull into an empty output directory.")
    layout = HubLayout.for_run(output_dir, local_hub_dir, model_repo_id, dataset_repo_id)
    api = HfApi(token=token)

    def retry(fn: Callable[..., T], *args: Any, description: str, **kwargs: Any) -> T:
        # `HubPublisher`'s default retries: 4, waiting 1s, 2s, 4s, 8s.
        return call_with_retries(fn, *args, description=description, secrets=(token,), **kwargs)

    def download(repo_id: str, repo_type: str, revision: str, target: Path) -> None:
        download_revision(api, repo_id, repo_type, revision, target, staging=layout.staging, retry=retry)

    revision = revision or _latest_cycle_branch(api, model_repo_id)

    staging = layout.staging / "pull-model"
    download(model_repo_id, "model", revision, staging)
    run = json.loads((staging / RUN_FILE).read_text())
    cycle = int(run["cycle"])
    history = [entry for entry in run["history"] if int(entry["cycle"]) <= cycle]
    branch_dir = layout.model_dir(branch_name(cycle))
    if branch_dir.exists():
        shutil.rmtree(branch_dir)
    branch_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, branch_dir)

    best_cycle = int(run.get("best_cycle", cycle))
    if best_cycle != cycle:  # `main` of the next publish needs the best checkpoint locally
        download(model_repo_id, "model", branch_name(best_cycle), layout.model_dir(branch_name(best_cycle)))

    checkpoint = output_dir / f"cycle-{cycle}" / CHECKPOINT_DIR
    link_tree(branch_dir, checkpoint, exclude=(constants.REPOCARD_NAME, RUN_FILE, ".gitattributes"))
    for entry in history:
        cycle_dir = output_dir / f"cycle-{int(entry['cycle'])}"
        cycle_dir.mkdir(parents=True, exist_ok=True)
        (cycle_dir / CYCLE_FILE).write_text(json.dumps(entry, indent=2))
    (output_dir / HISTORY_FILE).write_text(
        json.dumps(
            {
                "cycles": history,
                "stop_reason": f"pulled from the Hub ({model_repo_id}@{revision})",
                "config": run.get("run_settings", {}),
            },
            indent=2,
        )
    )

    if dataset_repo_id:
        _pull_samples(api, dataset_repo_id, cycle, layout.dataset_dir(), output_dir, download)
    logger.info("Pulled %s@%s (cycle %d) into %s.", model_repo_id, revision, cycle, output_dir)
    return cycle


def _pull_samples(
    api: HfApi,
    dataset_repo_id: str,
    cycle: int,
    folder: Path,
    output_dir: Path,
    download: Callable[[str, str, str, Path], None],
) -> None:
    """Mirrors the dataset repository as of `cycle` into `folder` and writes `output_dir/cycle-j/synthetic/` for
    every cycle `j <= cycle` with samples."""
    from datasets import Dataset

    tags = {t.name for t in api.list_repo_refs(dataset_repo_id, repo_type="dataset").tags}
    dataset_revision = tag_name(cycle) if tag_name(cycle) in tags else "main"
    download(dataset_repo_id, "dataset", dataset_revision, folder)
    for path in sorted(folder.glob("cycle_*")):
        number = path.name.split("_", 1)[1]
        if not (path.is_dir() and number.isdigit()):
            continue
        if int(number) > cycle:  # published by the run after the pulled cycle: not part of this state
            shutil.rmtree(path)
            continue
        dataset = Dataset.from_parquet([str(p) for p in sorted(path.glob("*.parquet"))])
        dataset.save_to_disk(str(output_dir / f"cycle-{number}" / SYNTHETIC_DIR))

"""Moving folders between the local Hub folder and Hub repositories: uploading a folder to a revision (creating
the repository, branch and tags it needs) and downloading a revision into a folder, each Hub call retried."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from .files import replace_dir
from .pending import PendingPush

# `retry(fn, *args, description=..., **kwargs)`: calls `fn` with retries, e.g. a bound `call_with_retries`.
Retry = Callable[..., Any]


def upload_push(api: HfApi, push: PendingPush, folder: Path, *, private: bool, retry: Retry) -> None:
    """Uploads `folder` as the new content of `push.revision` (one commit), creating the repository (`private`
    when new) and the branch first, then tags the commit with `push.tags`."""
    repo = push.describe()
    retry(
        api.create_repo,
        push.repo_id,
        repo_type=push.repo_type,
        private=private,
        exist_ok=True,
        description=f"Creating {repo}",
    )
    if push.revision != "main":
        refs = retry(api.list_repo_refs, push.repo_id, repo_type=push.repo_type, description=f"Refs of {repo}")
        if push.revision not in {branch.name for branch in refs.branches}:
            # Branch off the repository's first (empty) commit, not `main`: if the upload below fails, the
            # branch holds no weights at all rather than silently serving another cycle's.
            commits = retry(
                api.list_repo_commits, push.repo_id, repo_type=push.repo_type, description=f"Commits of {repo}"
            )
            retry(
                api.create_branch,
                push.repo_id,
                branch=push.revision,
                revision=commits[-1].commit_id,
                repo_type=push.repo_type,
                exist_ok=True,
                description=f"Creating branch {repo}",
            )
    commit = retry(
        api.upload_folder,
        repo_id=push.repo_id,
        repo_type=push.repo_type,
        folder_path=folder,
        revision=push.revision,
        commit_message=push.commit_message,
        delete_patterns="*",
        description=f"Uploading {repo}",
    )
    for tag in push.tags:
        retry(
            api.create_tag,
            push.repo_id,
            tag=tag,
            revision=commit.oid,
            repo_type=push.repo_type,
            exist_ok=True,
            description=f"Tagging {repo} as {tag}",
        )


def download_revision(
    api: HfApi, repo_id: str, repo_type: str, revision: str, target: Path, *, staging: Path, retry: Retry
) -> None:
    """Replaces `target` with the files of `repo_id` at `revision` (built under `staging`, then swapped in)."""

    def build(tmp: Path) -> None:
        retry(
            api.snapshot_download,
            repo_id,
            repo_type=repo_type,
            revision=revision,
            local_dir=tmp,
            description=f"Downloading {repo_id}@{revision}",
        )
        shutil.rmtree(tmp / ".cache", ignore_errors=True)

    replace_dir(target, build, staging)

"""The pending-push record: pushes written to `output_dir/pending_pushes.json` before they start (write-ahead),
run in order, and removed only once they succeeded."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .files import write_text_atomic
from .retry import PUSH_ERRORS, is_transient_error
from .secrets import redact

logger = logging.getLogger(__package__)  # `hf_active_synth.hub`: one logger for the whole package

PENDING_FILE = "pending_pushes.json"


@dataclass
class PendingPush:
    """One upload of a local Hub-layout folder to a repository revision, recorded until it succeeds.

    Args:
        repo_type (`str`): `"model"` or `"dataset"`.
        repo_id (`str`): Target repository.
        revision (`str`): Target branch (`"main"` or `"cycle-k"`).
        folder (`str`): The folder to upload, relative to the publisher's local Hub folder.
        tags (`list[str]`): Tags to create on the resulting commit.
        commit_message (`str`): Commit message.
        cycle (`int`, *optional*): Cycle that queued the push.
        attempts (`int`): Failed attempts so far.
        last_error (`str`, *optional*): The last failure (redacted).
    """

    repo_type: str
    repo_id: str
    revision: str
    folder: str
    tags: list[str] = field(default_factory=list)
    commit_message: str = "Update"
    cycle: int | None = None
    attempts: int = 0
    last_error: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.repo_type, self.repo_id, self.revision)

    def describe(self) -> str:
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        return f"{prefix}{self.repo_id}@{self.revision}"


class PendingQueue:
    """The pushes recorded in a pending file, in order.

    Args:
        path (`Path`): The pending file (`output_dir/pending_pushes.json`); absent when nothing is pending.
        secrets (`Sequence[str]`, defaults to `()`): Strings redacted from the file and from logged errors.
    """

    def __init__(self, path: Path, secrets: Sequence[str | None] = ()):
        self.path = path
        self._secrets = tuple(secrets)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def load(self) -> list[PendingPush]:
        if not self.path.is_file():
            return []
        return [PendingPush(**entry) for entry in json.loads(self.path.read_text())["pushes"]]

    def save(self, pending: Sequence[PendingPush]) -> None:
        if not pending:
            self.path.unlink(missing_ok=True)
            return
        payload = {"format_version": 1, "pushes": [asdict(p) for p in pending]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, redact(json.dumps(payload, indent=2), self._secrets) + "\n")

    def enqueue(self, pushes: Sequence[PendingPush]) -> None:
        """Records pushes before they start (write-ahead): a crash mid-push leaves them pending."""
        pending = self.load()
        for push in pushes:
            previous = next((p for p in pending if p.key == push.key), None)
            if previous is not None:  # The new upload of the same folder supersedes it; keep its tags.
                pending.remove(previous)
                push.tags = list(dict.fromkeys([*previous.tags, *push.tags]))
                push.attempts = previous.attempts
            pending.append(push)
        self.save(pending)

    def process(self, push_one: Callable[[PendingPush], None], hub_dir: Path) -> tuple[list[str], list[str]]:
        """Runs the recorded pushes in order with `push_one`; returns `(pushed, still_pending)` descriptions.

        A push that fails with one of `PUSH_ERRORS` stays recorded (with its attempt count and redacted error); after
        a transient failure the rest stay queued untried. `hub_dir` is the local Hub folder the pushes' folders are
        relative to (for the log)."""
        queue = self.load()
        done: list[str] = []
        failed: list[PendingPush] = []
        for index, push in enumerate(queue):
            try:
                push_one(push)
            except PUSH_ERRORS as error:
                push.attempts += 1
                push.last_error = redact(f"{type(error).__name__}: {error}", self._secrets)
                failed.append(push)
                logger.error(
                    "Pushing %s failed (attempt %d): %s. Nothing is lost: the files stay in %s and the push is "
                    "recorded in %s; it is retried by the next run or resume (`HubPublisher.retry_pending()`).",
                    push.describe(),
                    push.attempts,
                    push.last_error.splitlines()[0],
                    hub_dir / push.folder,
                    self.path,
                )
                if is_transient_error(error):
                    # The Hub is unreachable or failing: keep the rest queued rather than wait on each in turn.
                    failed.extend(queue[index + 1 :])
                    self.save(failed)
                    break
            else:
                done.append(push.describe())
                logger.info("Pushed %s.", push.describe())
            self.save(failed + queue[index + 1 :])
        return done, [p.describe() for p in failed]

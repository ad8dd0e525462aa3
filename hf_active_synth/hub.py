"""Hub-native artifacts of an active-synthesis run: one dataset configuration and one model branch per cycle.

Every cycle `k` is first written to a local folder in Hub layout (`output_dir/hub/` by default), which is both the
embedded default (no network) and the staging area of a push:

```
hub/
  datasets/<name>/            the dataset repository (revision `main`)
    README.md                 dataset card; YAML `configs` (cycle_1, ..., all) and `dataset_info`
    cycle_k/train-*.parquet   samples accepted in cycle k      -> load_dataset(path, "cycle_k")
  models/<name>@cycle-k/      the model repository at branch `cycle-k`: checkpoint + card + active_synthesis.json
  models/<name>/              the model repository at `main` (the best cycle)  -> from_pretrained(path)
```

With `push_to_hub=True` the same folders are uploaded (`HfApi.upload_folder`, one commit per repository and
revision): the dataset to `main` with tag `cycle-k-final`, the model to branch `cycle-k` with tag `cycle-k-final`,
and `main` of the model repository replaced by the best cycle. A push is written to `output_dir/pending_pushes.json`
before it starts and removed only once it succeeded, so a push that fails (after retries with backoff on transient
errors) or a process killed mid-push leaves the local folders in place and is retried by `retry_pending()` (the
trainer calls it when a run starts or resumes). `pull_run` downloads a run from the Hub into an `output_dir` layout
the trainer can resume from.

Security: the token is only passed to the client calls; it is never logged, written to cards, settings or pending
records (they are redacted). Repositories are created private unless `private=False`. Columns that hold real
training data (e.g. LLM prompts seeded with real examples) are dropped before publishing unless
`include_real_data=True`, and the trainer's `training_args.bin` (a pickle that can hold `hub_token`) is never copied.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import DatasetCardData, HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from .cards import (
    redact,
    render_dataset_card,
    render_model_card,
    scrub_settings,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

PENDING_FILE = "pending_pushes.json"
LOCAL_HUB_DIR = "hub"
RUN_FILE = "active_synthesis.json"
CYCLE_FILE = "cycle.json"
HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoint"
SYNTHETIC_DIR = "synthetic"
SPLIT = "train"
ALL_CONFIG = "all"
MAX_SHARD_BYTES = 500 * 1024 * 1024

# Files of a checkpoint folder that are never published: pickled TrainingArguments (may hold `hub_token`) and
# optimizer / scheduler / RNG states.
EXCLUDED_CHECKPOINT_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "*.partial")
# Provenance columns that can hold real training data (prompts seeded with real examples).
REAL_DATA_COLUMNS = ("synth_prompt", "synth_seed_examples", "synth_seed_texts")
RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)

try:  # The transport errors huggingface_hub itself retries on (timeouts, dropped connections).
    from huggingface_hub.utils._http import _DEFAULT_RETRY_ON_EXCEPTIONS as _TRANSPORT_ERRORS
except ImportError:  # pragma: no cover - private name of huggingface_hub; fall back to the stdlib bases
    _TRANSPORT_ERRORS = ()
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (*_TRANSPORT_ERRORS, ConnectionError, TimeoutError)
# What a failed push may raise; anything else is a bug and propagates.
PUSH_ERRORS: tuple[type[BaseException], ...] = (HfHubHTTPError, OfflineModeIsEnabled, *TRANSPORT_ERRORS)


def branch_name(cycle: int) -> str:
    """Model repository branch holding the checkpoint of `cycle`."""
    return f"cycle-{cycle}"


def tag_name(cycle: int) -> str:
    """Tag pinning the commit first published for `cycle` (in the model and the dataset repository)."""
    return f"cycle-{cycle}-final"


def config_name(cycle: int) -> str:
    """Dataset configuration holding the samples accepted in `cycle`."""
    return f"cycle_{cycle}"


def is_transient_error(error: BaseException) -> bool:
    """Whether `error` is worth retrying: a 408/429/5xx reply or a dropped/timed-out connection (not offline
    mode)."""
    if isinstance(error, OfflineModeIsEnabled):
        return False
    if isinstance(error, HfHubHTTPError):
        response = getattr(error, "response", None)
        return response is not None and response.status_code in RETRY_STATUS_CODES
    return isinstance(error, TRANSPORT_ERRORS)


def call_with_retries(
    fn: Callable[..., T],
    *args: Any,
    max_retries: int = 4,
    base_wait: float = 1.0,
    max_wait: float = 30.0,
    description: str = "Hub call",
    secrets: Sequence[str | None] = (),
    **kwargs: Any,
) -> T:
    """Calls `fn(*args, **kwargs)`, retrying transient Hub errors with exponential backoff.

    huggingface_hub retries single HTTP requests of its uploads (`http_backoff`), but not whole operations such as
    a commit, a branch or a tag; this wraps those. Waits `base_wait`, `2 * base_wait`, ... (at most `max_wait`)
    seconds between attempts; deterministic (no jitter). Non-transient errors (4xx, offline mode) are raised at once.

    Args:
        fn (`Callable`): The operation.
        max_retries (`int`, defaults to 4): Retries after the first attempt.
        base_wait (`float`, defaults to 1.0): First wait, in seconds.
        max_wait (`float`, defaults to 30.0): Longest wait, in seconds.
        description (`str`, defaults to `"Hub call"`): What is attempted, for the log.
        secrets (`Sequence[str]`, defaults to `()`): Strings redacted from log messages.
    """
    wait = base_wait
    for attempt in range(max_retries + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            if attempt == max_retries or not is_transient_error(error):
                raise
            message = redact(str(error).splitlines()[0] if str(error) else type(error).__name__, secrets)
            logger.warning(
                "%s failed (%s); retrying in %.2fs [%d/%d].", description, message, wait, attempt + 1, max_retries
            )
            time.sleep(wait)
            wait = min(max_wait, wait * 2)
    raise AssertionError("unreachable")  # pragma: no cover


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


@dataclass
class PublishResult:
    """What `publish_cycle` wrote and pushed.

    Args:
        cycle (`int`): The published cycle.
        model_dir (`Path`, *optional*): Local folder of the model revision `cycle-k`.
        main_dir (`Path`, *optional*): Local folder of the model revision `main`.
        dataset_dir (`Path`, *optional*): Local folder of the dataset repository (`None` until a cycle has samples).
        pushed (`list[str]`): Pushes that succeeded (`repo@revision`).
        pending (`list[str]`): Pushes still pending after this call.
    """

    cycle: int
    model_dir: Path | None = None
    main_dir: Path | None = None
    dataset_dir: Path | None = None
    pushed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


def _repo_name(repo_id: str | None, default: str) -> str:
    return repo_id.rstrip("/").split("/")[-1] if repo_id else default


def _write_text_atomic(path: Path, text: str) -> None:
    """Writes through a temporary file and `os.replace`, so a hard-linked `path` is replaced, never modified."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not supported: copy instead
        shutil.copy2(source, target)


def _link_tree(source: Path, target: Path, exclude: Sequence[str] = ()) -> None:
    """Mirrors the files of `source` into `target` (hard links where possible), skipping names matching `exclude`."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in exclude):
            continue
        _link_or_copy(path, target / relative)


def _replace_dir(target: Path, build: Callable[[Path], None], staging_root: Path) -> None:
    """Builds a directory in a staging place with `build(tmp)`, then swaps it in for `target`."""
    staging_root.mkdir(parents=True, exist_ok=True)
    tmp = staging_root / f"{target.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    build(tmp)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)


def _parquet_summary(files: Sequence[Path]) -> tuple[Any, int, int, int]:
    """Returns `(features, num_rows, num_bytes, download_size)` of a configuration's parquet shards."""
    import pyarrow.parquet as pq
    from datasets import Features

    features, num_rows, num_bytes, size = None, 0, 0, 0
    for file in files:
        parquet = pq.ParquetFile(file)
        features = features or Features.from_arrow_schema(parquet.schema_arrow)
        metadata = parquet.metadata
        num_rows += metadata.num_rows
        num_bytes += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        size += file.stat().st_size
    return features, num_rows, num_bytes, size


def _write_parquet_shards(dataset: Any, directory: Path, max_shard_bytes: int = MAX_SHARD_BYTES) -> None:
    """Writes `dataset` as `train-XXXXX-of-YYYYY.parquet` shards, as `Dataset.push_to_hub` lays them out, with
    external files (image paths) embedded."""
    from datasets.features.features import require_decoding
    from datasets.table import embed_table_storage

    if any(require_decoding(feature, ignore_decode_attribute=True) for feature in dataset.features.values()):
        dataset = dataset.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True)
    num_shards = max(1, math.ceil(dataset.data.nbytes / max_shard_bytes))
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(num_shards):
        shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
        shard.to_parquet(str(directory / f"{SPLIT}-{index:05d}-of-{num_shards:05d}.parquet"))


def _checkpoint_kind(checkpoint: Path, settings: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
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


class HubPublisher:
    """Publishes every cycle of an active-synthesis run as Hub-native artifacts, locally or on the Hub.

    The constructor only stores its arguments (no network, no files). The trainer calls `retry_pending()` when a
    run starts and `publish_cycle(...)` after it has written `output_dir/cycle-k/`, on the main process only.

    Args:
        output_dir (`str` or `os.PathLike`): The run's output directory (holds `cycle-k/` and `history.json`).
        model_repo_id (`str`, *optional*): Model repository (`namespace/name`). Without it nothing of the model is
            pushed; locally the folder is named `model`.
        dataset_repo_id (`str`, *optional*): Dataset repository for the synthetic samples. Without it nothing of the
            dataset is pushed; locally the folder is named `synthetic`.
        push_to_hub (`bool`, defaults to `False`): Upload to the Hub (at `HF_ENDPOINT`); otherwise only write the
            local Hub-layout folder.
        token (`str`, *optional*): Hub token; defaults to the logged-in one. Never logged or written anywhere.
        private (`bool`, defaults to `True`): Create repositories private. Existing repositories keep their
            visibility.
        local_hub_dir (`str` or `os.PathLike`, *optional*): The local Hub-layout folder; defaults to
            `output_dir/hub`.
        run_settings (`Mapping`, *optional*): Settings shown in the cards (`base_model`, `dataset_name`,
            `synthetic_loss_weight`, `uncertainty_method`, `ensemble_size`, `acquisition_function`, `cycle_metric`,
            `command`, `license`, `task`, ...). Completed from the `config` of `output_dir/history.json` when present;
            secret-like keys are dropped.
        include_real_data (`bool`, defaults to `False`): Publish columns that hold real training data
            (`real_data_columns`). Only set it when the real data may be published.
        real_data_columns (`Sequence[str]`, defaults to `REAL_DATA_COLUMNS`): Those columns.
        max_retries (`int`, defaults to 4): Retries of a transient failure (5xx, 429, timeouts) per Hub operation.
        retry_base_wait (`float`, defaults to 1.0): First backoff wait, in seconds (doubles each retry).
        retry_max_wait (`float`, defaults to 30.0): Longest backoff wait, in seconds.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        model_repo_id: str | None = None,
        dataset_repo_id: str | None = None,
        *,
        push_to_hub: bool = False,
        token: str | None = None,
        private: bool = True,
        local_hub_dir: str | os.PathLike | None = None,
        run_settings: Mapping[str, Any] | None = None,
        include_real_data: bool = False,
        real_data_columns: Sequence[str] = REAL_DATA_COLUMNS,
        max_retries: int = 4,
        retry_base_wait: float = 1.0,
        retry_max_wait: float = 30.0,
    ):
        self.output_dir = output_dir
        self.model_repo_id = model_repo_id
        self.dataset_repo_id = dataset_repo_id
        self.push_to_hub = push_to_hub
        self.token = token
        self.private = private
        self.local_hub_dir = local_hub_dir
        self.run_settings = run_settings
        self.include_real_data = include_real_data
        self.real_data_columns = real_data_columns
        self.max_retries = max_retries
        self.retry_base_wait = retry_base_wait
        self.retry_max_wait = retry_max_wait

    @classmethod
    def from_training_args(cls, args: Any, run_settings: Mapping[str, Any] | None = None, **kwargs: Any):
        """Builds a publisher from an `ActiveSynthesisConfig`: `output_dir`, `hub_model_id`, `hub_dataset_id`,
        `push_cycles_to_hub`, `hub_token`, `hub_private_repo` (`None` means private)."""
        private = getattr(args, "hub_private_repo", None)
        return cls(
            args.output_dir,
            model_repo_id=getattr(args, "hub_model_id", None),
            dataset_repo_id=getattr(args, "hub_dataset_id", None),
            push_to_hub=bool(getattr(args, "push_cycles_to_hub", False)),
            token=getattr(args, "hub_token", None),
            private=True if private is None else bool(private),
            run_settings=run_settings,
            **kwargs,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(output_dir={str(self.output_dir)!r}, model_repo_id={self.model_repo_id!r}, "
            f"dataset_repo_id={self.dataset_repo_id!r}, push_to_hub={self.push_to_hub}, private={self.private}, "
            f"token={'***' if self.token else None})"
        )

    # ------------------------------------------------------------------------------------------------------ paths
    @property
    def hub_dir(self) -> Path:
        """The local Hub-layout folder."""
        return Path(self.local_hub_dir) if self.local_hub_dir is not None else Path(self.output_dir) / LOCAL_HUB_DIR

    @property
    def pending_file(self) -> Path:
        return Path(self.output_dir) / PENDING_FILE

    def dataset_dir(self) -> Path:
        """Local folder of the dataset repository (`load_dataset(path, "cycle_k")`)."""
        return self.hub_dir / "datasets" / _repo_name(self.dataset_repo_id, "synthetic")

    def model_dir(self, revision: str = "main") -> Path:
        """Local folder of the model repository at `revision` (`"main"` or `"cycle-k"`; `from_pretrained(path)`)."""
        name = _repo_name(self.model_repo_id, "model")
        return self.hub_dir / "models" / (name if revision == "main" else f"{name}@{revision}")

    @property
    def _staging(self) -> Path:
        return self.hub_dir / ".staging"

    def _local_path(self, folder: Path) -> str:
        """`folder` relative to the output directory's parent, for usage snippets of local-only repositories."""
        return folder.relative_to(self.hub_dir.parent).as_posix()

    def _api(self) -> HfApi:
        return HfApi(token=self.token)

    def _retry(self, fn: Callable[..., T], *args: Any, description: str, **kwargs: Any) -> T:
        return call_with_retries(
            fn,
            *args,
            max_retries=self.max_retries,
            base_wait=self.retry_base_wait,
            max_wait=self.retry_max_wait,
            description=description,
            secrets=(self.token,),
            **kwargs,
        )

    def _settings(self, run_settings: Mapping[str, Any] | None) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        history_file = Path(self.output_dir) / HISTORY_FILE
        if history_file.is_file():
            settings.update(json.loads(history_file.read_text()).get("config") or {})
        settings.update(self.run_settings or {})
        settings.update(run_settings or {})
        return scrub_settings(settings, secrets=(self.token,))

    # ---------------------------------------------------------------------------------------------------- publish
    def publish_cycle(
        self,
        cycle_dir: str | os.PathLike,
        history: Sequence[Mapping[str, Any]],
        best_cycle: int,
        run_settings: Mapping[str, Any] | None = None,
    ) -> PublishResult:
        """Publishes cycle `k` from `output_dir/cycle-k/`: writes the local Hub-layout folders, then (with
        `push_to_hub`) pushes them. Never raises for a failed push: the failure is logged as an error, recorded in
        `output_dir/pending_pushes.json` and retried by `retry_pending()`; the local folders stay in place.

        Args:
            cycle_dir (`str` or `os.PathLike`): The cycle's directory (`checkpoint/`, `synthetic/`, `cycle.json`).
            history (`Sequence[Mapping]`): Every cycle dict so far, this cycle included.
            best_cycle (`int`): The best cycle so far by the validation metric; its checkpoint goes to `main`.
            run_settings (`Mapping`, *optional*): Settings for the cards, on top of the constructor's.

        Returns:
            [`PublishResult`]: local folders, and which pushes succeeded or are pending.
        """
        cycle_dir = Path(cycle_dir)
        cycle = int(json.loads((cycle_dir / CYCLE_FILE).read_text())["cycle"])
        history = [dict(entry) for entry in history if int(entry["cycle"]) <= cycle]
        if not any(int(entry["cycle"]) == cycle for entry in history):
            raise ValueError(f"`history` has no entry for cycle {cycle} ({cycle_dir}); pass every cycle so far.")
        if not any(int(entry["cycle"]) == best_cycle for entry in history):
            raise ValueError(f"`best_cycle`={best_cycle} is not in `history` (cycles up to {cycle}).")
        settings = self._settings(run_settings)
        result = PublishResult(cycle=cycle)
        result.dataset_dir = self._stage_dataset(cycle, cycle_dir, history, settings)
        result.model_dir = self._stage_model_branch(cycle, cycle_dir, history, best_cycle, settings)
        result.main_dir = self._stage_model_main(best_cycle, history, settings)
        logger.info("Cycle %d written in Hub layout under %s.", cycle, self.hub_dir)
        if not self.push_to_hub:
            return result

        pushes = []
        if self.dataset_repo_id and result.dataset_dir is not None:
            tags = [tag_name(cycle)] if (result.dataset_dir / config_name(cycle)).is_dir() else []
            pushes.append(
                PendingPush(
                    "dataset",
                    self.dataset_repo_id,
                    "main",
                    self._relative(result.dataset_dir),
                    tags,
                    f"Synthetic samples of cycle {cycle}",
                    cycle,
                )
            )
        if self.model_repo_id:
            pushes.append(
                PendingPush(
                    "model",
                    self.model_repo_id,
                    branch_name(cycle),
                    self._relative(result.model_dir),
                    [tag_name(cycle)],
                    f"Checkpoint of cycle {cycle}",
                    cycle,
                )
            )
            pushes.append(
                PendingPush(
                    "model",
                    self.model_repo_id,
                    "main",
                    self._relative(result.main_dir),
                    [],
                    f"main: best cycle {best_cycle} (after cycle {cycle})",
                    cycle,
                )
            )
        self._enqueue(pushes)
        result.pushed, result.pending = self._process_pending()
        return result

    def retry_pending(self) -> list[PendingPush]:
        """Retries every push recorded in `output_dir/pending_pushes.json`, in order, and returns those still
        pending. A failure is logged and kept; nothing local is removed. Without `push_to_hub`, only reports them."""
        pending = self._load_pending()
        if not pending:
            return []
        if not self.push_to_hub:
            logger.warning(
                "%d Hub push(es) are pending in %s (%s); enable pushing to retry them.",
                len(pending),
                self.pending_file,
                ", ".join(p.describe() for p in pending),
            )
            return pending
        self._process_pending()
        return self._load_pending()

    @property
    def pending(self) -> list[PendingPush]:
        """The pushes recorded as pending."""
        return self._load_pending()

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.hub_dir).as_posix()

    # ---------------------------------------------------------------------------------------------- local staging
    def _stage_dataset(
        self, cycle: int, cycle_dir: Path, history: list[dict[str, Any]], settings: Mapping[str, Any]
    ) -> Path | None:
        from datasets import concatenate_datasets, load_from_disk

        folder = self.dataset_dir()
        folder.mkdir(parents=True, exist_ok=True)
        # Configurations of later cycles belong to a run this one replaces (resumed from an earlier cycle).
        for stale in folder.glob("cycle_*"):
            if stale.is_dir() and stale.name.split("_", 1)[1].isdigit() and int(stale.name.split("_", 1)[1]) >= cycle:
                shutil.rmtree(stale)
        synthetic = cycle_dir / SYNTHETIC_DIR
        if synthetic.is_dir():
            dataset = load_from_disk(str(synthetic))
            if not self.include_real_data:
                dataset = dataset.remove_columns([c for c in self.real_data_columns if c in dataset.column_names])
            if len(dataset) > 0:
                _replace_dir(
                    folder / config_name(cycle), lambda tmp: _write_parquet_shards(dataset, tmp), self._staging
                )
        configs = {}
        for path in folder.glob("cycle_*"):
            if path.is_dir() and path.name.split("_", 1)[1].isdigit() and any(path.glob("*.parquet")):
                configs[int(path.name.split("_", 1)[1])] = path.name
        if not configs:
            return None

        from datasets.info import DatasetInfo, DatasetInfosDict
        from datasets.splits import SplitDict, SplitInfo
        from datasets.utils.metadata import MetadataConfigs

        summaries = {k: _parquet_summary(sorted((folder / name).glob("*.parquet"))) for k, name in configs.items()}
        metadata: dict[str, dict[str, Any]] = {}
        infos = {}
        for k in sorted(configs):
            features, rows, num_bytes, size = summaries[k]
            metadata[configs[k]] = {"data_files": [{"split": SPLIT, "path": f"{configs[k]}/{SPLIT}-*"}]}
            infos[configs[k]] = DatasetInfo(
                features=features,
                splits=SplitDict({SPLIT: SplitInfo(name=SPLIT, num_bytes=num_bytes, num_examples=rows)}),
                download_size=size,
                dataset_size=num_bytes,
            )
        all_features = summaries[min(configs)][0]
        if all(summary[0] == all_features for summary in summaries.values()):
            # Same schema in every cycle: `all` is a view over the cycles' files (no copy).
            if (folder / ALL_CONFIG).exists():
                shutil.rmtree(folder / ALL_CONFIG)
            all_paths = [f"{configs[k]}/{SPLIT}-*" for k in sorted(configs)]
            all_rows = sum(s[1] for s in summaries.values())
            all_bytes = sum(s[2] for s in summaries.values())
            all_size = sum(s[3] for s in summaries.values())
        else:
            # Schemas differ (e.g. a generator-specific column): materialise `all` with missing values as None.
            from datasets import Dataset

            parts = [
                Dataset.from_parquet([str(p) for p in sorted((folder / configs[k]).glob("*.parquet"))])
                for k in sorted(configs)
            ]
            combined = concatenate_datasets(parts)
            _replace_dir(folder / ALL_CONFIG, lambda tmp: _write_parquet_shards(combined, tmp), self._staging)
            all_features, all_rows, all_bytes, all_size = _parquet_summary(
                sorted((folder / ALL_CONFIG).glob("*.parquet"))
            )
            all_paths = [f"{ALL_CONFIG}/{SPLIT}-*"]
        metadata[ALL_CONFIG] = {"data_files": [{"split": SPLIT, "path": all_paths}], "default": True}
        infos[ALL_CONFIG] = DatasetInfo(
            features=all_features,
            splits=SplitDict({SPLIT: SplitInfo(name=SPLIT, num_bytes=all_bytes, num_examples=all_rows)}),
            download_size=all_size,
            dataset_size=all_bytes,
        )
        card_data = DatasetCardData()
        MetadataConfigs(metadata).to_dataset_card_data(card_data)
        DatasetInfosDict(infos).to_dataset_card_data(card_data)
        card = render_dataset_card(
            repo_id=self.dataset_repo_id or self._local_path(folder),
            history=history,
            configs=configs,
            features=all_features,
            card_data=card_data,
            settings=settings,
            model_repo_id=self.model_repo_id,
            real_data_columns=self.real_data_columns,
            include_real_data=self.include_real_data,
            endpoint=constants.ENDPOINT,
        )
        _write_text_atomic(folder / constants.REPOCARD_NAME, str(card))
        return folder

    def _run_file(self, cycle: int, revision: str, best_cycle: int, history: list[dict], settings: Mapping) -> str:
        payload = {
            "format_version": 1,
            "cycle": cycle,
            "revision": revision,
            "best_cycle": best_cycle,
            "history": history,
            "run_settings": dict(settings),
        }
        return redact(json.dumps(payload, indent=2, default=str), (self.token,)) + "\n"

    def _stage_model_branch(
        self, cycle: int, cycle_dir: Path, history: list[dict], best_cycle: int, settings: Mapping[str, Any]
    ) -> Path:
        checkpoint = cycle_dir / CHECKPOINT_DIR
        if not checkpoint.is_dir():
            raise FileNotFoundError(f"{checkpoint} does not exist: the trainer saves each cycle's model there.")
        revision = branch_name(cycle)
        folder = self.model_dir(revision)
        library, base_model, pipeline_tag = _checkpoint_kind(checkpoint, settings)
        card = render_model_card(
            repo_id=self.model_repo_id or _repo_name(None, "model"),
            local_path=None if self.model_repo_id else self._local_path(folder),
            revision=revision,
            cycle=cycle,
            best_cycle=best_cycle,
            history=history,
            settings=settings,
            dataset_repo_id=self.dataset_repo_id,
            library_name=library,
            base_model=base_model,
            pipeline_tag=pipeline_tag,
            endpoint=constants.ENDPOINT,
        )

        def build(tmp: Path) -> None:
            _link_tree(checkpoint, tmp, exclude=(*EXCLUDED_CHECKPOINT_FILES, constants.REPOCARD_NAME, RUN_FILE))
            _write_text_atomic(tmp / constants.REPOCARD_NAME, str(card))
            _write_text_atomic(tmp / RUN_FILE, self._run_file(cycle, revision, best_cycle, history, settings))

        _replace_dir(folder, build, self._staging)
        return folder

    def _best_cycle_source(self, best_cycle: int) -> Path:
        """The local folder holding the checkpoint of `best_cycle`: its branch folder, or `main` if it already
        holds it; downloaded from the Hub when pushing and neither is present (a run resumed elsewhere)."""
        branch = self.model_dir(branch_name(best_cycle))
        if branch.is_dir():
            return branch
        main = self.model_dir("main")
        if (main / RUN_FILE).is_file() and json.loads((main / RUN_FILE).read_text())["cycle"] == best_cycle:
            return main
        if self.push_to_hub and self.model_repo_id:
            self._download(self.model_repo_id, "model", branch_name(best_cycle), branch)
            return branch
        raise FileNotFoundError(
            f"The checkpoint of the best cycle {best_cycle} is not in {self.hub_dir} (expected {branch}); "
            "it is needed to update `main`."
        )

    def _stage_model_main(self, best_cycle: int, history: list[dict], settings: Mapping[str, Any]) -> Path:
        source = self._best_cycle_source(best_cycle)
        folder = self.model_dir("main")
        library, base_model, pipeline_tag = _checkpoint_kind(source, settings)
        current = max(int(entry["cycle"]) for entry in history)
        card = render_model_card(
            repo_id=self.model_repo_id or _repo_name(None, "model"),
            local_path=None if self.model_repo_id else self._local_path(folder),
            revision="main",
            cycle=best_cycle,
            best_cycle=best_cycle,
            history=history,
            settings=settings,
            dataset_repo_id=self.dataset_repo_id,
            library_name=library,
            base_model=base_model,
            pipeline_tag=pipeline_tag,
            endpoint=constants.ENDPOINT,
        )

        def build(tmp: Path) -> None:
            _link_tree(source, tmp, exclude=(constants.REPOCARD_NAME, RUN_FILE, ".gitattributes", ".cache"))
            _write_text_atomic(tmp / constants.REPOCARD_NAME, str(card))
            _write_text_atomic(tmp / RUN_FILE, self._run_file(best_cycle, "main", best_cycle, history, settings))

        logger.debug("main <- cycle %d (after cycle %d)", best_cycle, current)
        _replace_dir(folder, build, self._staging)
        return folder

    def _download(self, repo_id: str, repo_type: str, revision: str, target: Path) -> None:
        def build(tmp: Path) -> None:
            self._retry(
                self._api().snapshot_download,
                repo_id,
                repo_type=repo_type,
                revision=revision,
                local_dir=tmp,
                description=f"Downloading {repo_id}@{revision}",
            )
            shutil.rmtree(tmp / ".cache", ignore_errors=True)

        _replace_dir(target, build, self._staging)

    # ------------------------------------------------------------------------------------------------------ pushes
    def _load_pending(self) -> list[PendingPush]:
        if not self.pending_file.is_file():
            return []
        return [PendingPush(**entry) for entry in json.loads(self.pending_file.read_text())["pushes"]]

    def _save_pending(self, pending: Sequence[PendingPush]) -> None:
        if not pending:
            self.pending_file.unlink(missing_ok=True)
            return
        payload = {"format_version": 1, "pushes": [asdict(p) for p in pending]}
        self.pending_file.parent.mkdir(parents=True, exist_ok=True)
        _write_text_atomic(self.pending_file, redact(json.dumps(payload, indent=2), (self.token,)) + "\n")

    def _enqueue(self, pushes: Sequence[PendingPush]) -> None:
        """Records pushes before they start (write-ahead): a crash mid-push leaves them pending."""
        pending = self._load_pending()
        for push in pushes:
            previous = next((p for p in pending if p.key == push.key), None)
            if previous is not None:  # The new upload of the same folder supersedes it; keep its tags.
                pending.remove(previous)
                push.tags = list(dict.fromkeys([*previous.tags, *push.tags]))
                push.attempts = previous.attempts
            pending.append(push)
        self._save_pending(pending)

    def _process_pending(self) -> tuple[list[str], list[str]]:
        """Runs the recorded pushes in order; returns `(pushed, still_pending)` descriptions."""
        queue = self._load_pending()
        done: list[str] = []
        failed: list[PendingPush] = []
        for index, push in enumerate(queue):
            try:
                self._push(push)
            except PUSH_ERRORS as error:
                push.attempts += 1
                push.last_error = redact(f"{type(error).__name__}: {error}", (self.token,))
                failed.append(push)
                logger.error(
                    "Pushing %s failed (attempt %d): %s. Nothing is lost: the files stay in %s and the push is "
                    "recorded in %s; it is retried by the next run or resume (`HubPublisher.retry_pending()`).",
                    push.describe(),
                    push.attempts,
                    push.last_error.splitlines()[0],
                    self.hub_dir / push.folder,
                    self.pending_file,
                )
                if is_transient_error(error):
                    # The Hub is unreachable or failing: keep the rest queued rather than wait on each in turn.
                    failed.extend(queue[index + 1 :])
                    self._save_pending(failed)
                    break
            else:
                done.append(push.describe())
                logger.info("Pushed %s.", push.describe())
            self._save_pending(failed + queue[index + 1 :])
        return done, [p.describe() for p in failed]

    def _push(self, push: PendingPush) -> None:
        folder = self.hub_dir / push.folder
        if not folder.is_dir():
            raise FileNotFoundError(
                f"The pending push of {push.describe()} needs {folder}, which no longer exists. Restore it, or remove "
                f"the entry from {self.pending_file} to give the push up."
            )
        api = self._api()
        repo = push.describe()
        self._retry(
            api.create_repo,
            push.repo_id,
            repo_type=push.repo_type,
            private=self.private,
            exist_ok=True,
            description=f"Creating {repo}",
        )
        if push.revision != "main":
            refs = self._retry(
                api.list_repo_refs, push.repo_id, repo_type=push.repo_type, description=f"Refs of {repo}"
            )
            if push.revision not in {branch.name for branch in refs.branches}:
                # Branch off the repository's first (empty) commit, not `main`: if the upload below fails, the
                # branch holds no weights at all rather than silently serving another cycle's.
                commits = self._retry(
                    api.list_repo_commits, push.repo_id, repo_type=push.repo_type, description=f"Commits of {repo}"
                )
                self._retry(
                    api.create_branch,
                    push.repo_id,
                    branch=push.revision,
                    revision=commits[-1].commit_id,
                    repo_type=push.repo_type,
                    exist_ok=True,
                    description=f"Creating branch {repo}",
                )
        commit = self._retry(
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
            self._retry(
                api.create_tag,
                push.repo_id,
                tag=tag,
                revision=commit.oid,
                repo_type=push.repo_type,
                exist_ok=True,
                description=f"Tagging {repo} as {tag}",
            )


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
    publisher = HubPublisher(output_dir, model_repo_id, dataset_repo_id, token=token, local_hub_dir=local_hub_dir)
    api = publisher._api()
    revision = revision or _latest_cycle_branch(api, model_repo_id)

    staging = publisher._staging / "pull-model"
    publisher._download(model_repo_id, "model", revision, staging)
    run = json.loads((staging / RUN_FILE).read_text())
    cycle = int(run["cycle"])
    history = [entry for entry in run["history"] if int(entry["cycle"]) <= cycle]
    branch_dir = publisher.model_dir(branch_name(cycle))
    if branch_dir.exists():
        shutil.rmtree(branch_dir)
    branch_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, branch_dir)

    best_cycle = int(run.get("best_cycle", cycle))
    if best_cycle != cycle:  # `main` of the next publish needs the best checkpoint locally
        publisher._download(
            model_repo_id, "model", branch_name(best_cycle), publisher.model_dir(branch_name(best_cycle))
        )

    checkpoint = output_dir / f"cycle-{cycle}" / CHECKPOINT_DIR
    _link_tree(branch_dir, checkpoint, exclude=(constants.REPOCARD_NAME, RUN_FILE, ".gitattributes"))
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
        from datasets import Dataset

        tags = {t.name for t in api.list_repo_refs(dataset_repo_id, repo_type="dataset").tags}
        dataset_revision = tag_name(cycle) if tag_name(cycle) in tags else "main"
        folder = publisher.dataset_dir()
        publisher._download(dataset_repo_id, "dataset", dataset_revision, folder)
        for path in sorted(folder.glob("cycle_*")):
            number = path.name.split("_", 1)[1]
            if not (path.is_dir() and number.isdigit()):
                continue
            if int(number) > cycle:  # published by the run after the pulled cycle: not part of this state
                shutil.rmtree(path)
                continue
            dataset = Dataset.from_parquet([str(p) for p in sorted(path.glob("*.parquet"))])
            dataset.save_to_disk(str(output_dir / f"cycle-{number}" / SYNTHETIC_DIR))
    logger.info("Pulled %s@%s (cycle %d) into %s.", model_repo_id, revision, cycle, output_dir)
    return cycle

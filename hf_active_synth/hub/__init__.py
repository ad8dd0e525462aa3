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

Modules: `publisher` (`HubPublisher`, `PublishResult`), `pull` (`pull_run`), `layout` (names and local paths),
`stage_dataset` / `stage_model` (writing the local repository folders), `pending` (the pending-push record),
`transfer` (upload / download of a folder), `retry` (transient errors, backoff), `files` (filesystem primitives).
All log to the `hf_active_synth.hub` logger.
"""

import logging

from .layout import (
    ALL_CONFIG,
    CHECKPOINT_DIR,
    CYCLE_FILE,
    HISTORY_FILE,
    LOCAL_HUB_DIR,
    RUN_FILE,
    SPLIT,
    SYNTHETIC_DIR,
    branch_name,
    config_name,
    tag_name,
)
from .pending import PENDING_FILE, PendingPush
from .publisher import HubPublisher, PublishResult
from .pull import pull_run
from .retry import PUSH_ERRORS, RETRY_STATUS_CODES, TRANSPORT_ERRORS, call_with_retries, is_transient_error
from .stage_dataset import MAX_SHARD_BYTES, REAL_DATA_COLUMNS
from .stage_model import EXCLUDED_CHECKPOINT_FILES

logger = logging.getLogger(__name__)

__all__ = [
    "ALL_CONFIG",
    "CHECKPOINT_DIR",
    "CYCLE_FILE",
    "EXCLUDED_CHECKPOINT_FILES",
    "HISTORY_FILE",
    "LOCAL_HUB_DIR",
    "MAX_SHARD_BYTES",
    "PENDING_FILE",
    "PUSH_ERRORS",
    "REAL_DATA_COLUMNS",
    "RETRY_STATUS_CODES",
    "RUN_FILE",
    "SPLIT",
    "SYNTHETIC_DIR",
    "TRANSPORT_ERRORS",
    "HubPublisher",
    "PendingPush",
    "PublishResult",
    "branch_name",
    "call_with_retries",
    "config_name",
    "is_transient_error",
    "pull_run",
    "tag_name",
]

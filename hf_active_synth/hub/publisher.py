"""`HubPublisher`: publishes each cycle of a run, writing its local Hub-layout folders and (when asked) pushing
them, with failed pushes recorded and retried later."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from huggingface_hub import HfApi

from ..privacy.audit import PrivacyThresholds, published_audit
from .layout import CYCLE_FILE, HISTORY_FILE, RUN_FILE, HubLayout, branch_name, config_name, tag_name
from .pending import PENDING_FILE, PendingPush, PendingQueue
from .retry import call_with_retries
from .secrets import scrub_settings
from .stage_dataset import REAL_DATA_COLUMNS, stage_dataset
from .stage_model import stage_model_branch, stage_model_main
from .transfer import download_revision, upload_push

if TYPE_CHECKING:
    from ..cycle import ActiveSynthesisHistory, CycleResult

logger = logging.getLogger(__package__)  # `hf_active_synth.hub`: one logger for the whole package

T = TypeVar("T")


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
        privacy_refusal (`str`, *optional*): Why the dataset was not pushed (a privacy threshold it crosses); its
            local folder is written all the same.
    """

    cycle: int
    model_dir: Path | None = None
    main_dir: Path | None = None
    dataset_dir: Path | None = None
    pushed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    privacy_refusal: str | None = None


@dataclass(repr=False, eq=False)
class HubPublisher:
    """Publishes every cycle of an active-synthesis run as Hub-native artifacts, locally or on the Hub.

    The constructor only stores its arguments (no network, no files). It is a [`CycleCallback`]: the trainer calls
    `on_run_start()` (`retry_pending()`) when a run starts and `on_cycle_end(...)` (`publish_cycle(...)`) after it
    has written `output_dir/cycle-k/`, on the main process only.

    Args:
        output_dir (`str` or `os.PathLike`): The run's output directory (holds `cycle-k/` and `history.json`).
        model_repo_id (`str`, *optional*): Model repository (`namespace/name`). Without it nothing of the model is
            pushed; locally the folder is named after the base model and the data (`hub.layout.default_repo_names`,
            e.g. `resnet-digits-active-synth`).
        dataset_repo_id (`str`, *optional*): Dataset repository for the synthetic samples. Without it nothing of the
            dataset is pushed; locally the folder is named after the data (e.g. `digits-active-synth-synthetic`).
        push_to_hub (`bool`, defaults to `False`): Upload to the Hub (at `HF_ENDPOINT`); otherwise only write the
            local Hub-layout folder.
        token (`str`, *optional*): Hub token; defaults to the logged-in one. Never logged or written anywhere.
        private (`bool`, defaults to `True`): Create repositories private. Existing repositories keep their
            visibility.
        local_hub_dir (`str` or `os.PathLike`, *optional*): The local Hub-layout folder; defaults to
            `output_dir/hub`.
        run_settings (`Mapping`, *optional*): Settings shown in the cards (`base_model`, `dataset_name`,
            `synthetic_loss_weight`, `uncertainty_method`, `ensemble_size`, `acquisition_function`, `cycle_metric`,
            `command`, `license`, `task`, `preprocessing`, ...). Completed from the `config` of
            `output_dir/history.json` when present; secret-like keys are dropped. `preprocessing`, the dotted path of
            the function that turned raw rows into model inputs (`card_usage.preprocessing_path`), is what the model
            card's usage code calls for a checkpoint saved without a processor.
        include_real_data (`bool`, defaults to `False`): Publish columns that hold real training data
            (`real_data_columns`). Only set it when the real data may be published.
        real_data_columns (`Sequence[str]`, defaults to `REAL_DATA_COLUMNS`): Those columns.
        real_data_filters (`Collection[str]`, *optional*): Names of the run's filters that compare candidates with
            the real data (`Filter.checks_real_data`), for the dataset card's privacy section; `None`: the library's
            own filters.
        max_retries (`int`, defaults to 4): Retries of a transient failure (5xx, 429, timeouts) per Hub operation.
        retry_base_wait (`float`, defaults to 1.0): First backoff wait, in seconds (doubles each retry).
        retry_max_wait (`float`, defaults to 30.0): Longest backoff wait, in seconds.
        cycle_metric (`str`, defaults to `"eval_accuracy"`): The metric that picks the best cycle (pushed to `main`)
            in `on_cycle_end`.
        privacy_thresholds ([`privacy.PrivacyThresholds`], *optional*): Limits on the published dataset's privacy
            audit (`CycleResult.privacy_audit`); a dataset that crosses one is not pushed (its local folder stays, an
            error names the figure, the limit and the option). The model is pushed as usual.
    """

    output_dir: str | os.PathLike
    model_repo_id: str | None = None
    dataset_repo_id: str | None = None
    _: KW_ONLY
    push_to_hub: bool = False
    token: str | None = None
    private: bool = True
    local_hub_dir: str | os.PathLike | None = None
    run_settings: Mapping[str, Any] | None = None
    include_real_data: bool = False
    real_data_columns: Sequence[str] = REAL_DATA_COLUMNS
    real_data_filters: Collection[str] | None = None
    max_retries: int = 4
    retry_base_wait: float = 1.0
    retry_max_wait: float = 30.0
    cycle_metric: str = "eval_accuracy"
    privacy_thresholds: PrivacyThresholds | None = None

    @classmethod
    def from_training_args(cls, args: Any, run_settings: Mapping[str, Any] | None = None, **kwargs: Any):
        """Builds a publisher from an `ActiveSynthesisConfig`: `output_dir`, `hub_model_id`, `hub_dataset_id`,
        `push_cycles_to_hub`, `hub_token`, `hub_private_repo` (`None` means private), `cycle_metric`, and the
        privacy thresholds (`privacy_max_closer_share`, `privacy_max_near_copy_share`)."""
        private = getattr(args, "hub_private_repo", None)
        return cls(
            args.output_dir,
            model_repo_id=getattr(args, "hub_model_id", None),
            dataset_repo_id=getattr(args, "hub_dataset_id", None),
            push_to_hub=bool(getattr(args, "push_cycles_to_hub", False)),
            token=getattr(args, "hub_token", None),
            private=True if private is None else bool(private),
            cycle_metric=getattr(args, "cycle_metric", "eval_accuracy"),
            privacy_thresholds=PrivacyThresholds.from_training_args(args),
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
    def _layout(self) -> HubLayout:
        return self._layout_for(self._settings(None))

    def _layout_for(self, settings: Mapping[str, Any]) -> HubLayout:
        # Built on each use: the publisher's attributes are public and may be changed after construction, and the
        # default repository names come from the settings (the base model, the data).
        return HubLayout.for_run(
            self.output_dir, self.local_hub_dir, self.model_repo_id, self.dataset_repo_id, settings=settings
        )

    @property
    def hub_dir(self) -> Path:
        """The local Hub-layout folder."""
        return self._layout.hub_dir

    @property
    def pending_file(self) -> Path:
        return Path(self.output_dir) / PENDING_FILE

    def dataset_dir(self) -> Path:
        """Local folder of the dataset repository (`load_dataset(path, "cycle_k")`)."""
        return self._layout.dataset_dir()

    def model_dir(self, revision: str = "main") -> Path:
        """Local folder of the model repository at `revision` (`"main"` or `"cycle-k"`; `from_pretrained(path)`)."""
        return self._layout.model_dir(revision)

    @property
    def _queue(self) -> PendingQueue:
        return PendingQueue(self.pending_file, secrets=(self.token,))

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
    def on_run_start(self) -> None:
        """`CycleCallback` hook: retries the pushes an earlier run left pending (see `retry_pending`)."""
        self.retry_pending()

    def on_cycle_end(self, result: CycleResult, cycle_dir: Path, history: ActiveSynthesisHistory) -> None:
        """`CycleCallback` hook: publishes the cycle the trainer has just saved in `cycle_dir`, with the best cycle
        so far by `cycle_metric` on `main`."""
        self.publish_cycle(
            cycle_dir=cycle_dir,
            history=[cycle.to_dict() for cycle in history.cycles],
            best_cycle=history.best_cycle(self.cycle_metric),
        )

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
        layout, secrets = self._layout_for(settings), (self.token,)
        result = PublishResult(cycle=cycle)
        result.dataset_dir = stage_dataset(
            layout,
            cycle,
            cycle_dir,
            history,
            settings,
            self.include_real_data,
            self.real_data_columns,
            real_data_filters=self.real_data_filters,
        )
        result.model_dir = stage_model_branch(layout, cycle, cycle_dir, history, best_cycle, settings, secrets)
        source = self._best_cycle_source(best_cycle, layout)
        result.main_dir = stage_model_main(layout, source, best_cycle, history, settings, secrets)
        logger.info("Cycle %d written in Hub layout under %s.", cycle, layout.hub_dir)
        if not self.push_to_hub:
            return result

        result.privacy_refusal = self._privacy_refusal(history, result)
        self._queue.enqueue(self._pushes(result, best_cycle, layout))
        result.pushed, result.pending = self._queue.process(self._push, self.hub_dir)
        return result

    def _privacy_refusal(self, history: Sequence[Mapping[str, Any]], result: PublishResult) -> str | None:
        """Why the dataset must not be pushed (logged as an error), or `None`."""
        if self.privacy_thresholds is None or not self.dataset_repo_id or result.dataset_dir is None:
            return None
        violations = self.privacy_thresholds.violations(published_audit(history))
        if not violations:
            return None
        refusal = (
            f"Not pushing the synthetic dataset of cycle {result.cycle} to {self.dataset_repo_id}: "
            + "; ".join(violations)
            + f". Its files stay in {result.dataset_dir} and {self.output_dir}/cycle-*/synthetic; raise or unset the "
            "limit to publish it."
        )
        logger.error(refusal)
        return refusal

    def _pushes(self, result: PublishResult, best_cycle: int, layout: HubLayout) -> list[PendingPush]:
        """The pushes of a published cycle: the dataset to `main`, the model to `cycle-k` and to `main`."""
        cycle = result.cycle
        pushes = []
        if self.dataset_repo_id and result.dataset_dir is not None and result.privacy_refusal is None:
            tags = [tag_name(cycle)] if (result.dataset_dir / config_name(cycle)).is_dir() else []
            pushes.append(
                PendingPush(
                    "dataset",
                    self.dataset_repo_id,
                    "main",
                    layout.relative(result.dataset_dir),
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
                    layout.relative(result.model_dir),
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
                    layout.relative(result.main_dir),
                    [],
                    f"main: best cycle {best_cycle} (after cycle {cycle})",
                    cycle,
                )
            )
        return pushes

    def retry_pending(self) -> list[PendingPush]:
        """Retries every push recorded in `output_dir/pending_pushes.json`, in order, and returns those still
        pending. A failure is logged and kept; nothing local is removed. Without `push_to_hub`, only reports them."""
        pending = self._queue.load()
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
        self._queue.process(self._push, self.hub_dir)
        return self._queue.load()

    @property
    def pending(self) -> list[PendingPush]:
        """The pushes recorded as pending."""
        return self._queue.load()

    # ------------------------------------------------------------------------------------------------ transfers
    def _best_cycle_source(self, best_cycle: int, layout: HubLayout) -> Path:
        """The local folder holding the checkpoint of `best_cycle`: its branch folder, or `main` if it already
        holds it; downloaded from the Hub when pushing and neither is present (a run resumed elsewhere)."""
        branch = layout.model_dir(branch_name(best_cycle))
        if branch.is_dir():
            return branch
        main = layout.model_dir("main")
        if (main / RUN_FILE).is_file() and json.loads((main / RUN_FILE).read_text())["cycle"] == best_cycle:
            return main
        if self.push_to_hub and self.model_repo_id:
            download_revision(
                self._api(),
                self.model_repo_id,
                "model",
                branch_name(best_cycle),
                branch,
                staging=layout.staging,
                retry=self._retry,
            )
            return branch
        raise FileNotFoundError(
            f"The checkpoint of the best cycle {best_cycle} is not in {layout.hub_dir} (expected {branch}); "
            "it is needed to update `main`."
        )

    def _push(self, push: PendingPush) -> None:
        folder = self.hub_dir / push.folder
        if not folder.is_dir():
            raise FileNotFoundError(
                f"The pending push of {push.describe()} needs {folder}, which no longer exists. Restore it, or remove "
                f"the entry from {self.pending_file} to give the push up."
            )
        upload_push(self._api(), push, folder, private=self.private, retry=self._retry)

"""What the model and dataset cards of a run show, as typed data built from its `CycleResult`s.

`ModelCardFacts` and `DatasetCardFacts` hold the numbers, names and flags of a card (the shape of setfit's
`SetFitModelCardData`); the Jinja templates in `model_cards/` hold every sentence. Each object gives the Hub metadata
(`ModelCardData` / `DatasetCardData`) and the values its template reads (`template_values()`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import DatasetCardData, ModelCardData

from .card_checks import FilterStep, PrivacyCheck, filter_steps, label_audit_cells, privacy_audit_cells, share
from .card_checks import privacy_checks as _privacy_checks
from .card_usage import UsageCode, reproduce_command
from .columns import column_description, feature_type_name, infer_columns
from .cycle import CycleResult
from .privacy.audit import published_audit

if TYPE_CHECKING:
    from .evaluation.previews import Preview

__all__ = [
    "TAGS",
    "DatasetCardFacts",
    "FilterStep",
    "ModelCardFacts",
    "PrivacyCheck",
    "as_cycle_result",
    "format_value",
    "is_hub_repo_id",
    "metric_columns",
    "privacy_checks",
    "uncertainty_measure",
]

TAGS = ["hf-active-synth", "active-synthesis", "synthetic-data"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_METRIC_ORDER = ("eval_accuracy", "eval_f1_macro", "eval_loss")
_METRIC_SKIP = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch")
_UNCERTAINTY_MEASURES = ("entropy", "variance", "bald")
_CORE_SETTINGS = ("base_model", "synthetic_loss_weight", "uncertainty_method", "ensemble_size", "acquisition_function")
# (row label, settings key) of the card's "Training procedure" table; the others are listed under "All run settings".
_KEY_SETTINGS = (
    ("Base model", "base_model"),
    ("Real training data", "dataset_name"),
    ("Synthetic loss weight λ", "synthetic_loss_weight"),
    ("Uncertainty estimator", "uncertainty_method"),
    ("Ensemble size", "ensemble_size"),
    ("Acquisition function", "acquisition_function"),
    ("Targets", "target_strategy"),
    ("Guidance", "guidance"),
    ("Synthetic samples per cycle", "synthetic_samples_per_cycle"),
    ("Cycles (max)", "num_cycles"),
)
_NOT_LISTED = {key for _, key in _KEY_SETTINGS} | {"generator", "command", "cycle_metric", "license"}
_CYCLE_FIELDS = tuple(f.name for f in dataclasses.fields(CycleResult))


def as_cycle_result(entry: CycleResult | Mapping[str, Any]) -> CycleResult:
    """A `CycleResult` from itself or from its dict (`cycle.json` contents); unknown keys are ignored."""
    if isinstance(entry, CycleResult):
        return entry
    values = {name: entry[name] for name in _CYCLE_FIELDS if name in entry}
    values.setdefault("eval_metrics", {})
    return CycleResult(**values)


def format_value(value: Any) -> str:
    """Formats a metric or setting for a Markdown table cell."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value) if value else "—"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _setting_value(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return f"{value:g}"
    return format_value(value)


def is_hub_repo_id(name: str | None) -> bool:
    """Whether `name` looks like a Hub repository id (`namespace/name`) rather than a local path."""
    return bool(name) and _REPO_ID.match(name) is not None and not Path(name).expanduser().exists()


def uncertainty_measure(settings: Mapping[str, Any]) -> str:
    """The uncertainty measure shown in cards: the acquisition function when it is one of them, else entropy."""
    acquisition = settings.get("acquisition_function")
    return acquisition if acquisition in _UNCERTAINTY_MEASURES else "entropy"


def _uncertainty(result: CycleResult, measure: str) -> tuple[str, str] | None:
    """`(before, after)` of `measure` on the cycle's targets, formatted; `None` when neither was measured."""
    before = (result.uncertainty_before or {}).get(measure)
    after = (result.uncertainty_after or {}).get(measure)
    if before is None and after is None:
        return None
    return format_value(before), format_value(after)


def metric_columns(history: Sequence[CycleResult | Mapping[str, Any]]) -> list[str]:
    """The validation metrics of a history, in a stable order: accuracy, F1, loss, then the rest sorted."""
    results = [as_cycle_result(entry) for entry in history]
    names = {name for result in results for name in (result.eval_metrics or {}) if name not in _METRIC_SKIP}
    return [name for name in _METRIC_ORDER if name in names] + sorted(names - set(_METRIC_ORDER))


def privacy_checks(cycle: CycleResult | Mapping[str, Any], real_data_filters: Collection[str]) -> list[PrivacyCheck]:
    """What each filter named in `real_data_filters` (those with `checks_real_data`) removed in `cycle`."""
    return _privacy_checks(as_cycle_result(cycle), real_data_filters)


def _generators(history: Sequence[CycleResult]) -> list[str]:
    return sorted({str(result.generator) for result in history if result.generator})


@dataclass
class ModelCardFacts:
    """The model card of one published revision of an active-synthesis model.

    Args:
        repo_id (`str`): Model repository shown in the card and in the usage snippet.
        revision (`str`): The revision this card is for (`"main"` or `"cycle-k"`).
        cycle (`int`): The cycle whose weights the revision holds.
        best_cycle (`int`): The best cycle so far by the selection metric (the one on `main`).
        history (`Sequence[CycleResult]`): The cycles up to the current one (dicts are converted).
        settings (`Mapping`, *optional*): Run settings, already scrubbed of secrets (`hub.secrets.scrub_settings`).
        dataset_repo_id (`str`, *optional*): Dataset repository of the synthetic samples.
        library_name (`str`, defaults to `"transformers"`): `"transformers"`, `"peft"` or another library name.
        base_model (`str`, *optional*): Base model; defaults to `settings["base_model"]`.
        pipeline_tag (`str`, *optional*): `"text-classification"` or `"image-classification"`.
        local_path (`str`, *optional*): For a revision written only locally: the folder the usage snippet loads.
        endpoint (`str`, defaults to `"https://huggingface.co"`): Hub URL used for links.
        has_processor (`bool`, defaults to `True`): Whether the checkpoint holds its processor (image processor or
            tokenizer); without one the usage code calls `settings["preprocessing"]`, when set.
        dataset_local_path (`str`, *optional*): Without `dataset_repo_id`: the local Hub-layout folder of the
            synthetic samples.
        dataset_link (`str`, *optional*): Link to that folder (relative to the card's own folder).
    """

    repo_id: str
    revision: str
    cycle: int
    best_cycle: int
    history: Sequence[CycleResult | Mapping[str, Any]]
    settings: Mapping[str, Any] | None = None
    dataset_repo_id: str | None = None
    library_name: str = "transformers"
    base_model: str | None = None
    pipeline_tag: str | None = None
    local_path: str | None = None
    endpoint: str = "https://huggingface.co"
    has_processor: bool = True
    dataset_local_path: str | None = None
    dataset_link: str | None = None

    def __post_init__(self):
        self.history = [as_cycle_result(entry) for entry in self.history]
        self.settings = dict(self.settings or {})
        self.base_model = self.base_model or self.settings.get("base_model")

    @property
    def usage(self) -> UsageCode:
        """What the "How to use" snippet loads and how it prepares the inputs."""
        base_model = self.base_model if is_hub_repo_id(self.base_model) else None
        return UsageCode.from_settings(
            self.library_name, self.pipeline_tag, self.settings, self.has_processor, base_model=base_model
        )

    @property
    def metric_name(self) -> str:
        """The selection metric, with its `eval_` prefix."""
        name = str(self.settings.get("cycle_metric") or "eval_accuracy")
        return name if name.startswith("eval_") else f"eval_{name}"

    def metadata(self) -> ModelCardData:
        """The card's YAML metadata."""
        datasets = [d for d in (self.settings.get("dataset_name"), self.dataset_repo_id) if is_hub_repo_id(d)]
        return ModelCardData(
            library_name=self.library_name,
            base_model=self.base_model if is_hub_repo_id(self.base_model) else None,
            datasets=datasets or None,
            license=self.settings.get("license"),
            pipeline_tag=self.pipeline_tag,
            tags=list(TAGS),
        )

    def _rows(self, columns: Sequence[str], measure: str) -> list[dict[str, Any]]:
        rows = []
        for result in self.history:
            metrics = result.eval_metrics or {}
            rows.append(
                {
                    "cycle": int(result.cycle),
                    "is_best": int(result.cycle) == self.best_cycle,
                    "is_current": int(result.cycle) == self.cycle,
                    "metrics": [format_value(metrics.get(name)) for name in columns],
                    "num_targets": result.num_targets,
                    "candidates_generated": result.candidates_generated,
                    "num_accepted": result.num_accepted,
                    "num_synthetic_total": result.num_synthetic_total,
                    "uncertainty": _uncertainty(result, measure),
                }
            )
        return rows

    def _key_settings(self) -> list[tuple[str, str]]:
        settings = self.settings
        rows = [
            (label, _setting_value(settings.get(key, self.base_model if key == "base_model" else None)))
            for label, key in _KEY_SETTINGS
            if key in _CORE_SETTINGS or settings.get(key) is not None
        ]
        rows.append(("Generator", _setting_value(settings.get("generator") or _generators(self.history) or None)))
        rows.append(("Selection metric", f"`{self.metric_name}`"))
        return rows

    def template_values(self) -> dict[str, Any]:
        """The values `model_cards/model_card.md` reads."""
        columns = metric_columns(self.history)
        measure = uncertainty_measure(self.settings)
        return {
            "model_name": self.repo_id.split("/")[-1],
            "repo_id": self.repo_id,
            "revision": self.revision,
            "is_main": self.revision == "main",
            "cycle": self.cycle,
            "best_cycle": self.best_cycle,
            "metric_name": self.metric_name,
            "pipeline_tag": self.pipeline_tag,
            "uncertainty_name": measure,
            "metric_columns": columns,
            "rows": self._rows(columns, measure),
            "settings": self._key_settings(),
            "extra_settings": [
                (key, _setting_value(value))
                for key, value in sorted(self.settings.items())
                if key not in _NOT_LISTED and not isinstance(value, Mapping)
            ],
            "synthetic_dataset": self.dataset_repo_id,
            "synthetic_dataset_url": f"{self.endpoint.rstrip('/')}/datasets/{self.dataset_repo_id}",
            "synthetic_dataset_path": self.dataset_local_path,
            "synthetic_dataset_link": self.dataset_link,
            "library_name": self.library_name,
            "base_model": self.base_model,
            "usage": self.usage.template_values(
                self.local_path or self.repo_id, self.revision, local=self.local_path is not None
            ),
            "command": reproduce_command(self.settings.get("command")),
        }


@dataclass
class DatasetCardFacts:
    """The dataset card of the synthetic samples of a run.

    Args:
        repo_id (`str`): Dataset repository shown in the card and in the loading snippet.
        history (`Sequence[CycleResult]`): The cycles (dicts are converted); cycle 0 (no generation) is skipped.
        configs (`Mapping[int, str]`): Cycle number -> configuration name, for the cycles that have samples.
        features (`Mapping`): `datasets.Features` of the samples (of the `all` configuration).
        real_data_filters (`Collection[str]`): Names of the filters that check candidates against the real data
            (`Filter.checks_real_data`); the privacy section reports what they removed.
        settings (`Mapping`, *optional*): Run settings (scrubbed); reads `license`, `dataset_name`,
            `acquisition_function`, `input_column`, `label_column`.
        model_repo_id (`str`, *optional*): Model repository trained on these samples.
        real_data_columns (`Sequence[str]`, defaults to `()`): Columns that can hold real training data.
        include_real_data (`bool`, defaults to `False`): Whether those columns were published (explicitly requested).
        endpoint (`str`, defaults to `"https://huggingface.co"`): Hub URL used for links.
        preview (`evaluation.previews.Preview`, *optional*): The samples' preview (a grid picture beside the card, or
            sentences).
        model_local_path (`str`, *optional*): Without `model_repo_id`: the local folder of the model.
        model_link (`str`, *optional*): Link to that folder (relative to the card's own folder).
    """

    repo_id: str
    history: Sequence[CycleResult | Mapping[str, Any]]
    configs: Mapping[int, str]
    features: Mapping[str, Any]
    real_data_filters: Collection[str] = field(default_factory=frozenset)
    settings: Mapping[str, Any] | None = None
    model_repo_id: str | None = None
    real_data_columns: Sequence[str] = ()
    include_real_data: bool = False
    endpoint: str = "https://huggingface.co"
    preview: Preview | None = None
    model_local_path: str | None = None
    model_link: str | None = None

    def __post_init__(self):
        self.history = [as_cycle_result(entry) for entry in self.history]
        self.settings = dict(self.settings or {})

    @property
    def modality(self) -> str:
        """`"image"` when the input column is an `Image` feature, else `"text"`."""
        input_column, _ = infer_columns(self.features, self.settings)
        return "image" if type(self.features.get(input_column)).__name__ == "Image" else "text"

    def update_metadata(self, card_data: DatasetCardData) -> DatasetCardData:
        """Fills license, pretty name, task category, tags and size category into `card_data` (which holds the
        `configs` / `dataset_info` that `load_dataset` reads) and returns it."""
        card_data.license = self.settings.get("license") or card_data.license
        name = self.repo_id.split("/")[-1]
        kind = "active synthesis" if "synthetic" in name.lower() else "synthetic, active synthesis"
        card_data.pretty_name = card_data.pretty_name or f"{name} ({kind})"
        card_data.task_categories = [f"{self.modality}-classification"]
        card_data.tags = list(TAGS)
        total = sum(int(result.num_accepted or 0) for result in self.history)
        card_data.size_categories = ["n<1K" if total < 1_000 else "1K<n<10K" if total < 10_000 else "10K<n<100K"]
        return card_data

    def _cycles(self, measure: str) -> list[dict[str, Any]]:
        cycles = []
        for result in self.history:
            number = int(result.cycle)
            if number == 0:
                continue
            generated = int(result.candidates_generated or 0)
            accepted = int(result.num_accepted or 0)
            cycles.append(
                {
                    "cycle": number,
                    "config": self.configs.get(number),
                    "generator": format_value(result.generator),
                    "candidates_generated": generated,
                    "num_accepted": accepted,
                    "num_hard_negatives": int(result.num_hard_negatives or 0),
                    "acceptance": share(accepted, generated),
                    "uncertainty": _uncertainty(result, measure),
                    "filter_steps": filter_steps(result),
                    "privacy_checks": privacy_checks(result, self.real_data_filters),
                    "label_audit": label_audit_cells(result),
                    "privacy_audit": privacy_audit_cells(result.privacy_audit),
                }
            )
        return cycles

    def _columns(self) -> list[dict[str, str]]:
        input_column, label_column = infer_columns(self.features, self.settings)
        roles = {label_column: "label", input_column: "input"}  # the input wins if both name one column
        return [
            {
                "name": name,
                "type": feature_type_name(feature),
                "role": roles.get(name, "provenance"),
                "description": column_description(name),
            }
            for name, feature in self.features.items()
        ]

    def template_values(self, card_data: DatasetCardData) -> dict[str, Any]:
        """The values `model_cards/dataset_card.md` reads (`card_data` after `update_metadata`)."""
        measure = uncertainty_measure(self.settings)
        return {
            "pretty_name": card_data.pretty_name,
            "license": card_data.license,
            "repo_id": self.repo_id,
            "modality": self.modality,
            "model_repo": self.model_repo_id,
            "model_repo_url": f"{self.endpoint.rstrip('/')}/{self.model_repo_id}",
            "model_path": self.model_local_path,
            "model_link": self.model_link,
            "preview": self.preview,
            "preview_rows": [
                (format_value(e.label), e.cycle, format_value(e.text), format_value(e.target))
                for e in (self.preview.examples if self.preview else ())
            ],
            "configs": [self.configs[k] for k in sorted(self.configs)],
            "cycles": self._cycles(measure),
            "uncertainty_name": measure,
            "columns": self._columns(),
            "real_data_columns": list(self.real_data_columns),
            "include_real_data": self.include_real_data,
            "generators": _generators(self.history),
            "real_data": self.settings.get("dataset_name"),
            "published_audit": privacy_audit_cells(
                audit.to_dict() if (audit := published_audit(self.history)) else None
            ),
        }

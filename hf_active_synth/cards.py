"""Model and dataset cards of an active-synthesis run, rendered from the Jinja templates in `model_cards/`.

The templates ship inside the wheel as the package `hf_active_synth.model_cards` and are rendered with
`huggingface_hub.ModelCard.from_template` / `DatasetCard.from_template`, so the YAML metadata (`ModelCardData`,
`DatasetCardData`, including the `configs` / `dataset_info` that `datasets.load_dataset` reads) is produced by the
same code the Hub clients use. Rendering is pure: the same inputs give byte-identical cards (no dates, no paths
beyond what is passed in), which is what the golden tests check.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

MODEL_CARD_TEMPLATE = "model_card.md"
DATASET_CARD_TEMPLATE = "dataset_card.md"
TAGS = ["hf-active-synth", "active-synthesis", "synthetic-data"]

# Filters whose name contains one of these check candidates against the real training data (near-copies).
PRIVACY_FILTER_KEYWORDS = ("privacy", "near_copy", "near-copy", "nearcopy", "near_duplicate", "memoriz")

# Keys of run settings that are never rendered (their values are secrets or hold them).
_SECRET_KEY = re.compile(r"token|secret|password|passwd|credential|api_key|apikey|private_key", re.IGNORECASE)
# Anything shaped like a Hugging Face access token, wherever it appears.
HF_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

_METRIC_ORDER = ("eval_accuracy", "eval_f1_macro", "eval_loss")
_METRIC_SKIP = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch")

_PROVENANCE_DESCRIPTIONS = {
    "synth_cycle": "Cycle in which the sample was generated and accepted.",
    "synth_generator": "Generator that produced the sample.",
    "synth_target_id": "Index, in the real training set, of the uncertain real example the sample targets.",
    "synth_target_label": "Class the generation targeted.",
    "synth_seed_example_ids": "Indices, in the real training set, of the real examples used as seeds (the examples "
    "themselves are not included).",
    "synth_score": "Generator ranking score (ensemble disagreement on the candidate).",
    "synth_label_probability": "Ensemble-mean probability of the intended label.",
    "synth_predicted_label": "Ensemble-mean predicted class.",
    "synth_predicted_probability": "Ensemble-mean probability of the predicted class.",
    "synth_target_uncertainty": "Uncertainty of the targeted real example when it was selected.",
}


def load_template(name: str) -> str:
    """Returns the text of a card template shipped in `hf_active_synth.model_cards`.

    Args:
        name (`str`): File name of the template, e.g. `"model_card.md"`.
    """
    try:
        resource = importlib.resources.files("hf_active_synth.model_cards").joinpath(name)
        return resource.read_text(encoding="utf-8")
    except ModuleNotFoundError:
        # A source checkout whose editable install predates the `model_cards` package mapping.
        return (Path(__file__).resolve().parents[1] / "model_cards" / name).read_text(encoding="utf-8")


def redact(text: str, secrets: Sequence[str | None] = ()) -> str:
    """Replaces every secret in `secrets`, and anything shaped like a Hugging Face token, with `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return HF_TOKEN_PATTERN.sub("hf_***", text)


def scrub_settings(settings: Mapping[str, Any] | None, secrets: Sequence[str | None] = ()) -> dict[str, Any]:
    """Returns a JSON-safe copy of run settings without secret-like keys and with secret values redacted.

    Args:
        settings (`Mapping[str, Any]`, *optional*): Run settings (e.g. a config's `to_dict()`).
        secrets (`Sequence[str]`, defaults to `()`): Strings to redact wherever they appear (e.g. the Hub token).
    """
    clean: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        if _SECRET_KEY.search(str(key)):
            continue
        if isinstance(value, Mapping):
            clean[str(key)] = scrub_settings(value, secrets)
        else:
            # Round-trip through JSON: non-serialisable values become strings, then every string is redacted.
            encoded = json.dumps(value, default=str)
            clean[str(key)] = json.loads(redact(encoded, secrets))
    return clean


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


def is_hub_repo_id(name: str | None) -> bool:
    """Whether `name` looks like a Hub repository id (`namespace/name`) rather than a local path."""
    return bool(name) and _REPO_ID.match(name) is not None and not Path(name).expanduser().exists()


def uncertainty_measure(settings: Mapping[str, Any]) -> str:
    """The uncertainty measure shown in cards: the acquisition function when it is one of them, else entropy."""
    acquisition = settings.get("acquisition_function")
    return acquisition if acquisition in ("entropy", "variance", "bald") else "entropy"


def _uncertainty_cell(cycle: Mapping[str, Any], measure: str) -> str:
    before = (cycle.get("uncertainty_before") or {}).get(measure)
    after = (cycle.get("uncertainty_after") or {}).get(measure)
    if before is None and after is None:
        return "—"
    return f"{format_value(before)} → {format_value(after)}"


def metric_columns(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """The validation metrics of a history, in a stable order: accuracy, F1, loss, then the rest sorted."""
    names = {name for cycle in history for name in (cycle.get("eval_metrics") or {}) if name not in _METRIC_SKIP}
    return [name for name in _METRIC_ORDER if name in names] + sorted(names - set(_METRIC_ORDER))


def _filter_chain(cycle: Mapping[str, Any]) -> str:
    previous = int(cycle.get("candidates_generated") or 0)
    parts = [f"{previous} candidates"]
    for name, remaining in (cycle.get("filter_counts") or {}).items():
        share = f" ({100.0 * remaining / previous:.1f}%)" if previous else ""
        parts.append(f"`{name}` {remaining}{share}")
        previous = remaining
    parts.append(f"accepted {int(cycle.get('num_accepted') or 0)}")
    return " → ".join(parts)


def privacy_result(cycle: Mapping[str, Any]) -> str:
    """Describes what the near-copy (privacy) filter of a cycle removed, or that none ran."""
    previous = int(cycle.get("candidates_generated") or 0)
    results = []
    for name, remaining in (cycle.get("filter_counts") or {}).items():
        if any(keyword in name.lower() for keyword in PRIVACY_FILTER_KEYWORDS):
            removed = previous - remaining
            share = f" ({100.0 * removed / previous:.1f}%)" if previous else ""
            results.append(
                f"filter `{name}` removed {removed} of {previous} candidates{share} as too close to a real "
                "training example"
            )
        previous = remaining
    if not results:
        return "no near-copy (privacy) filter ran: samples were not checked against the real training data."
    return "; ".join(results) + "."


def _feature_type(feature: Any) -> str:
    kind = type(feature).__name__
    if kind == "ClassLabel":
        return f"ClassLabel ({', '.join(feature.names)})"
    if kind == "Value":
        return feature.dtype
    if kind in ("List", "Sequence", "LargeList"):
        return f"list[{_feature_type(feature.feature)}]"
    if isinstance(feature, list) and feature:
        return f"list[{_feature_type(feature[0])}]"
    return kind


def infer_columns(features: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> tuple[str, str | None]:
    """Returns `(input_column, label_column)` of a synthetic dataset: from the settings when given, else the
    ClassLabel column is the label and the first other non-provenance column the input."""
    settings = settings or {}
    names = [name for name in features if not name.startswith("synth_")]
    label = settings.get("label_column")
    if label not in features:
        label = next((n for n in names if type(features[n]).__name__ == "ClassLabel"), None)
        if label is None and "label" in features:
            label = "label"
    input_column = settings.get("input_column")
    if input_column not in features:
        input_column = next((n for n in names if n != label), names[0] if names else "")
    return input_column, label


def _column_rows(features: Mapping[str, Any], input_column: str, label_column: str | None) -> list[tuple]:
    rows = []
    for name, feature in features.items():
        if name == input_column:
            description = "The synthetic input."
        elif name == label_column:
            description = "The label the sample was generated for (its intended class)."
        else:
            description = _PROVENANCE_DESCRIPTIONS.get(
                name, "Generator-specific provenance." if name.startswith("synth_") else ""
            )
        rows.append((name, _feature_type(feature), description))
    return rows


def model_usage_code(
    repo_id: str, revision: str, library_name: str, pipeline_tag: str | None, base_model: str | None
) -> str:
    """A Python snippet that loads the published checkpoint at `revision`."""
    image = pipeline_tag == "image-classification"
    auto_model = "AutoModelForImageClassification" if image else "AutoModelForSequenceClassification"
    processor = "AutoImageProcessor" if image else "AutoTokenizer"
    rev = f', revision="{revision}"' if revision != "main" else ""
    if library_name == "peft":
        return (
            f"from peft import PeftModel\nfrom transformers import {auto_model}\n\n"
            f'base = {auto_model}.from_pretrained("{base_model or "<base model>"}")\n'
            f'model = PeftModel.from_pretrained(base, "{repo_id}"{rev})'
        )
    if library_name == "transformers":
        return (
            f"from transformers import {auto_model}, {processor}\n\n"
            f'model = {auto_model}.from_pretrained("{repo_id}"{rev})\n'
            f'processor = {processor}.from_pretrained("{repo_id}"{rev})'
        )
    return (
        "from huggingface_hub import hf_hub_download\nfrom safetensors.torch import load_file\n\n"
        f'state_dict = load_file(hf_hub_download("{repo_id}", "model.safetensors"{rev}))'
    )


def _setting_value(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return f"{value:g}"
    return format_value(value)


_CORE_SETTINGS = ("base_model", "synthetic_loss_weight", "uncertainty_method", "ensemble_size", "acquisition_function")
_KEY_SETTINGS = (
    ("Base model", "base_model"),
    ("Real training data", "dataset_name"),
    ("Synthetic loss weight λ", "synthetic_loss_weight"),
    ("Uncertainty estimator", "uncertainty_method"),
    ("Ensemble size", "ensemble_size"),
    ("Acquisition function", "acquisition_function"),
    ("Targeted", "targeted"),
    ("Synthetic samples per cycle", "synthetic_samples_per_cycle"),
    ("Cycles (max)", "num_cycles"),
)


def render_model_card(
    *,
    repo_id: str,
    revision: str,
    cycle: int,
    best_cycle: int,
    history: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
    dataset_repo_id: str | None = None,
    library_name: str = "transformers",
    base_model: str | None = None,
    pipeline_tag: str | None = None,
    local_path: str | None = None,
    endpoint: str = "https://huggingface.co",
    template: str | None = None,
) -> ModelCard:
    """Renders the model card of one published revision of an active-synthesis model.

    Args:
        repo_id (`str`): Model repository shown in the card and in the usage snippet.
        revision (`str`): The revision this card is for (`"main"` or `"cycle-k"`).
        cycle (`int`): The cycle whose weights the revision holds.
        best_cycle (`int`): The best cycle so far by the selection metric (the one on `main`).
        history (`Sequence[Mapping]`): Cycle dicts (`cycle.json` contents) up to the current cycle.
        settings (`Mapping`, *optional*): Run settings (already scrubbed of secrets, see `scrub_settings`); reads
            `base_model`, `dataset_name`, `synthetic_loss_weight`, `uncertainty_method`, `ensemble_size`,
            `acquisition_function`, `cycle_metric`, `command`, `license`, `generator`, and lists all the others.
        dataset_repo_id (`str`, *optional*): Dataset repository of the synthetic samples.
        library_name (`str`, defaults to `"transformers"`): `"transformers"`, `"peft"` or another library name.
        base_model (`str`, *optional*): Base model; defaults to `settings["base_model"]`.
        pipeline_tag (`str`, *optional*): `"text-classification"` or `"image-classification"`.
        local_path (`str`, *optional*): For a revision written only locally: the folder the usage snippet loads.
        endpoint (`str`, defaults to `"https://huggingface.co"`): Hub URL used for links.
        template (`str`, *optional*): Jinja template text; defaults to `model_cards/model_card.md`.

    Returns:
        `huggingface_hub.ModelCard`: the card; `str(card)` is the README.md content.
    """
    settings = dict(settings or {})
    base_model = base_model or settings.get("base_model")
    metric_name = str(settings.get("cycle_metric") or "eval_accuracy")
    if not metric_name.startswith("eval_"):
        metric_name = f"eval_{metric_name}"
    columns = metric_columns(history)
    measure = uncertainty_measure(settings)
    rows = []
    for entry in history:
        number = int(entry["cycle"])
        marks = [mark for mark, shown in (("★", number == best_cycle), ("←", number == cycle)) if shown]
        metrics = entry.get("eval_metrics") or {}
        rows.append(
            {
                "label": " ".join([str(number), *marks]),
                "metrics": [format_value(metrics.get(name)) for name in columns],
                "num_targets": entry.get("num_targets", 0),
                "candidates_generated": entry.get("candidates_generated", 0),
                "num_accepted": entry.get("num_accepted", 0),
                "num_synthetic_total": entry.get("num_synthetic_total", 0),
                "uncertainty": _uncertainty_cell(entry, measure),
            }
        )
    generators = sorted({str(e["generator"]) for e in history if e.get("generator")})
    key_settings = [
        (label, _setting_value(settings.get(key, base_model if key == "base_model" else None)))
        for label, key in _KEY_SETTINGS
        if key in _CORE_SETTINGS or settings.get(key) is not None
    ]
    key_settings.append(("Generator", _setting_value(settings.get("generator") or generators or None)))
    key_settings.append(("Selection metric", f"`{metric_name}`"))
    shown = {key for _, key in _KEY_SETTINGS} | {"generator", "command", "cycle_metric", "license"}
    extra_settings = [
        (key, _setting_value(value))
        for key, value in sorted(settings.items())
        if key not in shown and not isinstance(value, Mapping)
    ]
    card_data = ModelCardData(
        library_name=library_name,
        base_model=base_model if is_hub_repo_id(base_model) else None,
        datasets=[d for d in (settings.get("dataset_name"), dataset_repo_id) if is_hub_repo_id(d)] or None,
        license=settings.get("license"),
        pipeline_tag=pipeline_tag,
        tags=list(TAGS),
    )
    task_description = {
        "text-classification": "text classifier",
        "image-classification": "image classifier",
    }.get(pipeline_tag or "", "classifier")
    return ModelCard.from_template(
        card_data,
        template_str=template if template is not None else load_template(MODEL_CARD_TEMPLATE),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        revision=revision,
        is_main=revision == "main",
        cycle=cycle,
        best_cycle=best_cycle,
        metric_name=metric_name,
        task_description=task_description,
        uncertainty_name=measure,
        metric_columns=columns,
        rows=rows,
        settings=key_settings,
        extra_settings=extra_settings,
        synthetic_dataset=dataset_repo_id,
        synthetic_dataset_url=f"{endpoint.rstrip('/')}/datasets/{dataset_repo_id}",
        usage_code=model_usage_code(
            local_path or repo_id, "main" if local_path else revision, library_name, pipeline_tag, base_model
        ),
        command=settings.get("command")
        or "# The command of this run was not recorded (pass run_settings['command']).",
    )


def render_dataset_card(
    *,
    repo_id: str,
    history: Sequence[Mapping[str, Any]],
    configs: Mapping[int, str],
    features: Mapping[str, Any],
    card_data: DatasetCardData,
    settings: Mapping[str, Any] | None = None,
    model_repo_id: str | None = None,
    real_data_columns: Sequence[str] = (),
    include_real_data: bool = False,
    endpoint: str = "https://huggingface.co",
    template: str | None = None,
) -> DatasetCard:
    """Renders the dataset card of the synthetic samples of a run.

    Args:
        repo_id (`str`): Dataset repository shown in the card and in the loading snippet.
        history (`Sequence[Mapping]`): Cycle dicts (`cycle.json` contents); cycle 0 (no generation) is skipped.
        configs (`Mapping[int, str]`): Cycle number -> configuration name, for the cycles that have samples.
        features (`Mapping`): `datasets.Features` of the samples (of the `all` configuration).
        card_data (`DatasetCardData`): YAML metadata, with the `configs` and `dataset_info` that `load_dataset`
            reads already set (see `hub/stage_dataset.py`); license, tags and task categories are filled in here.
        settings (`Mapping`, *optional*): Run settings (scrubbed); reads `license`, `dataset_name`,
            `acquisition_function`, `input_column`, `label_column`.
        model_repo_id (`str`, *optional*): Model repository trained on these samples.
        real_data_columns (`Sequence[str]`, defaults to `()`): Columns that can hold real training data.
        include_real_data (`bool`, defaults to `False`): Whether those columns were published (explicitly requested).
        endpoint (`str`, defaults to `"https://huggingface.co"`): Hub URL used for links.
        template (`str`, *optional*): Jinja template text; defaults to `model_cards/dataset_card.md`.

    Returns:
        `huggingface_hub.DatasetCard`: the card; `str(card)` is the README.md content.
    """
    settings = dict(settings or {})
    input_column, label_column = infer_columns(features, settings)
    modality = "image" if type(features.get(input_column)).__name__ == "Image" else "text"
    measure = uncertainty_measure(settings)
    cycles = []
    for entry in history:
        number = int(entry["cycle"])
        if number == 0:
            continue
        generated = int(entry.get("candidates_generated") or 0)
        accepted = int(entry.get("num_accepted") or 0)
        cycles.append(
            {
                "cycle": number,
                "config": f"`{configs[number]}`" if number in configs else "—",
                "generator": format_value(entry.get("generator")),
                "candidates_generated": generated,
                "num_accepted": accepted,
                "acceptance": f"{100.0 * accepted / generated:.1f}%" if generated else "—",
                "uncertainty": _uncertainty_cell(entry, measure),
                "filter_chain": _filter_chain(entry),
                "privacy": privacy_result(entry),
            }
        )
    card_data.license = settings.get("license") or card_data.license
    card_data.pretty_name = card_data.pretty_name or f"{repo_id.split('/')[-1]} (synthetic, active synthesis)"
    card_data.task_categories = [f"{modality}-classification"]
    card_data.tags = list(TAGS)
    total = sum(int(entry.get("num_accepted") or 0) for entry in history)
    card_data.size_categories = ["n<1K" if total < 1_000 else "1K<n<10K" if total < 10_000 else "10K<n<100K"]
    listed = ", ".join(f"`{c}`" for c in real_data_columns)
    if include_real_data:
        real_data_note = (
            "**This dataset may contain real training data**: publishing the columns that can hold it"
            + (f" ({listed})" if listed else "")
            + " was explicitly requested (`include_real_data=True`)."
        )
    else:
        real_data_note = (
            "No real training data is published"
            + (f": columns that can hold it ({listed}) are removed before publishing" if listed else "")
            + ". `synth_seed_example_ids` refers to real examples by index only."
        )
    generators = sorted({str(e["generator"]) for e in history if e.get("generator")}) or ["the generator"]
    real_data = settings.get("dataset_name")
    license_note = (
        f"This dataset is released under `{card_data.license}`. "
        if card_data.license
        else "No license was set for this dataset (pass `license` in the run settings). "
    ) + (
        f"The samples were produced by {', '.join(f'`{g}`' for g in generators)}: outputs of generative models may "
        "be subject to the generator's license and terms of use. They were generated from real examples"
        + (f" of `{real_data}`" if real_data else "")
        + ", whose license also applies to derived data. Check both before redistributing."
    )
    return DatasetCard.from_template(
        card_data,
        template_str=template if template is not None else load_template(DATASET_CARD_TEMPLATE),
        pretty_name=card_data.pretty_name,
        repo_id=repo_id,
        modality=modality,
        model_repo=model_repo_id,
        model_repo_url=f"{endpoint.rstrip('/')}/{model_repo_id}",
        configs=[configs[k] for k in sorted(configs)],
        cycles=cycles,
        uncertainty_name=measure,
        columns=_column_rows(features, input_column, label_column),
        real_data_note=real_data_note,
        license_note=license_note,
    )

"""Model and dataset cards of an active-synthesis run, rendered from the Jinja templates in `model_cards/`.

The card data (`card_data.ModelCardFacts`, `card_data.DatasetCardFacts`) is built from the run's `CycleResult`s;
every sentence of a card is in its template. The templates ship inside the wheel as the package
`hf_active_synth.model_cards` and are rendered with `huggingface_hub.ModelCard.from_template` /
`DatasetCard.from_template`, so the YAML metadata (`ModelCardData`, `DatasetCardData`, including the `configs` /
`dataset_info` that `datasets.load_dataset` reads) is produced by the same code the Hub clients use. Rendering is
pure: the same inputs give byte-identical cards (no dates, no paths beyond what is passed in), which is what the
golden tests check. Secrets are scrubbed from the settings before they get here (`hub.secrets`).
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard

from .card_data import (  # noqa: F401  (the helpers stay importable from here)
    TAGS,
    DatasetCardFacts,
    ModelCardFacts,
    format_value,
    is_hub_repo_id,
    metric_columns,
    privacy_checks,
    uncertainty_measure,
)
from .columns import infer_columns  # noqa: F401  (importable from here, as before)
from .cycle import CycleResult

if TYPE_CHECKING:
    from .evaluation.previews import Preview

MODEL_CARD_TEMPLATE = "model_card.md"
DATASET_CARD_TEMPLATE = "dataset_card.md"


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


@functools.cache
def _template_macros(name: str) -> Any:
    """The macros of a shipped template, callable from Python (the template body is evaluated with no values)."""
    import jinja2

    environment = jinja2.Environment(undefined=jinja2.ChainableUndefined)
    return environment.from_string(load_template(name)).module


def default_real_data_filters() -> frozenset[str]:
    """Names of the library's filters with `checks_real_data`, for cards rendered from a history alone."""
    from .filters import builtin_real_data_filter_names

    return builtin_real_data_filter_names()


def privacy_result(cycle: CycleResult | Mapping[str, Any], real_data_filters: Collection[str] | None = None) -> str:
    """Describes what the filters that check candidates against the real data removed in a cycle, or that none ran
    (the sentence of the dataset card's privacy section).

    Args:
        cycle (`CycleResult` or `Mapping`): The cycle (or its `cycle.json` contents).
        real_data_filters (`Collection[str]`, *optional*): Names of the filters with `checks_real_data`; defaults to
            the library's own (`default_real_data_filters()`).
    """
    if real_data_filters is None:
        real_data_filters = default_real_data_filters()
    return str(_template_macros(DATASET_CARD_TEMPLATE).privacy(privacy_checks(cycle, real_data_filters)))


def render_model_card(
    *,
    repo_id: str,
    revision: str,
    cycle: int,
    best_cycle: int,
    history: Sequence[CycleResult | Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
    dataset_repo_id: str | None = None,
    library_name: str = "transformers",
    base_model: str | None = None,
    pipeline_tag: str | None = None,
    local_path: str | None = None,
    endpoint: str = "https://huggingface.co",
    template: str | None = None,
    has_processor: bool = True,
    dataset_local_path: str | None = None,
    dataset_link: str | None = None,
) -> ModelCard:
    """Renders the model card of one published revision of an active-synthesis model.

    Args:
        repo_id (`str`): Model repository shown in the card and in the usage snippet.
        revision (`str`): The revision this card is for (`"main"` or `"cycle-k"`).
        cycle (`int`): The cycle whose weights the revision holds.
        best_cycle (`int`): The best cycle so far by the selection metric (the one on `main`).
        history (`Sequence[CycleResult]`): The cycles up to the current one (`CycleResult`s or their dicts).
        settings (`Mapping`, *optional*): Run settings (already scrubbed of secrets, see `hub.secrets`); reads
            `base_model`, `dataset_name`, `synthetic_loss_weight`, `uncertainty_method`, `ensemble_size`,
            `acquisition_function`, `cycle_metric`, `command`, `license`, `generator`, `preprocessing` (the dotted
            path of the function that prepared the inputs, see `card_usage.preprocessing_path`), `input_column`,
            and lists all the others.
        dataset_repo_id (`str`, *optional*): Dataset repository of the synthetic samples.
        library_name (`str`, defaults to `"transformers"`): `"transformers"`, `"peft"` or another library name.
        base_model (`str`, *optional*): Base model; defaults to `settings["base_model"]`.
        pipeline_tag (`str`, *optional*): `"text-classification"` or `"image-classification"`.
        local_path (`str`, *optional*): For a revision written only locally: the folder the usage snippet loads.
        endpoint (`str`, defaults to `"https://huggingface.co"`): Hub URL used for links.
        template (`str`, *optional*): Jinja template text; defaults to `model_cards/model_card.md`.
        has_processor (`bool`, defaults to `True`): Whether the checkpoint holds its image processor or tokenizer;
            without one the usage code calls the `preprocessing` setting's function, when there is one.
        dataset_local_path (`str`, *optional*): Without `dataset_repo_id`: the local Hub-layout folder of the
            synthetic samples, which the card then points at.
        dataset_link (`str`, *optional*): Link to that folder, relative to the card's folder.

    Returns:
        `huggingface_hub.ModelCard`: the card; `str(card)` is the README.md content.
    """
    facts = ModelCardFacts(
        repo_id=repo_id,
        revision=revision,
        cycle=cycle,
        best_cycle=best_cycle,
        history=history,
        settings=settings,
        dataset_repo_id=dataset_repo_id,
        library_name=library_name,
        base_model=base_model,
        pipeline_tag=pipeline_tag,
        local_path=local_path,
        endpoint=endpoint,
        has_processor=has_processor,
        dataset_local_path=dataset_local_path,
        dataset_link=dataset_link,
    )
    return ModelCard.from_template(
        facts.metadata(),
        template_str=template if template is not None else load_template(MODEL_CARD_TEMPLATE),
        **facts.template_values(),
    )


def render_dataset_card(
    *,
    repo_id: str,
    history: Sequence[CycleResult | Mapping[str, Any]],
    configs: Mapping[int, str],
    features: Mapping[str, Any],
    card_data: DatasetCardData,
    settings: Mapping[str, Any] | None = None,
    model_repo_id: str | None = None,
    real_data_columns: Sequence[str] = (),
    include_real_data: bool = False,
    real_data_filters: Collection[str] | None = None,
    endpoint: str = "https://huggingface.co",
    template: str | None = None,
    preview: Preview | None = None,
    model_local_path: str | None = None,
    model_link: str | None = None,
) -> DatasetCard:
    """Renders the dataset card of the synthetic samples of a run.

    Args:
        repo_id (`str`): Dataset repository shown in the card and in the loading snippet.
        history (`Sequence[CycleResult]`): The cycles (`CycleResult`s or their dicts); cycle 0 is skipped.
        configs (`Mapping[int, str]`): Cycle number -> configuration name, for the cycles that have samples.
        features (`Mapping`): `datasets.Features` of the samples (of the `all` configuration).
        card_data (`DatasetCardData`): YAML metadata, with the `configs` and `dataset_info` that `load_dataset`
            reads already set (see `hub/stage_dataset.py`); license, tags and task categories are filled in here.
        settings (`Mapping`, *optional*): Run settings (scrubbed); reads `license`, `dataset_name`,
            `acquisition_function`, `input_column`, `label_column`.
        model_repo_id (`str`, *optional*): Model repository trained on these samples.
        real_data_columns (`Sequence[str]`, defaults to `()`): Columns that can hold real training data.
        include_real_data (`bool`, defaults to `False`): Whether those columns were published (explicitly requested).
        real_data_filters (`Collection[str]`, *optional*): Names of the run's filters with `checks_real_data` (see
            `filters.real_data_filter_names`); defaults to the library's own (`default_real_data_filters()`).
        endpoint (`str`, defaults to `"https://huggingface.co"`): Hub URL used for links.
        template (`str`, *optional*): Jinja template text; defaults to `model_cards/dataset_card.md`.
        preview (`evaluation.previews.Preview`, *optional*): The samples' preview: a grid picture written beside the
            card (images) or a few sentences (text).
        model_local_path (`str`, *optional*): Without `model_repo_id`: the local folder of the model trained on
            these samples.
        model_link (`str`, *optional*): Link to that folder, relative to the card's folder.

    Returns:
        `huggingface_hub.DatasetCard`: the card; `str(card)` is the README.md content.
    """
    facts = DatasetCardFacts(
        repo_id=repo_id,
        history=history,
        configs=configs,
        features=features,
        real_data_filters=default_real_data_filters() if real_data_filters is None else real_data_filters,
        settings=settings,
        model_repo_id=model_repo_id,
        real_data_columns=real_data_columns,
        include_real_data=include_real_data,
        endpoint=endpoint,
        preview=preview,
        model_local_path=model_local_path,
        model_link=model_link,
    )
    card_data = facts.update_metadata(card_data)
    return DatasetCard.from_template(
        card_data,
        template_str=template if template is not None else load_template(DATASET_CARD_TEMPLATE),
        **facts.template_values(card_data),
    )

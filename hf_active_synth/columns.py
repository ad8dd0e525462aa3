"""The `synth_*` provenance columns: every column a generator, the candidate scoring or a filter adds to a synthetic
sample, with its `datasets` feature type and the one-line description the dataset card shows.

Generators build their candidates with `build_candidates`, which lays the columns out in one order: the input and
label columns, then `REQUIRED_PROVENANCE_COLUMNS`, then the generator's extra columns in the order it passes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datasets import Dataset, Features, List, Value

__all__ = [
    "PROVENANCE_COLUMNS",
    "REQUIRED_PROVENANCE_COLUMNS",
    "ProvenanceColumn",
    "build_candidates",
    "column_description",
    "column_feature",
    "feature_type_name",
    "infer_columns",
    "set_column",
]

PREFIX = "synth_"


@dataclass(frozen=True)
class ProvenanceColumn:
    """One provenance column of the synthetic samples.

    Args:
        name (`str`): Column name; starts with `synth_`.
        feature (`datasets` feature): Its type in the datasets the generators return (e.g. `Value("int64")`).
        description (`str`): One line for the dataset card's column table.
    """

    name: str
    feature: Any
    description: str

    def __post_init__(self):
        if not self.name.startswith(PREFIX):
            raise ValueError(f"Provenance column {self.name!r} must start with {PREFIX!r}.")


# Filled by every generator, one value per candidate row.
CYCLE_COLUMN = "synth_cycle"
GENERATOR_COLUMN = "synth_generator"
TARGET_ID_COLUMN = "synth_target_id"
TARGET_LABEL_COLUMN = "synth_target_label"
SEED_IDS_COLUMN = "synth_seed_example_ids"
REQUIRED_PROVENANCE_COLUMNS = (CYCLE_COLUMN, GENERATOR_COLUMN, TARGET_ID_COLUMN, TARGET_LABEL_COLUMN, SEED_IDS_COLUMN)

# Recorded by some generators.
PROMPT_COLUMN = "synth_prompt"
GUIDANCE_SCALE_COLUMN = "synth_guidance_scale"
LABEL_SCALE_COLUMN = "synth_label_scale"
ACQUISITION_COLUMN = "synth_guidance_acquisition"
STRENGTH_COLUMN = "synth_strength"
NUM_STEPS_COLUMN = "synth_num_inference_steps"
SAMPLE_SEED_COLUMN = "synth_sample_seed"
POOL_INDEX_COLUMN = "synth_pool_index"

# Added by the loop when it scores candidates with the ensemble.
SCORE_COLUMN = "synth_score"
LABEL_PROBABILITY_COLUMN = "synth_label_probability"
PREDICTED_LABEL_COLUMN = "synth_predicted_label"
PREDICTED_PROBABILITY_COLUMN = "synth_predicted_probability"
TARGET_UNCERTAINTY_COLUMN = "synth_target_uncertainty"
ANCHOR_LABEL_COLUMN = "synth_anchor_label"

# Added by filters.
MAX_REAL_OVERLAP_COLUMN = "synth_max_real_overlap"
NEAREST_REAL_DISTANCE_COLUMN = "synth_nearest_real_distance"
REALISM_COLUMN = "synth_realism"
DENOISING_ERROR_COLUMN = "synth_denoising_error"

_COLUMNS = (
    ProvenanceColumn(CYCLE_COLUMN, Value("int64"), "Cycle in which the sample was generated and accepted."),
    ProvenanceColumn(GENERATOR_COLUMN, Value("string"), "Generator that produced the sample."),
    ProvenanceColumn(
        TARGET_ID_COLUMN,
        Value("int64"),
        "Position, among the cycle's targets, of the uncertain real example the sample targets (-1: no target).",
    ),
    ProvenanceColumn(TARGET_LABEL_COLUMN, Value("int64"), "Class the generation targeted."),
    ProvenanceColumn(
        SEED_IDS_COLUMN,
        List(Value("int64")),
        "Indices, in the real training set, of the real examples used as seeds (the examples themselves are not "
        "included).",
    ),
    ProvenanceColumn(
        PROMPT_COLUMN,
        Value("string"),
        "Prompt the generator was given (an LLM's full prompt holds the seed examples, so it is not published by "
        "default).",
    ),
    ProvenanceColumn(
        GUIDANCE_SCALE_COLUMN,
        Value("float64"),
        "Weight of the ensemble-disagreement gradient that steered sampling (0: unguided).",
    ),
    ProvenanceColumn(
        LABEL_SCALE_COLUMN,
        Value("float64"),
        "Weight of the gradient that kept the intended label during sampling (0: unguided).",
    ),
    ProvenanceColumn(
        ACQUISITION_COLUMN, Value("string"), "Disagreement measure sampling was guided on (empty: unguided)."
    ),
    ProvenanceColumn(
        STRENGTH_COLUMN,
        Value("float64"),
        "How far the target's real image was noised before denoising (img2img strength; empty: from pure noise).",
    ),
    ProvenanceColumn(NUM_STEPS_COLUMN, Value("int64"), "Denoising steps."),
    ProvenanceColumn(
        SAMPLE_SEED_COLUMN,
        Value("int64"),
        "Seed of the sample's initial noise (derived from the cycle's seed, the target and the candidate's index).",
    ),
    ProvenanceColumn(POOL_INDEX_COLUMN, Value("int64"), "Row of the acquired example in the real acquisition pool."),
    ProvenanceColumn(
        SCORE_COLUMN, Value("float64"), "Generator ranking score (ensemble disagreement on the candidate)."
    ),
    ProvenanceColumn(LABEL_PROBABILITY_COLUMN, Value("float64"), "Ensemble-mean probability of the intended label."),
    ProvenanceColumn(PREDICTED_LABEL_COLUMN, Value("int64"), "Ensemble-mean predicted class."),
    ProvenanceColumn(
        PREDICTED_PROBABILITY_COLUMN, Value("float64"), "Ensemble-mean probability of the predicted class."
    ),
    ProvenanceColumn(
        TARGET_UNCERTAINTY_COLUMN, Value("float64"), "Uncertainty of the targeted real example when it was selected."
    ),
    ProvenanceColumn(
        ANCHOR_LABEL_COLUMN,
        Value("int64"),
        "Class of the targeted real example; differs from the label for a hard negative (-1: no target).",
    ),
    ProvenanceColumn(
        MAX_REAL_OVERLAP_COLUMN,
        Value("float64"),
        "Highest shingle overlap of the text with any real training text (privacy filter).",
    ),
    ProvenanceColumn(
        NEAREST_REAL_DISTANCE_COLUMN,
        Value("float64"),
        "Pixel distance from the image to its nearest real training image (privacy filter).",
    ),
    ProvenanceColumn(
        REALISM_COLUMN,
        Value("float64"),
        "Cross-fitted probability, under a real-vs-synthetic discriminator, that the image is real.",
    ),
    ProvenanceColumn(
        DENOISING_ERROR_COLUMN,
        Value("float64"),
        "Class-conditional DDPM's noise-prediction error on the image at mid noise (higher: less realistic).",
    ),
)
PROVENANCE_COLUMNS: Mapping[str, ProvenanceColumn] = {column.name: column for column in _COLUMNS}
"""Every provenance column by name, in the order above."""

_UNKNOWN_DESCRIPTION = "Generator-specific provenance."


def column_description(name: str) -> str:
    """The card description of provenance column `name` (a generic line for a `synth_*` column registered nowhere,
    e.g. a custom generator's; empty for any other column)."""
    column = PROVENANCE_COLUMNS.get(name)
    if column is not None:
        return column.description
    return _UNKNOWN_DESCRIPTION if name.startswith(PREFIX) else ""


def column_feature(name: str) -> Any:
    """The `datasets` feature of the registered provenance column `name`."""
    try:
        return PROVENANCE_COLUMNS[name].feature
    except KeyError:
        raise KeyError(
            f"{name!r} is not a registered provenance column; add it to `hf_active_synth.columns`."
        ) from None


def feature_type_name(feature: Any) -> str:
    """A short name of a `datasets` feature for the card's column table, e.g. `list[int64]`."""
    kind = type(feature).__name__
    if kind == "ClassLabel":
        return f"ClassLabel ({', '.join(feature.names)})"
    if kind == "Value":
        return feature.dtype
    if kind in ("List", "Sequence", "LargeList"):
        return f"list[{feature_type_name(feature.feature)}]"
    if isinstance(feature, list) and feature:
        return f"list[{feature_type_name(feature[0])}]"
    return kind


def infer_columns(features: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> tuple[str, str | None]:
    """Returns `(input_column, label_column)` of a synthetic dataset: from the settings when given, else the
    ClassLabel column is the label and the first other non-provenance column the input."""
    settings = settings or {}
    names = [name for name in features if not name.startswith(PREFIX)]
    label = settings.get("label_column")
    if label not in features:
        label = next((n for n in names if type(features[n]).__name__ == "ClassLabel"), None)
        if label is None and "label" in features:
            label = "label"
    input_column = settings.get("input_column")
    if input_column not in features:
        input_column = next((n for n in names if n != label), names[0] if names else "")
    return input_column, label


def build_candidates(
    data: Dataset | Mapping[str, Sequence[Any]],
    *,
    cycle: int,
    generator: str,
    target_ids: Sequence[int],
    target_labels: Sequence[int],
    seed_example_ids: Sequence[Sequence[int]],
    extra: Mapping[str, Sequence[Any]] | None = None,
    features: Mapping[str, Any] | None = None,
) -> Dataset:
    """The candidates a generator returns: its input and label columns, then the provenance columns.

    Args:
        data (`Dataset` or `Mapping[str, Sequence]`): The input and label columns, one row per candidate: a
            `Dataset` (its columns and features are kept as they are) or column values (typed by `features`).
        cycle (`int`): The cycle, repeated on every row (`synth_cycle`).
        generator (`str`): The generator's name, repeated on every row (`synth_generator`).
        target_ids (`Sequence[int]`): Each row's `synth_target_id`.
        target_labels (`Sequence[int]`): Each row's `synth_target_label`.
        seed_example_ids (`Sequence[Sequence[int]]`): Each row's `synth_seed_example_ids`.
        extra (`Mapping[str, Sequence]`, *optional*): Further registered provenance columns, in column order.
        features (`Mapping`, *optional*): Features of the columns of a mapping `data`.

    Returns:
        `datasets.Dataset`: the rows, every provenance column typed as `PROVENANCE_COLUMNS` declares.
    """
    size = len(target_ids)
    provenance: dict[str, Sequence[Any]] = {
        CYCLE_COLUMN: [cycle] * size,
        GENERATOR_COLUMN: [generator] * size,
        TARGET_ID_COLUMN: target_ids,
        TARGET_LABEL_COLUMN: target_labels,
        SEED_IDS_COLUMN: seed_example_ids,
        **(extra or {}),
    }
    provenance_features = {name: column_feature(name) for name in provenance}
    if isinstance(data, Dataset):
        # Keep the data's own columns untouched (an Image column is not decoded and re-encoded).
        for name, values in provenance.items():
            data = data.add_column(name, list(values), feature=provenance_features[name])
        return data
    return Dataset.from_dict({**data, **provenance}, features=Features({**(features or {}), **provenance_features}))


def set_column(dataset: Dataset, name: str, values: Sequence[Any], feature: Any = None) -> Dataset:
    """`dataset` with column `name` set to `values` (replaced if it exists), typed `feature` when given.

    `Dataset.add_column` fails on a zero-row selection of a dataset that already had a column added (its empty,
    concatenated table cannot be concatenated again: "tables don't have the same number of rows", datasets 4.x), which
    is what a filter sees once an earlier filter rejected every candidate; an empty dataset is rebuilt instead.
    """
    if name in dataset.column_names:
        dataset = dataset.remove_columns(name)
    if len(dataset) == 0:
        if len(values):
            raise ValueError(f"Column {name!r} has {len(values)} values for a dataset of 0 rows.")
        features = Features({**dataset.features, name: feature if feature is not None else Value("float64")})
        return Dataset.from_dict({column: [] for column in features}, features=features)
    return dataset.add_column(name, list(values), feature=feature)

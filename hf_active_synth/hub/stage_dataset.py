"""Staging the dataset repository in the local Hub folder: one parquet configuration `cycle_k` per cycle, the
`all` configuration, and the dataset card whose YAML (`configs`, `dataset_info`) `load_dataset` reads."""

from __future__ import annotations

import math
import shutil
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import DatasetCardData, constants

from ..cards import render_dataset_card
from ..columns import PROMPT_COLUMN
from .files import replace_dir, write_text_atomic
from .layout import ALL_CONFIG, SPLIT, SYNTHETIC_DIR, HubLayout, config_name, relative_link

if TYPE_CHECKING:
    from ..evaluation.previews import Preview

MAX_SHARD_BYTES = 500 * 1024 * 1024
# Provenance columns that can hold real training data (prompts seeded with real examples).
REAL_DATA_COLUMNS = (PROMPT_COLUMN, "synth_seed_examples", "synth_seed_texts")


def parquet_summary(files: Sequence[Path]) -> tuple[Any, int, int, int]:
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


def write_parquet_shards(dataset: Any, directory: Path, max_shard_bytes: int = MAX_SHARD_BYTES) -> None:
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


def _write_cycle_config(
    folder: Path,
    cycle: int,
    cycle_dir: Path,
    staging: Path,
    include_real_data: bool,
    real_data_columns: Sequence[str],
) -> None:
    """Writes the configuration `cycle_k` from `cycle_dir/synthetic/` (if it has samples), after removing the
    configurations of cycle `k` and later."""
    from datasets import load_from_disk

    # Configurations of later cycles belong to a run this one replaces (resumed from an earlier cycle).
    for stale in folder.glob("cycle_*"):
        if stale.is_dir() and stale.name.split("_", 1)[1].isdigit() and int(stale.name.split("_", 1)[1]) >= cycle:
            shutil.rmtree(stale)
    synthetic = cycle_dir / SYNTHETIC_DIR
    if synthetic.is_dir():
        dataset = load_from_disk(str(synthetic))
        if not include_real_data:
            dataset = dataset.remove_columns([c for c in real_data_columns if c in dataset.column_names])
        if len(dataset) > 0:
            replace_dir(folder / config_name(cycle), lambda tmp: write_parquet_shards(dataset, tmp), staging)


def _card_data(folder: Path, configs: Mapping[int, str], staging: Path) -> tuple[DatasetCardData, Any]:
    """Writes the `all` configuration when it cannot be a view over the cycles' files; returns the card's YAML
    (`configs`, `dataset_info`) and the features of `all`."""
    from datasets import concatenate_datasets
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs

    summaries = {k: parquet_summary(sorted((folder / name).glob("*.parquet"))) for k, name in configs.items()}
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
        replace_dir(folder / ALL_CONFIG, lambda tmp: write_parquet_shards(combined, tmp), staging)
        all_features, all_rows, all_bytes, all_size = parquet_summary(sorted((folder / ALL_CONFIG).glob("*.parquet")))
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
    return card_data, all_features


def _write_preview(
    folder: Path, output_dir: Path, cycles: Collection[int], settings: Mapping[str, Any], include_real_data: bool
) -> Preview | None:
    """Draws the preview of the published cycles' samples (`preview.png` beside the card for images); real data is
    shown only when it is published (`include_real_data`)."""
    from ..evaluation.previews import PREVIEW_FILE, Preview, load_run_samples

    # Never rewritten in place: an earlier preview may be hard-linked into a pending upload's folder.
    (folder / PREVIEW_FILE).unlink(missing_ok=True)
    samples = load_run_samples(output_dir, settings, cycles=sorted(cycles))
    return None if samples is None else Preview.write(samples, folder, include_real=include_real_data)


def stage_dataset(
    layout: HubLayout,
    cycle: int,
    cycle_dir: Path,
    history: list[dict[str, Any]],
    settings: Mapping[str, Any],
    include_real_data: bool = False,
    real_data_columns: Sequence[str] = REAL_DATA_COLUMNS,
    real_data_filters: Collection[str] | None = None,
) -> Path | None:
    """Adds cycle `k`'s samples to the local dataset repository and rewrites its card; returns the repository's
    folder, or `None` while no cycle has samples. Columns in `real_data_columns` are dropped unless
    `include_real_data`. `real_data_filters` names the run's filters that check candidates against the real data
    (`Filter.checks_real_data`), for the card's privacy section; `None` means the library's own filters."""
    folder = layout.dataset_dir()
    folder.mkdir(parents=True, exist_ok=True)
    _write_cycle_config(folder, cycle, cycle_dir, layout.staging, include_real_data, real_data_columns)
    configs = {}
    for path in folder.glob("cycle_*"):
        if path.is_dir() and path.name.split("_", 1)[1].isdigit() and any(path.glob("*.parquet")):
            configs[int(path.name.split("_", 1)[1])] = path.name
    if not configs:
        return None

    card_data, all_features = _card_data(folder, configs, layout.staging)
    preview = _write_preview(folder, cycle_dir.parent, configs, settings, include_real_data)
    # Without a model repository, the card points at the local model folder (`main`, the best cycle).
    model_dir = layout.model_dir("main")
    local_model = layout.model_repo_id is None
    # What the card's privacy section reports: the columns that can hold real data, and the filters that check it.
    privacy: dict[str, Any] = {
        "real_data_columns": real_data_columns,
        "include_real_data": include_real_data,
        "real_data_filters": real_data_filters,
    }
    card = render_dataset_card(
        repo_id=layout.dataset_repo_id or layout.local_path(folder),
        history=history,
        configs=configs,
        features=all_features,
        card_data=card_data,
        settings=settings,
        model_repo_id=layout.model_repo_id,
        endpoint=constants.ENDPOINT,
        preview=preview,
        model_local_path=layout.local_path(model_dir) if local_model else None,
        model_link=relative_link(model_dir, folder) if local_model and not layout.dataset_repo_id else None,
        **privacy,
    )
    write_text_atomic(folder / constants.REPOCARD_NAME, str(card))
    return folder

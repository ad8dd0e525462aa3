"""Hub artifacts of a run, over real HTTP with the real clients against the Hub-protocol test server."""
# ruff: noqa: F811 - the `hub_server` fixture is imported, then requested by name

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, List, Value, concatenate_datasets, load_dataset, load_from_disk
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertTokenizerFast

from hf_active_synth.hub import (
    PENDING_FILE,
    HubPublisher,
    branch_name,
    call_with_retries,
    pull_run,
    tag_name,
)

TOKEN = "hf_testtoken1234567890abcdefXYZ"
MODEL_REPO = "test-user/run-model"
DATASET_REPO = "test-user/run-synthetic"
FEATURES = Features(
    {
        "text": Value("string"),
        "label": ClassLabel(names=["negative", "positive"]),
        "synth_cycle": Value("int64"),
        "synth_generator": Value("string"),
        "synth_target_id": Value("int64"),
        "synth_target_label": Value("int64"),
        "synth_seed_example_ids": List(Value("int64")),
        "synth_score": Value("float64"),
        "synth_label_probability": Value("float64"),
        "synth_predicted_label": Value("int64"),
        "synth_predicted_probability": Value("float64"),
        "synth_target_uncertainty": Value("float64"),
        "synth_prompt": Value("string"),  # holds real examples: must never be published by default
    }
)
ACCURACY = {0: 0.60, 1: 0.80, 2: 0.75, 3: 0.70}  # best cycle after cycle 2: 1


def make_model(seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    return BertForSequenceClassification(config).eval()


def make_tokenizer(directory: Path) -> BertTokenizerFast:
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "plot", "great"]
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n")
    return BertTokenizerFast(vocab=str(vocab))


def make_samples(cycle: int, n: int) -> Dataset:
    rows = {
        "text": [f"cycle {cycle} synthetic review {i}" for i in range(n)],
        "label": [i % 2 for i in range(n)],
        "synth_cycle": [cycle] * n,
        "synth_generator": ["smollm2"] * n,
        "synth_target_id": [10 * cycle + i for i in range(n)],
        "synth_target_label": [i % 2 for i in range(n)],
        "synth_seed_example_ids": [[i, i + 1] for i in range(n)],
        "synth_score": [0.1 * i for i in range(n)],
        "synth_label_probability": [0.6] * n,
        "synth_predicted_label": [i % 2 for i in range(n)],
        "synth_predicted_probability": [0.7] * n,
        "synth_target_uncertainty": [0.5] * n,
        "synth_prompt": [f"Real example: the REAL-TRAINING-TEXT-{i}" for i in range(n)],
    }
    return Dataset.from_dict(rows, features=FEATURES)


def cycle_entry(cycle: int) -> dict:
    return {
        "cycle": cycle,
        "eval_metrics": {"eval_accuracy": ACCURACY[cycle], "eval_f1_macro": ACCURACY[cycle] - 0.05, "eval_loss": 0.5},
        "uncertainty_before": {"entropy": 0.6, "variance": 0.1, "bald": 0.05} if cycle else {},
        "uncertainty_after": {"entropy": 0.4, "variance": 0.05, "bald": 0.02} if cycle else {},
        "num_targets": 4 if cycle else 0,
        "candidates_generated": 12 if cycle else 0,
        "filter_counts": {"label_agreement": 9, "exact_duplicate": 8, "near_copy": 6} if cycle else {},
        "num_accepted": 3 + cycle if cycle else 0,
        "num_synthetic_total": sum(3 + c for c in range(1, cycle + 1)),
        "stage_seconds": {"train": 1.0},
        "peak_memory_mb": 100.0,
        "generator": "smollm2" if cycle else None,
    }


def write_cycle(output_dir: Path, cycle: int) -> tuple[Path, BertForSequenceClassification, Dataset | None]:
    """A cycle directory as the trainer writes it (checkpoint with tokenizer, synthetic samples, cycle.json)."""
    cycle_dir = output_dir / f"cycle-{cycle}"
    checkpoint = cycle_dir / "checkpoint"
    checkpoint.mkdir(parents=True)
    model = make_model(seed=cycle)
    model.save_pretrained(checkpoint)
    make_tokenizer(cycle_dir).save_pretrained(checkpoint)
    # Trainer.save_model pickles TrainingArguments, which can hold the token: it must never be published.
    torch.save({"hub_token": TOKEN}, checkpoint / "training_args.bin")
    samples = None
    if cycle:
        samples = make_samples(cycle, 3 + cycle)
        samples.save_to_disk(str(cycle_dir / "synthetic"))
    (cycle_dir / "cycle.json").write_text(json.dumps(cycle_entry(cycle)))
    return cycle_dir, model, samples


def run_cycles(publisher: HubPublisher, output_dir: Path, cycles: range) -> dict:
    """Writes and publishes `cycles`; returns {cycle: (model, published samples or None, result)}."""
    out = {}
    for cycle in cycles:
        cycle_dir, model, samples = write_cycle(output_dir, cycle)
        history = [cycle_entry(c) for c in range(cycle + 1)]
        best = max(range(cycle + 1), key=lambda c: (ACCURACY[c], -c))
        result = publisher.publish_cycle(cycle_dir=cycle_dir, history=history, best_cycle=best)
        published = samples.remove_columns("synth_prompt") if samples is not None else None
        out[cycle] = (model, published, result)
    return out


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def assert_same_rows(loaded: Dataset, expected: Dataset) -> None:
    assert loaded.features == expected.features
    assert loaded.to_list() == expected.to_list()


def publisher(output_dir: Path, **kwargs) -> HubPublisher:
    settings = {"base_model": "google-bert/bert-base-uncased", "synthetic_loss_weight": 0.3, "ensemble_size": 5}
    defaults = dict(
        model_repo_id=MODEL_REPO,
        dataset_repo_id=DATASET_REPO,
        push_to_hub=True,
        token=TOKEN,
        run_settings=settings,
        retry_base_wait=0.01,
        retry_max_wait=0.02,
        max_retries=3,
    )
    defaults.update(kwargs)
    return HubPublisher(output_dir, **defaults)


def test_local_hub_layout_is_the_default(tmp_path):
    output_dir = tmp_path / "run"
    pub = HubPublisher(output_dir, run_settings={"base_model": "google-bert/bert-base-uncased"})
    assert not output_dir.exists()  # the constructor stores parameters only
    cycles = run_cycles(pub, output_dir, range(3))

    # Without repository ids, the folders are named after the base model and the data (here the run's folder).
    dataset_dir = output_dir / "hub" / "datasets" / "run-active-synth-synthetic"
    assert cycles[2][2].dataset_dir == dataset_dir == pub.dataset_dir()
    cache = str(tmp_path / "datasets-cache")
    for cycle in (1, 2):
        loaded = load_dataset(str(dataset_dir), f"cycle_{cycle}", split="train", cache_dir=cache)
        assert_same_rows(loaded, cycles[cycle][1])
    everything = load_dataset(str(dataset_dir), "all", split="train", cache_dir=cache)
    assert_same_rows(everything, concatenate_datasets([cycles[1][1], cycles[2][1]]))
    assert "synth_prompt" not in everything.column_names

    for cycle in range(3):
        folder = pub.model_dir(branch_name(cycle))
        assert folder == output_dir / "hub" / "models" / f"bert-base-uncased-run-active-synth@cycle-{cycle}"
        assert_same_weights(BertForSequenceClassification.from_pretrained(folder), cycles[cycle][0])
        assert not (folder / "training_args.bin").exists()
        assert (folder / "README.md").is_file() and (folder / "active_synthesis.json").is_file()
    main = pub.model_dir("main")
    assert_same_weights(BertForSequenceClassification.from_pretrained(main), cycles[1][0])  # best cycle
    assert AutoTokenizer.from_pretrained(main)("good movie")["input_ids"] == [2, 5, 7, 3]
    card = (main / "README.md").read_text()
    assert "cycle 1" in card and "AutoModelForSequenceClassification" in card
    # Each card links the other repository's local folder.
    assert f"[`{dataset_dir.as_posix()}`](../../datasets/run-active-synth-synthetic)" in card
    dataset_card = (dataset_dir / "README.md").read_text()
    assert f"[`{main.as_posix()}`](../../models/bert-base-uncased-run-active-synth)" in dataset_card
    # The preview shows accepted sentences, never the real examples held by the prompts.
    preview = dataset_card.split("## Preview")[1].split("## Cycles")[0]
    assert "| negative | 2 | cycle 2 synthetic review 0 |" in preview and "REAL-TRAINING-TEXT" not in dataset_card
    assert not (output_dir / PENDING_FILE).exists()


def test_push_cycles_and_load_back_every_revision(hub_server, tmp_path):
    output_dir = tmp_path / "run"
    cycles = run_cycles(publisher(output_dir), output_dir, range(3))
    assert all(result.pending == [] for _, _, result in cycles.values())
    assert cycles[2][2].pushed == [f"datasets/{DATASET_REPO}@main", f"{MODEL_REPO}@cycle-2", f"{MODEL_REPO}@main"]

    # Private by default: anonymous requests see nothing.
    assert hub_server.get_repo(MODEL_REPO).private and hub_server.get_repo(DATASET_REPO, "dataset").private
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info(MODEL_REPO)

    api = HfApi(token=TOKEN)
    refs = api.list_repo_refs(MODEL_REPO)
    assert {b.name for b in refs.branches} == {"main", "cycle-0", "cycle-1", "cycle-2"}
    assert {t.name for t in refs.tags} == {tag_name(c) for c in range(3)}
    dataset_tags = {t.name for t in api.list_repo_refs(DATASET_REPO, repo_type="dataset").tags}
    assert dataset_tags == {tag_name(1), tag_name(2)}

    for revision, cycle in [("cycle-0", 0), ("cycle-2", 2), (tag_name(1), 1), ("main", 1)]:
        loaded = BertForSequenceClassification.from_pretrained(
            MODEL_REPO, revision=revision, token=TOKEN, cache_dir=tmp_path / f"cache-{revision}"
        )
        assert_same_weights(loaded, cycles[cycle][0])
    tokenizer = AutoTokenizer.from_pretrained(MODEL_REPO, revision="cycle-2", token=TOKEN, cache_dir=tmp_path / "t")
    assert tokenizer("good movie")["input_ids"] == [2, 5, 7, 3]
    files = api.list_repo_files(MODEL_REPO, revision="cycle-2")
    assert "training_args.bin" not in files and "active_synthesis.json" in files

    for config, expected in [
        ("cycle_1", cycles[1][1]),
        ("cycle_2", cycles[2][1]),
        ("all", concatenate_datasets([cycles[1][1], cycles[2][1]])),
    ]:
        loaded = load_dataset(DATASET_REPO, config, split="train", token=TOKEN, cache_dir=str(tmp_path / config))
        assert_same_rows(loaded, expected)
    # The tag pins the dataset as it was after cycle 1.
    pinned = load_dataset(
        DATASET_REPO, "all", revision=tag_name(1), split="train", token=TOKEN, cache_dir=str(tmp_path / "pinned")
    )
    assert_same_rows(pinned, cycles[1][1])

    card = Path(hf_hub_download(MODEL_REPO, "README.md", token=TOKEN, cache_dir=tmp_path / "card")).read_text()
    assert "weights of **cycle 1**" in card and "| 1 ★ ← |" in card and "| 2 |" in card
    dataset_card = Path(
        hf_hub_download(DATASET_REPO, "README.md", repo_type="dataset", token=TOKEN, cache_dir=tmp_path / "dcard")
    ).read_text()
    assert "config_name: cycle_2" in dataset_card and "`near_copy` removed 2 of 8 candidates" in dataset_card
    assert "REAL-TRAINING-TEXT" not in dataset_card


def test_transient_errors_are_retried_with_backoff(hub_server, tmp_path, caplog):
    output_dir = tmp_path / "run"
    hub_server.fail_next(2, status=503, path_contains="/commit/")
    with caplog.at_level(logging.WARNING, logger="hf_active_synth.hub"):
        cycles = run_cycles(publisher(output_dir), output_dir, range(2))
    assert cycles[1][2].pending == [] and not (output_dir / PENDING_FILE).exists()
    assert sum(1 for _, path, status in hub_server.requests if status == 503) == 2
    assert "retrying in" in caplog.text
    loaded = load_dataset(DATASET_REPO, "cycle_1", split="train", token=TOKEN, cache_dir=str(tmp_path / "c"))
    assert_same_rows(loaded, cycles[1][1])


def test_persistent_failure_is_recorded_and_retried_without_loss(hub_server, tmp_path, caplog):
    output_dir = tmp_path / "run"
    cycles = run_cycles(publisher(output_dir), output_dir, range(2))
    # The Hub fails every model commit: cycle 2's dataset goes through, its model branch does not.
    hub_server.fail_until_cleared(status=500, path_contains=f"/api/models/{MODEL_REPO}/commit/")
    with caplog.at_level(logging.ERROR, logger="hf_active_synth.hub"):
        cycles.update(run_cycles(publisher(output_dir), output_dir, range(2, 3)))
    result = cycles[2][2]
    assert result.pushed == [f"datasets/{DATASET_REPO}@main"]
    assert result.pending == [f"{MODEL_REPO}@cycle-2", f"{MODEL_REPO}@main"]
    assert "Pushing test-user/run-model@cycle-2 failed" in caplog.text and PENDING_FILE in caplog.text

    pending = json.loads((output_dir / PENDING_FILE).read_text())["pushes"]
    assert [(p["revision"], p["tags"]) for p in pending] == [("cycle-2", [tag_name(2)]), ("main", [])]
    assert "500" in pending[0]["last_error"]
    # Every local artifact is in place and loadable.
    local = BertForSequenceClassification.from_pretrained(result.model_dir)
    assert_same_weights(local, cycles[2][0])
    # The Hub never serves another cycle's weights as cycle 2: its branch holds no checkpoint until the retry.
    assert HfApi(token=TOKEN).list_repo_files(MODEL_REPO, revision="cycle-2") == [".gitattributes"]
    assert_same_weights(
        BertForSequenceClassification.from_pretrained(MODEL_REPO, token=TOKEN, cache_dir=tmp_path / "stale-main"),
        cycles[1][0],
    )

    # While the Hub still fails, a retry keeps everything pending.
    assert len(publisher(output_dir).retry_pending()) == 2
    hub_server.clear_faults()
    # The next run (a new publisher on the same output_dir) retries and succeeds.
    assert publisher(output_dir).retry_pending() == []
    assert not (output_dir / PENDING_FILE).exists()
    for revision, cycle in [("cycle-2", 2), (tag_name(2), 2), ("main", 1)]:
        loaded = BertForSequenceClassification.from_pretrained(
            MODEL_REPO, revision=revision, token=TOKEN, cache_dir=tmp_path / f"cache-{revision}"
        )
        assert_same_weights(loaded, cycles[cycle][0])


def test_pull_run_resumes_from_hub_state(hub_server, tmp_path):
    source = tmp_path / "source"
    cycles = run_cycles(publisher(source), source, range(3))

    resumed = tmp_path / "resumed"
    assert pull_run(MODEL_REPO, DATASET_REPO, resumed, token=TOKEN) == 2
    assert_same_weights(
        BertForSequenceClassification.from_pretrained(resumed / "cycle-2" / "checkpoint"), cycles[2][0]
    )
    assert not (resumed / "cycle-2" / "checkpoint" / "README.md").exists()
    for cycle in range(3):
        assert json.loads((resumed / f"cycle-{cycle}" / "cycle.json").read_text()) == cycle_entry(cycle)
    for cycle in (1, 2):
        assert_same_rows(load_from_disk(str(resumed / f"cycle-{cycle}" / "synthetic")), cycles[cycle][1])
    assert json.loads((resumed / "history.json").read_text())["cycles"] == [cycle_entry(c) for c in range(3)]
    assert (resumed / "hub" / "models" / "run-model@cycle-1" / "model.safetensors").is_file()  # best so far

    # The resumed run publishes cycle 3 into the same repositories, keeping every earlier cycle.
    cycles.update(run_cycles(publisher(resumed), resumed, range(3, 4)))
    everything = load_dataset(DATASET_REPO, "all", split="train", token=TOKEN, cache_dir=str(tmp_path / "all"))
    assert_same_rows(everything, concatenate_datasets([cycles[c][1] for c in (1, 2, 3)]))
    main = BertForSequenceClassification.from_pretrained(MODEL_REPO, token=TOKEN, cache_dir=tmp_path / "main")
    assert_same_weights(main, cycles[1][0])  # still the best cycle, published from the pulled mirror

    # Pulling an earlier revision gives the state after that cycle only.
    earlier = tmp_path / "earlier"
    assert pull_run(MODEL_REPO, DATASET_REPO, earlier, revision="cycle-1", token=TOKEN) == 1
    assert sorted(p.name for p in earlier.glob("cycle-*")) == ["cycle-0", "cycle-1"]
    assert_same_rows(load_from_disk(str(earlier / "cycle-1" / "synthetic")), cycles[1][1])
    with pytest.raises(FileExistsError):
        pull_run(MODEL_REPO, DATASET_REPO, earlier, token=TOKEN)


def test_token_is_never_written_or_logged(hub_server, tmp_path, caplog, capsys):
    output_dir = tmp_path / "run"
    settings = {"command": f"hf-active-synth --hub_token {TOKEN}", "hub_token": TOKEN, "nested": {"token": TOKEN}}
    pub = publisher(output_dir, run_settings=settings)
    assert TOKEN not in repr(pub)
    with caplog.at_level(logging.DEBUG):
        run_cycles(pub, output_dir, range(2))
        hub_server.fail_until_cleared(status=502, path_contains="/commit/")
        run_cycles(pub, output_dir, range(2, 3))
        hub_server.clear_faults()
        pub.retry_pending()
    captured = capsys.readouterr()
    assert TOKEN not in caplog.text and TOKEN not in captured.out and TOKEN not in captured.err
    assert "Pushing" in caplog.text  # the failure was logged, without the token

    planted = {output_dir / f"cycle-{c}" / "checkpoint" / "training_args.bin" for c in range(3)}
    scanned = [p for p in output_dir.rglob("*") if p.is_file() and p not in planted]
    assert any(p.name == "README.md" for p in scanned) and any(p.name == "active_synthesis.json" for p in scanned)
    for path in scanned:
        assert TOKEN.encode() not in path.read_bytes(), path
    for repo in hub_server.repos.values():
        for commit in repo.commits.values():
            for path, entry in commit.files.items():
                assert TOKEN.encode() not in hub_server.file_content(repo, entry), (repo.repo_id, path)


def test_call_with_retries_gives_up_on_client_errors(hub_server):
    api = HfApi(token=TOKEN)
    calls = []

    def missing():
        calls.append(1)
        return api.model_info("test-user/does-not-exist")

    with pytest.raises(RepositoryNotFoundError):
        call_with_retries(missing, max_retries=3, base_wait=0.0)
    assert len(calls) == 1  # 4xx: not retried


def test_server_speaks_dataset_push_to_hub(hub_server, tmp_path):
    """The test server also takes `Dataset.push_to_hub` (parquet through LFS, card update with parent commit)."""
    samples = make_samples(1, 4)
    samples.push_to_hub("test-user/pushed", config_name="cycle_1", token=TOKEN, private=True)
    loaded = load_dataset("test-user/pushed", "cycle_1", split="train", token=TOKEN, cache_dir=str(tmp_path))
    assert_same_rows(loaded, samples)


def test_image_samples_and_peft_adapters_round_trip_locally(tmp_path):
    import numpy as np
    from datasets import Image
    from peft import LoraConfig, PeftModel, get_peft_model
    from PIL import Image as PILImage

    output_dir = tmp_path / "run"
    base = make_model(seed=0)
    adapter = get_peft_model(make_model(seed=0), LoraConfig(r=2, target_modules=["query", "value"]))
    torch.manual_seed(1)
    for name, parameter in adapter.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, size=(8, 8), dtype=np.uint8) for _ in range(3)]
    samples = Dataset.from_dict(
        {"image": [PILImage.fromarray(p) for p in pixels], "label": [0, 1, 0], "synth_cycle": [1, 1, 1]},
        features=Features({"image": Image(), "label": ClassLabel(names=["0", "1"]), "synth_cycle": Value("int64")}),
    )
    for cycle in (0, 1):
        cycle_dir = output_dir / f"cycle-{cycle}"
        (adapter if cycle else base).save_pretrained(cycle_dir / "checkpoint")
        if cycle:
            samples.save_to_disk(str(cycle_dir / "synthetic"))
        (cycle_dir / "cycle.json").write_text(json.dumps(cycle_entry(cycle)))
        pub = HubPublisher(output_dir, run_settings={"base_model": "tiny-bert"})
        pub.publish_cycle(cycle_dir, [cycle_entry(c) for c in range(cycle + 1)], best_cycle=cycle)

    loaded = load_dataset(str(pub.dataset_dir()), "cycle_1", split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.features["image"] == Image()
    assert all(np.array_equal(np.asarray(image), p) for image, p in zip(loaded["image"], pixels))
    assert "image classifier" not in (pub.model_dir("cycle-1") / "README.md").read_text()  # no processor saved
    # The dataset card shows the accepted images in a grid beside it (one row per class, cycle 1's samples).
    assert "![Synthetic samples per class and cycle](preview.png)" in (pub.dataset_dir() / "README.md").read_text()
    with PILImage.open(pub.dataset_dir() / "preview.png") as grid:
        assert grid.format == "PNG" and grid.height > 2 * 32
    assert "PeftModel.from_pretrained" in (pub.model_dir("cycle-1") / "README.md").read_text()
    restored = PeftModel.from_pretrained(make_model(seed=0), pub.model_dir("cycle-1"))
    assert_same_weights(restored, adapter)


def test_from_training_args_reads_the_hub_settings(tmp_path):
    from types import SimpleNamespace

    args = SimpleNamespace(
        output_dir=str(tmp_path),
        hub_model_id=MODEL_REPO,
        hub_dataset_id=DATASET_REPO,
        push_cycles_to_hub=True,
        hub_token=TOKEN,
        hub_private_repo=None,
    )
    pub = HubPublisher.from_training_args(args)
    assert (pub.model_repo_id, pub.dataset_repo_id, pub.push_to_hub, pub.private) == (
        MODEL_REPO,
        DATASET_REPO,
        True,
        True,
    )
    assert pub.token == TOKEN and TOKEN not in repr(pub)
    assert not any(tmp_path.iterdir())  # nothing written, nothing fetched

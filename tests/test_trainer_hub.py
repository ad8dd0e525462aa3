"""The trainer publishes every cycle through the real Hub clients, and resumes from what it pushed."""

from pathlib import Path

import torch
from datasets import load_dataset, load_from_disk
from tiny import WordSwapGenerator, make_args, make_bert, make_text_dataset, make_tokenizer
from transformers import BertForSequenceClassification

from hf_active_synth import ActiveSynthesisTrainer
from hf_active_synth.hub import pull_run

TOKEN = "hf_trainerTOKEN0987654321abc"
MODEL_REPO = "test-user/trainer-model"
DATASET_REPO = "test-user/trainer-synthetic"


def trainer_for(tmp_path, name, **overrides):
    return ActiveSynthesisTrainer(
        model=make_bert(),
        args=make_args(tmp_path, name, **overrides),
        train_dataset=make_text_dataset(24, seed=0),
        eval_dataset=make_text_dataset(24, seed=1),
        processing_class=make_tokenizer(),
        generator=WordSwapGenerator(),
    )


def test_local_hub_layout_by_default(tmp_path):
    trainer_for(tmp_path, "local", num_cycles=1).run_cycles()
    hub = tmp_path / "local" / "hub"
    (dataset_dir,) = (hub / "datasets").iterdir()
    loaded = load_dataset(str(dataset_dir), "cycle_1", split="train")
    assert loaded["text"] == load_from_disk(str(tmp_path / "local" / "cycle-1" / "synthetic"))["text"]
    model_dirs = {p.name for p in (hub / "models").iterdir()}
    assert any(name.endswith("@cycle-1") for name in model_dirs)
    best = next(hub / "models" / name for name in model_dirs if "@" not in name)
    assert BertForSequenceClassification.from_pretrained(best).config.num_labels == 2


def test_push_every_cycle_and_resume_from_the_hub(hub_server, tmp_path):
    trainer = trainer_for(
        tmp_path,
        "pushed",
        num_cycles=1,
        push_cycles_to_hub=True,
        hub_model_id=MODEL_REPO,
        hub_dataset_id=DATASET_REPO,
        hub_token=TOKEN,
    )
    trainer.run_cycles()
    local = tmp_path / "pushed"
    pushed = load_dataset(DATASET_REPO, "cycle_1", split="train", token=TOKEN, cache_dir=str(tmp_path / "c1"))
    assert pushed["text"] == load_from_disk(str(local / "cycle-1" / "synthetic"))["text"]
    remote = BertForSequenceClassification.from_pretrained(
        MODEL_REPO, revision="cycle-1", token=TOKEN, cache_dir=tmp_path / "m1"
    )
    saved = BertForSequenceClassification.from_pretrained(local / "cycle-1" / "checkpoint")
    for name, value in saved.state_dict().items():
        assert torch.equal(value, remote.state_dict()[name]), name

    # The token is nowhere on disk (training_args.bin included).
    for path in local.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path

    # A new machine pulls the run from the Hub and continues with cycle 2.
    resumed_dir = tmp_path / "resumed"
    assert pull_run(MODEL_REPO, DATASET_REPO, resumed_dir, token=TOKEN) == 1
    resumed = trainer_for(tmp_path, "resumed", num_cycles=2, publish_cycles=False)
    history = resumed.run_cycles(resume=True)
    assert [c.cycle for c in history.cycles] == [0, 1, 2]
    assert history.cycles[2].num_synthetic_total == 12
    assert Path(resumed_dir / "cycle-2" / "synthetic").is_dir()

"""The publishing gate: a dataset whose privacy audit crosses a limit is not pushed (Hub-protocol test server)."""
# ruff: noqa: F811 - the `hub_server` fixture is imported, then requested by name

import logging

from datasets import load_dataset
from test_privacy import CopyingGenerator
from tiny import make_trainer

from hf_active_synth.filters import ExactDuplicateFilter
from hf_active_synth.hub import HubPublisher

TOKEN = "hf_privacyTOKEN1234567890abc"
MODEL_REPO = "test-user/privacy-model"
DATASET_REPO = "test-user/privacy-synthetic"


def copying_run(tmp_path, name: str, **overrides):
    trainer = make_trainer(
        tmp_path,
        generator=CopyingGenerator(),
        name=name,
        num_cycles=1,
        synthetic_samples_per_cycle=4,
        num_train_epochs=1,
        ensemble_size=2,
        push_cycles_to_hub=True,
        hub_model_id=MODEL_REPO,
        hub_dataset_id=DATASET_REPO,
        hub_token=TOKEN,
        **overrides,
    )
    trainer.filters = [ExactDuplicateFilter()]
    return trainer, trainer.run_cycles()


def test_a_dataset_crossing_the_limit_is_not_pushed_and_the_error_says_why(hub_server, tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="hf_active_synth.hub"):
        trainer, history = copying_run(tmp_path, "refused", privacy_max_closer_share=0.2)
    share = history.cycles[1].privacy_audit["cumulative"]["share_closer_than_heldout_p5"]
    assert share > 0.2  # the generator copies its targets: the audit sees it
    assert ("dataset", DATASET_REPO) not in hub_server.repos  # never created, nothing uploaded
    assert hub_server.get_repo(MODEL_REPO)  # the model is still published
    (message,) = [r.getMessage() for r in caplog.records if "Not pushing the synthetic dataset" in r.getMessage()]
    assert "`privacy_max_closer_share`=0.2" in message and f"{share:.1%}" in message
    assert "raise or unset the limit" in message
    # The local files stay: the run's samples and the Hub-layout dataset folder with its card.
    run = tmp_path / "refused"
    assert (run / "cycle-1" / "synthetic").is_dir()
    (dataset_dir,) = (run / "hub" / "datasets").iterdir()
    assert "### Privacy audit" in (dataset_dir / "README.md").read_text()
    publisher = next(c for c in trainer.cycle_callbacks if isinstance(c, HubPublisher))
    assert publisher.pending == []  # refused, not queued for a retry


def test_the_same_dataset_within_the_limit_is_pushed(hub_server, tmp_path):
    _, history = copying_run(tmp_path, "allowed", privacy_max_closer_share=1.0, privacy_max_near_copy_share=None)
    pushed = load_dataset(DATASET_REPO, "cycle_1", split="train", token=TOKEN, cache_dir=str(tmp_path / "cache"))
    assert len(pushed) == history.cycles[1].num_accepted

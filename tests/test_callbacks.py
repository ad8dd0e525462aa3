"""Per-cycle callbacks: `HubPublisher` is one, a custom one runs once per saved cycle, `cycle_callbacks` replaces the
default publisher, and `report_to=["tensorboard"]` adds one TensorBoard step per cycle."""

import pytest
from tiny import make_trainer

from hf_active_synth import CycleCallback
from hf_active_synth.callbacks import TENSORBOARD_DIR, TensorBoardCycleCallback, cycle_scalars
from hf_active_synth.cycle import CYCLE_FILE, CycleResult, CycleStore
from hf_active_synth.hub import HubPublisher
from hf_active_synth.privacy import PrivacyAuditCallback


class Recorder(CycleCallback):
    """Records every call; inherits nothing but the protocol's no-op hooks."""

    def __init__(self):
        self.starts = 0
        self.calls = []

    def on_run_start(self):
        self.starts += 1

    def on_cycle_end(self, result, cycle_dir, history):
        # The cycle is complete on disk, and the history already holds it.
        assert (cycle_dir / CYCLE_FILE).is_file()
        assert history.cycles[-1] is result
        self.calls.append((result.cycle, cycle_dir, len(history.cycles)))


class OnlyCycleEnd:
    """A structural callback: both hooks, no base class."""

    def __init__(self):
        self.cycles = []

    def on_run_start(self):
        pass

    def on_cycle_end(self, result, cycle_dir, history):
        self.cycles.append(result.cycle)


def test_hub_publisher_is_a_cycle_callback(tmp_path):
    assert isinstance(HubPublisher(tmp_path), CycleCallback)
    assert isinstance(OnlyCycleEnd(), CycleCallback)


def test_default_callbacks_follow_the_publish_settings(tmp_path):
    # The privacy audit comes first, so the publisher's card and gate see each cycle's audit.
    audit, publisher = make_trainer(tmp_path, name="a").cycle_callbacks
    assert isinstance(audit, PrivacyAuditCallback)
    assert isinstance(publisher, HubPublisher) and publisher.cycle_metric == "eval_accuracy"
    assert make_trainer(tmp_path, name="b", publish_cycles=False, privacy_audit=False).cycle_callbacks == []


def test_a_custom_callback_is_called_once_per_cycle_with_its_directory(tmp_path):
    recorder, structural = Recorder(), OnlyCycleEnd()
    trainer = make_trainer(tmp_path, num_cycles=1)
    trainer.cycle_callbacks = [recorder, structural]
    trainer.run_cycles()
    store = CycleStore(tmp_path / "run")
    assert recorder.starts == 1
    assert recorder.calls == [(0, store.cycle_dir(0), 1), (1, store.cycle_dir(1), 2)]
    assert structural.cycles == [0, 1]
    # The given callbacks replace the default publisher: nothing was written in Hub layout.
    assert not (tmp_path / "run" / "hub").exists()


def test_tensorboard_logs_one_step_per_cycle_with_its_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(tmp_path, num_cycles=2, report_to=["tensorboard"], heldout_audit_members=2)
    (callback,) = [c for c in trainer.cycle_callbacks if isinstance(c, TensorBoardCycleCallback)]
    assert callback.log_dir == tmp_path / "run" / TENSORBOARD_DIR
    history = trainer.run_cycles()

    events = EventAccumulator(str(callback.log_dir))
    events.Reload()

    def logged(tag):
        return {event.step: event.value for event in events.Scalars(tag)}

    def approx(values):
        return {step: pytest.approx(value, rel=1e-6) for step, value in values.items()}

    assert logged("validation/accuracy") == approx({c.cycle: c.metric("eval_accuracy") for c in history.cycles})
    assert logged("synthetic/accepted") == {0: 0, 1: 6, 2: 6}
    synthesized = history.cycles[1:]
    assert logged("uncertainty_before/bald") == approx({c.cycle: c.uncertainty_before["bald"] for c in synthesized})
    assert logged("uncertainty_after/bald") == approx({c.cycle: c.uncertainty_after["bald"] for c in synthesized})
    audited = {c.cycle: c.label_audit["heldout_disagreement"]["bald"] for c in synthesized}
    assert logged("label_audit/heldout_disagreement/bald") == approx(audited)
    # The end-of-run summary says how to open them.
    assert callback.outputs() == {"TensorBoard": f"tensorboard --logdir {tmp_path / 'run' / 'runs'}"}


def test_cycle_scalars_flatten_the_audit_and_skip_what_is_not_a_number():
    result = CycleResult(
        1,
        {"eval_accuracy": 0.5},
        num_accepted=3,
        label_audit={"oracle_label_agreement": 0.75, "per_class": {"0": {"agreement": 1.0}}, "off_label_indices": [2]},
        heldout_uncertainty={"bald": float("nan")},
    )
    scalars = cycle_scalars(result)
    assert scalars["validation/accuracy"] == 0.5 and scalars["synthetic/accepted"] == 3
    assert scalars["label_audit/oracle_label_agreement"] == 0.75
    assert scalars["label_audit/per_class/0/agreement"] == 1.0
    assert not [tag for tag in scalars if "off_label" in tag or "heldout_uncertainty" in tag]

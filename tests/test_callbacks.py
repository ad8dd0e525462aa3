"""Per-cycle callbacks: `HubPublisher` is one, a custom one runs once per saved cycle, `cycle_callbacks` replaces the
default publisher."""

from tiny import make_trainer

from hf_active_synth import CycleCallback
from hf_active_synth.cycle import CYCLE_FILE, CycleStore
from hf_active_synth.hub import HubPublisher


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
    (publisher,) = make_trainer(tmp_path, name="a").cycle_callbacks
    assert isinstance(publisher, HubPublisher) and publisher.cycle_metric == "eval_accuracy"
    assert make_trainer(tmp_path, name="b", publish_cycles=False).cycle_callbacks == []


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

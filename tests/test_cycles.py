"""The active-synthesis loop: training, cycles, plateau stopping, resume, and model kinds."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import TinyMLP, WordSwapGenerator, make_args, make_bert, make_trainer, make_vector_dataset

from hf_active_synth import ActiveSynthesisTrainer
from hf_active_synth.cycle import CycleStore
from hf_active_synth.targeting import seed_examples


def test_training_changes_parameters(tmp_path):
    trainer = make_trainer(tmp_path)
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    changed = [k for k, v in trainer.model.named_parameters() if not torch.equal(v, before[k])]
    assert "classifier.weight" in changed and len(changed) > len(before) // 2


def test_run_cycles_records_a_complete_history(tmp_path):
    generator = WordSwapGenerator()
    trainer = make_trainer(tmp_path, generator, hub_token="hf_SECRETtoken123")
    history = trainer.run_cycles()
    assert [c.cycle for c in history.cycles] == [0, 1, 2]
    assert history.stop_reason == "completed 2 cycles"
    first = history.cycles[1]
    assert first.num_targets == 4 and first.candidates_generated == 4 * 3 * 3 // 2
    assert first.num_accepted == 6 and history.cycles[2].num_synthetic_total == 12
    assert list(first.filter_counts) == ["label_agreement", "exact_duplicate", "selected"]
    assert set(first.uncertainty_before) == {"entropy", "variance", "bald"}
    assert set(first.uncertainty_after) == {"entropy", "variance", "bald"}
    assert {"train", "estimate", "generate", "filter", "evaluate"} <= set(first.stage_seconds)
    assert first.peak_memory_mb > 0 and "eval_accuracy" in first.eval_metrics
    assert sum(first.accepted_per_class.values()) == 6
    # The generator was asked about the most uncertain real examples, with the estimator for guidance.
    request = generator.requests[0]
    assert request.estimator is trainer.estimator and request.seed_examples == seed_examples(request.targets)
    assert sum(t.num_samples for t in request.targets) == 6
    # Artifacts of every cycle are on disk, and the synthetic data carries provenance and scores.
    store = CycleStore(tmp_path / "run")
    assert store.completed_cycles() == [0, 1, 2]
    synthetic = store.load_synthetic(2)
    assert len(synthetic) == 12 and set(synthetic["synth_cycle"]) == {1, 2}
    assert {"synth_score", "synth_label_probability", "synth_target_uncertainty"} <= set(synthetic.column_names)
    assert synthetic.features["label"].names == ["negative", "positive"]
    assert (tmp_path / "run" / "cycle-2" / "checkpoint" / "model.safetensors").is_file()
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(saved["cycles"]) == 3 and saved["config"]["synthetic_loss_weight"] == 0.3
    assert "hf_SECRETtoken123" not in (tmp_path / "run" / "history.json").read_text()


class RecordingFilter:
    """Keeps everything, remembering the scored candidates it was shown."""

    name = "recording"

    def __call__(self, candidates, context):
        self.seen = candidates
        return candidates


def test_accepted_samples_are_the_most_uncertain_candidates(tmp_path):
    trainer = make_trainer(tmp_path, num_cycles=1)
    recorder = RecordingFilter()
    trainer.filters.append(recorder)
    trainer.run_cycles()
    accepted = CycleStore(tmp_path / "run").load_synthetic(1)
    scored = recorder.seen
    assert len(scored) > len(accepted)
    for target in trainer.generator.requests[0].targets:
        proposed = [s for s, t in zip(scored["synth_score"], scored["synth_target_id"]) if t == target.target_id]
        kept = [s for s, t in zip(accepted["synth_score"], accepted["synth_target_id"]) if t == target.target_id]
        assert len(kept) == target.num_samples
        # Nothing discarded beats what was kept: the kept ones are the top of their target's candidates.
        assert sorted(kept, reverse=True) == sorted(proposed, reverse=True)[: len(kept)]
    discarded_mean = (sum(scored["synth_score"]) - sum(accepted["synth_score"])) / (len(scored) - len(accepted))
    assert sum(accepted["synth_score"]) / len(accepted) > discarded_mean


# The comparison methods as override sets: each mechanism (which targets, guidance, selection) is its own switch.
SWITCHES = {
    "active_synthesis": {},
    "random_synthetic": {"target_strategy": "random", "guidance": False, "selection_strategy": "random"},
    "random_targets": {"target_strategy": "random"},
    "unguided_targeted": {"guidance": False},
}


def test_each_switch_changes_only_its_own_mechanism(tmp_path):
    requests, selections = {}, {}
    for method, overrides in SWITCHES.items():
        generator = WordSwapGenerator()
        trainer = make_trainer(tmp_path, generator, name=method, num_cycles=1, **overrides)
        trainer.run_cycles()
        (requests[method],) = generator.requests
        selections[method] = trainer.args.selection_strategy
    assert selections == {
        "active_synthesis": "top",
        "random_synthetic": "random",
        "random_targets": "top",
        "unguided_targeted": "top",
    }
    # Guidance iff `guidance`: random targets with guidance on still get the estimator; guidance off gets none.
    for method, request in requests.items():
        assert (request.estimator is not None) == SWITCHES[method].get("guidance", True), method
    # Every request carries its targets' examples as seed examples, random targets included (same prompt-building).
    for method, request in requests.items():
        assert request.seed_examples == seed_examples(request.targets) and request.seed_examples, method
    # Targets depend on `target_strategy` only (same seeds, so the same rows), not on guidance or selection.
    ids = {method: [(t.example_id, t.num_samples) for t in request.targets] for method, request in requests.items()}
    assert ids["active_synthesis"] == ids["unguided_targeted"]
    assert ids["random_synthetic"] == ids["random_targets"]
    assert ids["active_synthesis"] != ids["random_targets"]


def test_plateau_stops_early(tmp_path):
    # A learning rate of 0 never improves the model: with patience 1 the loop stops after cycle 1.
    trainer = make_trainer(tmp_path, num_cycles=4, plateau_patience=1, learning_rate=0.0)
    history = trainer.run_cycles()
    assert [c.cycle for c in history.cycles] == [0, 1]
    assert history.stop_reason.startswith("validation plateau")


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tmp_path):
    uninterrupted = make_trainer(tmp_path, name="full").run_cycles()

    crashing = make_trainer(tmp_path, WordSwapGenerator(fail_at_cycle=2), name="resumed")
    with pytest.raises(KeyboardInterrupt):
        crashing.run_cycles()
    store = CycleStore(tmp_path / "resumed")
    assert store.completed_cycles() == [0, 1]
    accepted_before_crash = store.load_synthetic(1)

    with pytest.raises(ValueError, match="resume=True"):
        make_trainer(tmp_path, name="resumed").run_cycles()
    resumed = make_trainer(tmp_path, name="resumed").run_cycles(resume=True)

    assert store.load_synthetic(1)["text"] == accepted_before_crash["text"]
    assert len(resumed.cycles) == len(uninterrupted.cycles) == 3
    for expected, actual in zip(uninterrupted.cycles, resumed.cycles):
        assert actual.eval_metrics == pytest.approx(expected.eval_metrics, rel=1e-5)
        assert actual.uncertainty_after == pytest.approx(expected.uncertainty_after, rel=1e-4)
        assert actual.num_synthetic_total == expected.num_synthetic_total
    full_synthetic = CycleStore(tmp_path / "full").load_synthetic(2)
    assert store.load_synthetic(2)["text"] == full_synthetic["text"]


def test_partial_cycle_directory_is_ignored_on_resume(tmp_path):
    trainer = make_trainer(tmp_path, num_cycles=1)
    trainer.run_cycles()
    (tmp_path / "run" / "cycle-2.partial").mkdir()
    assert CycleStore(tmp_path / "run").completed_cycles() == [0, 1]


def test_works_with_a_peft_wrapped_model(tmp_path):
    model = get_peft_model(make_bert(), LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS"))
    trainer = make_trainer(tmp_path, model=model, num_cycles=1, uncertainty_method="mc_dropout")
    before = {k: v.clone() for k, v in model.named_parameters() if v.requires_grad}
    history = trainer.run_cycles()
    assert len(history.cycles) == 2
    assert any(not torch.equal(v, before[k]) for k, v in model.named_parameters() if v.requires_grad)
    assert (tmp_path / "run" / "cycle-1" / "checkpoint" / "adapter_config.json").is_file()


def test_works_with_a_plain_module(tmp_path, caplog):
    class VectorGenerator:
        name = "vector-double"

        def generate(self, request):
            from datasets import Dataset

            rows = {
                k: []
                for k in (
                    "features",
                    "label",
                    "synth_cycle",
                    "synth_generator",
                    "synth_target_id",
                    "synth_target_label",
                    "synth_seed_example_ids",
                )
            }
            g = torch.Generator().manual_seed(request.seed)
            for target in request.targets:
                for _ in range(target.num_samples * request.candidates_per_sample):
                    vector = torch.tensor(target.example) + 0.3 * torch.randn(8, generator=g)
                    rows["features"].append(vector.tolist())
                    rows["label"].append(target.label)
                    rows["synth_cycle"].append(request.cycle)
                    rows["synth_generator"].append(self.name)
                    rows["synth_target_id"].append(target.target_id)
                    rows["synth_target_label"].append(target.label)
                    rows["synth_seed_example_ids"].append([target.example_id])
            return Dataset.from_dict(rows)

    args = make_args(tmp_path, input_column="features", num_cycles=1, learning_rate=1e-2)
    trainer = ActiveSynthesisTrainer(
        model=TinyMLP(),
        args=args,
        train_dataset=make_vector_dataset(32),
        eval_dataset=make_vector_dataset(32, seed=1),
        generator=VectorGenerator(),
    )
    with caplog.at_level("WARNING", logger="hf_active_synth.callbacks"):
        history = trainer.run_cycles()
    assert history.cycles[1].num_accepted == 6
    assert history.cycles[1].eval_metrics["eval_accuracy"] > 0.6
    # Vectors have no privacy distance: the run goes on without an audit, and says so.
    assert history.cycles[1].privacy_audit == {}
    assert any("No privacy audit" in record.getMessage() for record in caplog.records)


def test_works_with_an_image_classifier(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    model = ViTForImageClassification(
        ViTConfig(
            image_size=8,
            patch_size=4,
            num_channels=3,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=2,
            hidden_dropout_prob=0.1,
        )
    )
    processor = ViTImageProcessor(size={"height": 8, "width": 8})
    g = torch.Generator().manual_seed(0)
    images = [PILImage.fromarray((torch.rand(8, 8, 3, generator=g) * 255).byte().numpy()) for _ in range(16)]
    data = Dataset.from_dict(
        {"image": images, "label": [i % 2 for i in range(16)]},
        features=Features({"image": Image(), "label": ClassLabel(names=["x", "y"])}),
    )
    trainer = ActiveSynthesisTrainer(
        model=model,
        args=make_args(tmp_path, input_column="image"),
        train_dataset=data,
        eval_dataset=data,
        processing_class=processor,
    )
    before = model.classifier.weight.clone()
    trainer.train()
    assert not torch.equal(model.classifier.weight, before)
    assert "eval_accuracy" in trainer.evaluate()

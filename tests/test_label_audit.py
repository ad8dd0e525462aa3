"""The loop's independent audit and its hand-back of the best validation cycle."""

import json

import torch
from datasets import Dataset
from huggingface_hub import DatasetCardData
from safetensors.torch import load_file
from tiny import NEGATIVE, POSITIVE, WordSwapGenerator, make_args, make_bert, make_text_dataset, make_tokenizer

from hf_active_synth import ActiveSynthesisTrainer
from hf_active_synth.cards import render_dataset_card
from hf_active_synth.evaluation.audit import TextOracle

PLANTED_EVERY = 3


class MislabellingGenerator(WordSwapGenerator):
    """Test double: every third candidate is plainly of the other class (only its words) but keeps the label."""

    name = "mislabelling-double"

    def generate(self, request) -> Dataset:
        candidates = super().generate(request)
        words = {0: POSITIVE, 1: NEGATIVE}  # the *other* class's words

        def plant(row, index):
            if index % PLANTED_EVERY == 0:
                row[request.input_column] = " ".join(words[row[request.label_column]][:4])
            return row

        return candidates.map(plant, with_indices=True)


def unfiltered_trainer(args, generator, **kwargs) -> ActiveSynthesisTrainer:
    """The tiny BERT on 16 training and 16 validation rows, with no filter between generator and selection."""
    return ActiveSynthesisTrainer(
        model=make_bert(),
        args=args,
        train_dataset=make_text_dataset(16, seed=0),
        eval_dataset=make_text_dataset(16, seed=1),
        processing_class=make_tokenizer(),
        generator=generator,
        filters=[],
        **kwargs,
    )


def oracle() -> TextOracle:
    data = make_text_dataset(200, seed=11)
    return TextOracle().fit(data["text"], data["label"])


def test_the_audit_flags_planted_off_label_samples_and_goes_into_the_history(tmp_path):
    args = make_args(tmp_path, num_cycles=2, heldout_audit_members=2, selection_strategy="random")
    # No filters: keep the planted rows (they repeat, and a label filter may catch some).
    trainer = unfiltered_trainer(args, MislabellingGenerator(), label_oracle=oracle())
    history = trainer.run_cycles()
    store_history = json.loads((tmp_path / "run" / "history.json").read_text())
    for cycle in history.cycles[1:]:
        audit = cycle.label_audit
        number = cycle.cycle
        accepted = trainer.synthetic_dataset.filter(lambda row, n=number: row["synth_cycle"] == n)
        planted = [i for i, text in enumerate(accepted["text"]) if set(text.split()) <= set(POSITIVE + NEGATIVE)]
        assert planted, "the double planted no off-label sample among the accepted ones"
        assert set(planted) <= set(audit["off_label_indices"])  # every planted sample is flagged
        assert audit["oracle_label_agreement"] <= 1 - len(planted) / len(accepted)
        assert audit["num_samples"] == len(accepted)
        assert audit["heldout_disagreement"]["num_members"] == 2
        assert audit["heldout_disagreement"]["bald"] >= 0
        assert store_history["cycles"][cycle.cycle]["label_audit"] == audit
    # Held-out real rows' uncertainty is measured after every cycle, cycle 0 included.
    assert all(set(c.heldout_uncertainty) == {"entropy", "variance", "bald"} for c in history.cycles)
    card = str(
        render_dataset_card(
            repo_id="user/synthetic",
            history=history.cycles,
            configs={1: "cycle_1", 2: "cycle_2"},
            features=trainer.synthetic_dataset.features,
            card_data=DatasetCardData(),
        )
    )
    assert "## Independent label audit" in card
    cycle_1 = history.cycles[1].label_audit
    assert f"| 1 | {cycle_1['oracle_label_agreement']:.1%} of {cycle_1['num_samples']} |" in card


class AllWrongGenerator(MislabellingGenerator):
    """Test double: every candidate is the other class's words under the target's label (poison for training)."""

    name = "all-wrong-double"

    def generate(self, request) -> Dataset:
        candidates = WordSwapGenerator.generate(self, request)
        words = {0: POSITIVE, 1: NEGATIVE}
        return candidates.map(lambda row: {**row, "text": " ".join(words[row["label"]][:4])})


def test_run_cycles_hands_back_the_best_validation_cycle(tmp_path):
    # Heavily weighted, mislabelled synthetic data lowers validation, so the best cycle is not the last.
    args = make_args(tmp_path, num_cycles=2, synthetic_loss_weight=3.0, synthetic_samples_per_cycle=12)
    trainer = unfiltered_trainer(args, AllWrongGenerator())
    history = trainer.run_cycles()
    accuracies = [c.metric("eval_accuracy") for c in history.cycles]
    best = accuracies.index(max(accuracies))
    assert best != len(accuracies) - 1, f"precondition: the poisoned cycles should lower validation, {accuracies}"
    assert history.best_validation_cycle == history.loaded_cycle == best
    assert history.cycles_lowering_validation == [
        c for c in range(1, len(accuracies)) if accuracies[c] < accuracies[c - 1]
    ]
    # The trainer's model is the best cycle's: its weights are that checkpoint's, and it scores that accuracy.
    saved_weights = load_file(tmp_path / "run" / f"cycle-{best}" / "checkpoint" / "model.safetensors")
    model_weights = trainer.model.state_dict()
    assert all(torch.equal(model_weights[name], tensor) for name, tensor in saved_weights.items())
    assert trainer.evaluate()["eval_accuracy"] == accuracies[best]
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert saved["best_validation_cycle"] == best

"""A cold start (#12): the first `random_target_cycles` synthesis cycles target random rows, the later ones by
`target_strategy`; everything else about those cycles is unchanged."""

import dataclasses

import pytest
from tiny import WordSwapGenerator, make_args, make_bert, make_text_dataset, make_tokenizer

from hf_active_synth import ActiveSynthesisConfig, ActiveSynthesisTrainer
from hf_active_synth.cycle import CycleStore
from hf_active_synth.targeting import TargetingSettings, choose_targets


def test_the_first_cycles_target_random_rows_and_the_later_ones_the_uncertain_ones(tmp_path):
    trainer = ActiveSynthesisTrainer(
        model=make_bert(),
        args=make_args(tmp_path, num_cycles=2, random_target_cycles=1),
        train_dataset=make_text_dataset(24),
        eval_dataset=make_text_dataset(24, seed=1),
        processing_class=make_tokenizer(),
        generator=WordSwapGenerator(),
    )
    history = trainer.run_cycles()
    assert [cycle.num_accepted for cycle in history.cycles[1:]] == [6, 6]
    store = CycleStore(tmp_path / "run")
    uncertain = TargetingSettings.from_config(trainer.args, trainer.num_labels)
    random = dataclasses.replace(uncertain, target_strategy="random")

    def chosen(settings, cycle):
        logits = store.load_pool_logits(cycle - 1)  # targets come from the previous cycle's estimator
        targets = choose_targets(logits, trainer.pool_dataset, settings, seed=trainer._stage_seed(cycle, "select"))
        return [(t.example_id, t.label, t.num_samples) for t in targets]

    requested = [[(t.example_id, t.label, t.num_samples) for t in r.targets] for r in trainer.generator.requests]
    assert requested[0] == chosen(random, 1) != chosen(uncertain, 1)
    assert requested[1] == chosen(uncertain, 2) != chosen(random, 2)


@pytest.mark.parametrize("bad", [-1, 1.5])
def test_a_negative_or_fractional_count_is_refused(bad):
    with pytest.raises(ValueError, match="random_target_cycles"):
        ActiveSynthesisConfig(output_dir="unused", random_target_cycles=bad)

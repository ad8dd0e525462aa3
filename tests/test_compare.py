"""The comparison runner: every baseline through the same loop, a report at the end."""

import json

from tiny import WordSwapGenerator, make_args, make_bert, make_text_dataset, make_tokenizer

from hf_active_synth import ActiveSynthesisTrainer
from hf_active_synth.cycle import CycleStore
from hf_active_synth.evaluation.compare import METHODS, run_comparison


def test_comparison_runs_every_method_and_writes_a_report(tmp_path):
    pool = make_text_dataset(20, seed=7)
    built = []

    def factory(config):
        built.append(config)
        return ActiveSynthesisTrainer(
            model=make_bert(seed=config.seed),
            args=config,
            train_dataset=make_text_dataset(16, seed=0),
            eval_dataset=make_text_dataset(16, seed=1),
            processing_class=make_tokenizer(),
            generator=WordSwapGenerator(),
        )

    config = make_args(tmp_path, num_cycles=1, synthetic_samples_per_cycle=4, num_train_epochs=2)
    report = run_comparison(
        factory,
        config,
        tmp_path / "compare",
        test_dataset=make_text_dataset(16, seed=2),
        acquisition_pool=pool,
        seeds=(0,),
        corruptions={"word_dropout": [2]},
    )
    assert report.is_file() and (tmp_path / "compare" / "accuracy_vs_synthetic.png").is_file()
    text = report.read_text()
    for method in METHODS:
        assert method in text
    by_method = {c.output_dir.split("/")[-2]: c for c in built}
    assert by_method["real_only"].synthetic_samples_per_cycle == 0
    assert not by_method["random_synthetic"].targeted
    assert by_method["bald_active_learning"].synthetic_loss_weight == 1.0
    # BALD active learning acquired real pool rows, with their true labels.
    acquired = CycleStore(tmp_path / "compare" / "bald_active_learning" / "seed-0").load_synthetic(1)
    pool_rows = set(zip(pool["text"], pool["label"]))
    assert len(acquired) == 4 and all(row in pool_rows for row in zip(acquired["text"], acquired["label"]))
    real_only = json.loads((tmp_path / "compare" / "real_only" / "seed-0" / "history.json").read_text())
    assert [c["num_synthetic_total"] for c in real_only["cycles"]] == [0, 0]
    final = json.loads((tmp_path / "compare" / "active_synthesis" / "seed-0" / "final_metrics.json").read_text())
    assert 0.0 <= final["clean_accuracy"] <= 1.0 and "2" in final["robustness"]["word_dropout"]

"""LoRA-ensemble diversity options (issue 13): members differ from the start, bootstraps are seeded per member, the
shared-trunk scoring still equals one full pass per member, and bad options fail with the fix named."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from peft import LoraConfig
from tiny import make_bert, make_text_dataset, make_tokenizer

from hf_active_synth import ActiveSynthesisConfig, ActiveSynthesisTrainer
from hf_active_synth.acquisition import bald
from hf_active_synth.data import to_model_inputs
from hf_active_synth.uncertainty import LoRAEnsemble, MemberDataContext, bootstrap_rows, default_lora_config


def _trainer(tmp_path, layers: int = 3, **overrides) -> ActiveSynthesisTrainer:
    settings = dict(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,
        num_train_epochs=1,
        learning_rate=5e-3,
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        max_length=16,
        seed=0,
    )
    settings.update(overrides)
    return ActiveSynthesisTrainer(
        model=make_bert(layers=layers),
        args=ActiveSynthesisConfig(**settings),
        train_dataset=make_text_dataset(24),
        processing_class=make_tokenizer(),
    )


def _pool(trainer, rows: int = 12):
    return to_model_inputs(make_text_dataset(rows, seed=5), trainer.preprocess, label_column=None, is_synthetic=False)


def _ids(dataset) -> list[list[int]]:
    return [row.tolist() for row in dataset["input_ids"]]


def _untrained(trainer):
    """The trainer with member training switched off: what `fit` leaves is the members' initialisation."""
    trainer.train_member = lambda model, **kwargs: model
    return trainer


def _sequential(estimator):
    reference = copy.copy(estimator)
    reference.share_trunk, reference.first_token_only = False, False
    return reference.refresh()


@pytest.mark.parametrize(
    "options",
    [{"adapter_init": "random"}, {"head_init": "random"}, {"adapter_init": "random", "num_adapted_layers": 2}],
    ids=["random-adapters", "random-heads", "random-adapters-2-blocks"],
)
def test_members_differ_before_any_training(tmp_path, options):
    trainer = _trainer(tmp_path, num_train_epochs=3)
    trainer.train()  # a trained main model (confident logits), then members are built but never trained
    trainer = _untrained(trainer)
    pool = _pool(trainer)
    same = LoRAEnsemble(num_members=3, seed=0).fit(trainer).predict(pool)
    # peft's default (B = 0, trained-head copies): every untrained member is the base model, BALD exactly 0.
    assert torch.equal(same[..., 0], same[..., 1]) and torch.equal(same[..., 1], same[..., 2])
    logits = LoRAEnsemble(num_members=3, seed=0, **options).fit(trainer).predict(pool)
    assert bald(logits).min() > 0
    assert (logits.amax(dim=-1) - logits.amin(dim=-1)).max() > 1e-2
    # Seeded: the same options and seed give the same members.
    torch.testing.assert_close(logits, LoRAEnsemble(num_members=3, seed=0, **options).fit(trainer).predict(pool))


def test_gaussian_init_keeps_b_zero_and_rank_is_honoured(tmp_path):
    trainer = _untrained(_trainer(tmp_path))
    estimator = LoRAEnsemble(num_members=2, adapter_init="gaussian", rank=3, seed=0).fit(trainer)
    layer = estimator.model_.get_base_model().bert.encoder.layer[2].attention.self.query
    assert layer.lora_A["member_0"].weight.shape[0] == 3
    assert torch.count_nonzero(layer.lora_B["member_1"].weight) == 0
    assert not torch.equal(layer.lora_A["member_0"].weight, layer.lora_A["member_1"].weight)


def test_random_heads_are_reinitialised_per_member(tmp_path):
    trainer = _untrained(_trainer(tmp_path))
    trained_head = trainer.model.classifier.weight.detach().clone()
    estimator = LoRAEnsemble(num_members=3, head_init="random", seed=4).fit(trainer)
    heads = estimator.model_.get_base_model().classifier.modules_to_save
    weights = [heads[f"member_{k}"].weight for k in range(3)]
    assert all(not torch.equal(weight, trained_head) for weight in weights)
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    torch.testing.assert_close(trainer.model.classifier.weight, trained_head)  # the trained model is untouched


def test_bootstrap_is_each_members_own_seeded_resample(tmp_path):
    trainer = _trainer(tmp_path)
    assert isinstance(trainer, MemberDataContext)
    real = _ids(trainer.train_dataset)
    seen = []
    original = trainer.train_member

    def spy(model, **kwargs):
        seen.append(_ids(trainer.train_dataset))
        return original(model, **kwargs)

    trainer.train_member = spy
    estimator = LoRAEnsemble(num_members=3, bootstrap=True, seed=7).fit(trainer)
    rows = estimator.member_rows_
    assert [len(member) for member in rows] == [24, 24, 24]
    assert all(len(set(member)) < 24 for member in rows)  # drawn with replacement
    assert rows[0] != rows[1] != rows[2]
    assert rows == [bootstrap_rows(24, 7 + k) for k in range(3)]  # member k's resample comes from seed + k
    # Each member really trained on its resample, and the trainer's rows are restored afterwards.
    for member_rows, member_inputs in zip(rows, seen):
        assert member_inputs == [real[i] for i in member_rows]
    assert _ids(trainer.train_dataset) == real
    assert LoRAEnsemble(num_members=3, bootstrap=True, seed=7).fit(trainer).member_rows_ == rows
    assert LoRAEnsemble(num_members=3, bootstrap=True, seed=8).fit(trainer).member_rows_ != rows
    assert LoRAEnsemble(num_members=2, seed=7).fit(trainer).member_rows_ == [None, None]


def test_member_epochs_override_the_trainers(tmp_path):
    trainer = _trainer(tmp_path, member_num_train_epochs=1, member_learning_rate=2e-3)
    calls = []
    original = trainer.train_member

    def spy(model, **kwargs):
        calls.append(kwargs.get("training_args"))
        return original(model, **kwargs)

    trainer.train_member = spy
    LoRAEnsemble(num_members=2, num_train_epochs=3, seed=0).fit(trainer)
    assert [args.num_train_epochs for args in calls] == [3, 3]
    assert [args.seed for args in calls] == [0, 1]
    assert all(args.learning_rate == 2e-3 and args.save_strategy == "no" for args in calls)


def test_contexts_without_row_control_train_without_bootstrap_and_say_so(tmp_path, caplog):
    trainer = _trainer(tmp_path)

    class FoldLike:  # a plain FitContext, like a cross-fitting fold: no restrict_real_rows
        num_labels, data_collator, args, model_init = 2, trainer.data_collator, trainer.args, None
        current_model = staticmethod(trainer.current_model)
        sample_model_inputs = staticmethod(trainer.sample_model_inputs)

        def train_member(self, model, *, seed, name):
            return trainer.train_member(model, seed=seed, name=name)

    assert not isinstance(FoldLike(), MemberDataContext)
    with caplog.at_level(logging.WARNING, logger="hf_active_synth.uncertainty.lora_ensemble"):
        estimator = LoRAEnsemble(num_members=2, bootstrap=True, seed=0).fit(FoldLike())
    assert estimator.member_rows_ == [None, None]
    assert "restrict_real_rows" in caplog.text


def test_diverse_options_keep_the_shared_trunk_exact(tmp_path):
    """Random adapters and heads, bootstrap and two adapted blocks: merged and mixed-adapter scoring over the shared
    trunk give the logits of one full pass per member, and the trunk below the lowest adapted block runs once."""
    trainer = _trainer(tmp_path, num_train_epochs=2)
    estimator = LoRAEnsemble(
        num_members=3, adapter_init="random", head_init="random", bootstrap=True, num_adapted_layers=2, seed=0
    ).fit(trainer)
    blocks = estimator.model_.get_base_model().bert.encoder.layer
    assert estimator.split_module_ is blocks[1] and estimator.later_blocks_ == [blocks[2]]
    pool = _pool(trainer)
    merged = estimator.predict(pool)
    assert not torch.allclose(merged[..., 0], merged[..., 1], atol=1e-3)
    mixed = copy.copy(estimator)
    mixed.scoring = "mixed_adapter_batch"
    reference = _sequential(estimator).predict(pool)
    torch.testing.assert_close(merged, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mixed.refresh().predict(pool), reference, atol=1e-5, rtol=1e-4)
    rows = {"bottom": [], "split": [], "top": []}
    for key, block in zip(rows, blocks):
        block.register_forward_hook(lambda m, a, o, key=key: rows[key].append(a[0].shape[0]))
    estimator.member_logits(trainer.sample_model_inputs(num_rows=5))
    assert rows == {"bottom": [5], "split": [15], "top": [15]}


def test_first_token_only_holds_with_diverse_single_block_options(tmp_path):
    trainer = _trainer(tmp_path)
    estimator = LoRAEnsemble(
        num_members=3, adapter_init="random", head_init="random", bootstrap=True, first_token_only=True, seed=0
    ).fit(trainer)
    pool = _pool(trainer)
    torch.testing.assert_close(estimator.predict(pool), _sequential(estimator).predict(pool), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"adapter_init": "xavier"}, "adapter_init must be one of"),
        ({"head_init": "zeros"}, "head_init must be one of"),
        ({"rank": 0}, "rank must be an int >= 1"),
        ({"num_adapted_layers": 0}, "num_adapted_layers must be an int >= 1"),
        ({"num_train_epochs": 0}, "num_train_epochs must be > 0"),
    ],
)
def test_bad_options_raise_naming_the_fix(options, message):
    with pytest.raises(ValueError, match=message):
        LoRAEnsemble(num_members=2, **options)


def test_random_heads_need_a_head_copy(tmp_path):
    trainer = _untrained(_trainer(tmp_path))
    config = LoraConfig(r=2, target_modules=["query", "value"])  # no modules_to_save: no per-member head
    with pytest.raises(ValueError, match="modules_to_save"):
        LoRAEnsemble(num_members=2, lora_config=config, head_init="random").fit(trainer)
    with pytest.raises(ValueError, match="adapter_init must be one of"):
        default_lora_config(trainer.model, num_labels=2, adapter_init="kaiming")


def test_the_diverse_preset_is_an_uncertainty_method(tmp_path):
    from hf_active_synth.uncertainty import make_estimator

    config = ActiveSynthesisConfig(output_dir=str(tmp_path), uncertainty_method="lora_ensemble_diverse")
    estimator = make_estimator(config.uncertainty_method, num_members=3, seed=7)
    assert isinstance(estimator, LoRAEnsemble) and estimator.seed == 7
    assert (estimator.adapter_init, estimator.head_init, estimator.bootstrap, estimator.num_adapted_layers) == (
        "random",
        "random",
        True,
        3,
    )

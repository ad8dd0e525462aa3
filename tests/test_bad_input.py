"""Bad input fails early with an error that names the problem and the fix; nothing written earlier is lost."""

import pytest
import torch
from datasets import Dataset
from tiny import WordSwapGenerator, make_args, make_bert, make_text_dataset, make_tokenizer, make_trainer

from hf_active_synth import ActiveSynthesisConfig, ActiveSynthesisTrainer
from hf_active_synth.cycle import CycleStore


def build(tmp_path, train=None, model=None, **overrides):
    return ActiveSynthesisTrainer(
        model=model if model is not None else make_bert(),
        args=make_args(tmp_path, **overrides),
        train_dataset=train if train is not None else make_text_dataset(16),
        eval_dataset=make_text_dataset(8, seed=1),
        processing_class=make_tokenizer(),
        generator=WordSwapGenerator(),
    )


def test_missing_label_column_names_the_fix(tmp_path):
    data = make_text_dataset(8).rename_column("label", "sentiment")
    with pytest.raises(ValueError, match=r"no column 'label'.*label_column.*rename_column"):
        build(tmp_path, train=data)


def test_misnamed_input_column(tmp_path):
    with pytest.raises(ValueError, match=r"no column 'sentence'.*input_column"):
        build(tmp_path, input_column="sentence")


def test_empty_dataset(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        build(tmp_path, train=make_text_dataset(8).select([]))


def test_labels_outside_num_labels(tmp_path):
    data = Dataset.from_dict({"text": ["good film", "bad film"], "label": [0, 5]})
    with pytest.raises(ValueError, match=r"labels \[5\] outside \[0, 2\)"):
        build(tmp_path, train=data)


def test_string_labels(tmp_path):
    data = Dataset.from_dict({"text": ["good film", "bad film"], "label": ["pos", "neg"]})
    with pytest.raises(ValueError, match="class_encode_column"):
        build(tmp_path, train=data)


def test_not_a_dataset(tmp_path):
    with pytest.raises(TypeError, match="datasets.Dataset"):
        build(tmp_path, train={"text": ["a"], "label": [0]})


def test_model_without_logits_fails_before_training(tmp_path):
    class Embedder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(64, 4)

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            return {"embeddings": self.embedding(input_ids)}

    data = make_text_dataset(8)
    trainer = ActiveSynthesisTrainer(
        model=Embedder(),
        args=make_args(tmp_path),
        train_dataset=data,
        eval_dataset=data,
        processing_class=make_tokenizer(),
        generator=WordSwapGenerator(),
    )
    with pytest.raises(TypeError, match="no logits"):
        trainer.run_cycles()
    assert not (tmp_path / "run" / "cycle-0").exists()


def test_generator_returning_nothing_keeps_earlier_cycles(tmp_path):
    trainer = make_trainer(tmp_path, WordSwapGenerator(empty=True), num_cycles=1)
    with pytest.raises(ValueError, match="returned no candidates"):
        trainer.run_cycles()
    assert CycleStore(tmp_path / "run").completed_cycles() == [0]


def test_generator_rows_without_labels(tmp_path):
    trainer = make_trainer(tmp_path, WordSwapGenerator(drop_label=True), num_cycles=1)
    with pytest.raises(ValueError, match=r"without the column\(s\) \['label'\]"):
        trainer.run_cycles()
    assert CycleStore(tmp_path / "run").completed_cycles() == [0]


def test_missing_generator_fails_before_training(tmp_path):
    trainer = ActiveSynthesisTrainer(
        model=make_bert(),
        args=make_args(tmp_path),
        train_dataset=make_text_dataset(8),
        eval_dataset=make_text_dataset(8),
        processing_class=make_tokenizer(),
    )
    with pytest.raises(ValueError, match="needs a generator"):
        trainer.run_cycles()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("synthetic_loss_weight", -0.1, "synthetic_loss_weight"),
        ("ensemble_size", 1, "ensemble_size"),
        ("num_cycles", 0, "num_cycles"),
        ("acquisition_function", "entropyy", "acquisition_function"),
        ("uncertainty_method", "bayes", "uncertainty_method"),
        ("push_cycles_to_hub", True, "hub_model_id"),
    ],
)
def test_config_validation(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        ActiveSynthesisConfig(output_dir=str(tmp_path), **{field: value})

"""`LoRAEnsemble` token-0 scoring by default (issue 16): on exactly for the allow-listed token-0 heads, where it gives
the plain merged path's logits; off, silently, for every other model; `True` and `False` still force it."""

from __future__ import annotations

import dataclasses
import importlib
import logging
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
    default_data_collator,
)

from hf_active_synth.uncertainty import LoRAEnsemble, default_lora_config
from hf_active_synth.uncertainty.lora_scoring import TOKEN0_HEADS, token0_head_blocker

VOCAB, HIDDEN, ROWS, LENGTH = 40, 16, 6, 10
_SMALL = dict(vocab_size=VOCAB, num_attention_heads=2, max_position_embeddings=32, num_labels=3)


def _bert() -> nn.Module:
    return BertForSequenceClassification(
        BertConfig(hidden_size=HIDDEN, num_hidden_layers=2, intermediate_size=32, **_SMALL)
    )


def _roberta() -> nn.Module:
    config = RobertaConfig(hidden_size=HIDDEN, num_hidden_layers=2, intermediate_size=32, pad_token_id=1, **_SMALL)
    return RobertaForSequenceClassification(config)


def _electra() -> nn.Module:
    config = ElectraConfig(hidden_size=HIDDEN, embedding_size=8, num_hidden_layers=2, intermediate_size=32, **_SMALL)
    return ElectraForSequenceClassification(config)


def _distilbert() -> nn.Module:
    config = DistilBertConfig(
        vocab_size=VOCAB, dim=HIDDEN, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=32, num_labels=3
    )
    return DistilBertForSequenceClassification(config)


class _MeanPooler(nn.Module):
    """A pooler that reads every token: with it, computing token 0 alone would change the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states.mean(dim=1)))


def _bert_with_mean_pooler() -> nn.Module:
    model = _bert()
    model.bert.pooler = _MeanPooler()
    return model


class _Context:
    """The least `FitContext` for `LoRAEnsemble.fit`: members are not trained (random A and B make them differ)."""

    num_labels = 3
    data_collator = staticmethod(default_data_collator)
    args = SimpleNamespace(per_device_eval_batch_size=4, device=torch.device("cpu"), disable_tqdm=True)
    model_init = None

    def __init__(self, model: nn.Module):
        self.model = model.eval()

    def current_model(self) -> nn.Module:
        return self.model

    def train_member(self, model: nn.Module, *, seed: int, name: str) -> nn.Module:
        return model


def _pool() -> Dataset:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, VOCAB, (ROWS, LENGTH), generator=generator)
    lengths = torch.tensor([LENGTH, 4, 7, LENGTH, 2, 9])  # padded rows: the attention mask matters
    attention_mask = (torch.arange(LENGTH)[None] < lengths[:, None]).long()
    return Dataset.from_dict({"input_ids": input_ids, "attention_mask": attention_mask}).with_format("torch")


def _fit(model: nn.Module, num_adapted_layers: int = 1, **settings) -> LoRAEnsemble:
    torch.manual_seed(0)
    config = default_lora_config(model, num_labels=3, num_adapted_layers=num_adapted_layers)
    config = dataclasses.replace(config, init_lora_weights=False)
    return LoRAEnsemble(num_members=3, lora_config=config, seed=0, **settings).fit(_Context(model))


def _variant(estimator: LoRAEnsemble, **settings) -> LoRAEnsemble:
    """The fitted estimator with other settings (same adapters; `refresh` re-plans)."""
    variant = LoRAEnsemble(estimator.num_members, lora_config=estimator.lora_config, seed=estimator.seed, **settings)
    variant.__dict__.update({key: value for key, value in vars(estimator).items() if key.endswith("_")})
    return variant.refresh()


def _last_block_tokens(estimator: LoRAEnsemble, pool: Dataset) -> set[int]:
    """Token counts the last block's outputs had while `estimator` scored `pool`."""
    tokens: set[int] = set()
    handle = estimator.split_module_.register_forward_hook(lambda module, args, output: tokens.add(output.shape[1]))
    try:
        estimator.predict(pool)
    finally:
        handle.remove()
    return tokens


@pytest.mark.parametrize("build", [_bert, _roberta, _electra], ids=["bert", "roberta", "electra"])
def test_auto_token0_is_on_for_token0_heads_and_matches_the_plain_path(build):
    auto = _fit(build())
    assert auto.first_token_only is None and auto.first_token_only_ is True
    plain = _variant(auto, first_token_only=False)
    assert plain.first_token_only_ is False
    pool = _pool()
    assert _last_block_tokens(auto, pool) == {1}  # the token-0 path really ran
    assert _last_block_tokens(plain, pool) == {LENGTH}
    logits = auto.predict(pool)
    assert logits.shape == (ROWS, 3, 3) and not torch.allclose(logits[..., 0], logits[..., 1], atol=1e-3)
    torch.testing.assert_close(logits, plain.predict(pool), atol=1e-5, rtol=1e-4)
    # And against one full pass per member (no shared trunk, no merged weights).
    torch.testing.assert_close(logits, _variant(auto, share_trunk=False).predict(pool), atol=1e-5, rtol=1e-4)


def test_auto_token0_gradients_match_the_plain_path():
    auto = _fit(_bert())
    plain = _variant(auto, first_token_only=False)
    batch = default_data_collator([_pool()[i] for i in range(4)])
    embeddings = auto.model_.get_base_model().bert.embeddings.word_embeddings(batch.pop("input_ids")).detach()
    weights = torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(1))
    gradients = []
    for estimator in (auto, plain):
        inputs_embeds = embeddings.clone().requires_grad_(True)
        (estimator.member_logits({**batch, "inputs_embeds": inputs_embeds}) * weights).sum().backward()
        gradients.append(inputs_embeds.grad)
    assert gradients[0].abs().sum() > 0
    torch.testing.assert_close(gradients[0], gradients[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (_bert_with_mean_pooler, "bert.pooler is a _MeanPooler"),
        (_distilbert, "BERT-family encoder layers only"),  # token-0 head, but not a BERT-style block
    ],
    ids=["bert-mean-pooler", "distilbert"],
)
def test_auto_token0_is_off_silently_where_it_is_not_exact(build, reason, caplog):
    with caplog.at_level(logging.DEBUG, logger="hf_active_synth.uncertainty.lora_ensemble"):
        auto = _fit(build())
    assert auto.first_token_only_ is False
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert any(reason in record.getMessage() for record in caplog.records)
    pool = _pool()
    logits = auto.predict(pool)
    torch.testing.assert_close(logits, _variant(auto, share_trunk=False).predict(pool), atol=1e-5, rtol=1e-4)
    if build is _bert_with_mean_pooler:
        # Why the allow-list checks the pooler: forcing token 0 here runs, but changes the logits.
        forced = _variant(auto, first_token_only=True)
        assert (forced.predict(pool) - logits).abs().max() > 1e-3


def test_auto_token0_is_off_for_other_scoring_and_settings():
    auto = _fit(_bert())
    assert _variant(auto, scoring="mixed_adapter_batch").first_token_only_ is False
    assert _variant(auto, share_trunk=False).first_token_only_ is False
    two_blocks = _fit(_bert(), num_adapted_layers=2)
    assert two_blocks.first_token_only_ is False  # the adapted block is not the last one
    with pytest.raises(ValueError, match="last block"):
        _variant(two_blocks, first_token_only=True)


def test_token0_head_allow_list():
    assert token0_head_blocker(_bert()) is None
    assert token0_head_blocker(_roberta()) is None
    assert token0_head_blocker(_distilbert()) is None  # the head qualifies; the blocks do not (see above)
    gpt2 = GPT2ForSequenceClassification(
        GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=1, n_head=2, n_positions=32, num_labels=3)
    )
    assert "not a known token-0" in token0_head_blocker(gpt2)  # pools the last non-padding token

    class MyBert(BertForSequenceClassification):  # a subclass may override forward: not trusted
        pass

    assert "not a known token-0" in token0_head_blocker(MyBert(_bert().config))
    assert "not a known token-0" in token0_head_blocker(nn.Linear(2, 2))
    bert = _bert()
    bert.bert.pooler = None
    assert "NoneType" in token0_head_blocker(bert)
    # Every entry names a real transformers class and, where listed, the class of its reading module.
    for model_name, (_path, reader) in TOKEN0_HEADS.items():
        for qualified in (model_name, reader):
            if qualified is not None:
                module, name = qualified.rsplit(".", 1)
                assert isinstance(getattr(importlib.import_module(module), name), type), qualified

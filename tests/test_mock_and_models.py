"""The built-in mock provider and the models endpoints, through the real proxy."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import aiohttp
import openai
import pytest

from llmproxy.providers import mock

MOCK = """
providers:
  local: {type: mock}
  slow: {type: mock, latency: 0.01, tokens_per_second: 1000}
  fixed: {type: mock, reply: "always this"}
models:
  echo: {deployments: [{provider: local, model: echo-1}]}
  slow: {deployments: [{provider: slow, model: echo-2}]}
  fixed: {deployments: [{provider: fixed, model: fixed-1}]}
  "org/embed-v1": {deployments: [{provider: local, model: emb}]}
"""


async def test_mock_echoes_the_last_user_message(start_proxy, openai_client):
    client = openai_client(await start_proxy(MOCK))
    r = await client.chat.completions.create(
        model="echo",
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "first"},
                  {"role": "assistant", "content": "ok"},
                  {"role": "user", "content": [{"type": "text", "text": "hello mock world"}]}],
    )
    assert r.choices[0].message.content == "hello mock world"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (7, 3, 10)


@pytest.mark.parametrize("model", ["echo", "slow"])
async def test_mock_streams_with_usage(start_proxy, openai_client, model):
    client = openai_client(await start_proxy(MOCK))
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "a b c d"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c d"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_mock_fixed_reply_and_embeddings(start_proxy, openai_client):
    client = openai_client(await start_proxy(MOCK))
    r = await client.chat.completions.create(model="fixed", messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == "always this"
    e1 = await client.embeddings.create(model="org/embed-v1", input=["same", "other"])
    e2 = await client.embeddings.create(model="org/embed-v1", input="same")
    assert e1.data[0].embedding == e2.data[0].embedding != e1.data[1].embedding
    assert len(e1.data[0].embedding) == 16
    # The SDK asks for base64 on the wire by default and decodes it itself;
    # asked for explicitly, the client gets the base64 string of float32s.
    e3 = await client.embeddings.create(model="org/embed-v1", input="same", encoding_format="base64")
    raw = base64.b64decode(e3.data[0].embedding)  # type: ignore[arg-type]
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(e2.data[0].embedding, rel=1e-6)


async def test_models_list_and_get(start_proxy, openai_client):
    client = openai_client(await start_proxy(MOCK))
    ids = [m.id async for m in client.models.list()]
    assert ids == ["echo", "slow", "fixed", "org/embed-v1"]
    model = await client.models.retrieve("org/embed-v1")
    assert model.id == "org/embed-v1" and model.owned_by == "llmproxy"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nope")


def test_split_tokens_round_trips():
    for text in ["", "a", "a b", " lead", "trail ", "a  b   c"]:
        assert "".join(mock.split_tokens(text)) == text


# --------------------------------------------------------------------------- bounded by the mock, not by the client

EXAMPLE = Path(__file__).resolve().parent.parent / "configs" / "llmproxy.yaml"


async def post_json(url: str, path: str, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url + path, json=body) as r:
            return r.status, await r.json()


@pytest.mark.parametrize("dims", [4611686018427387904, 8193, 0, -1, 2.5, "16", True])
async def test_example_config_refuses_embedding_dimensions_out_of_range(start_proxy, dims):
    proxy = await start_proxy.from_file(str(EXAMPLE))
    status, doc = await post_json(proxy.url, "/v1/embeddings",
                                  {"model": "text-embedding-3-small", "input": "hi", "dimensions": dims})
    assert status == 400, doc
    assert doc["error"]["param"] == "dimensions" and doc["error"]["type"] == "invalid_request_error"
    assert "8192" in doc["error"]["message"] and len(doc["error"]["message"]) < 200
    # The proxy is still answering, and the largest allowed size works.
    status, doc = await post_json(proxy.url, "/v1/embeddings",
                                  {"model": "text-embedding-3-small", "input": "hi", "dimensions": 8192})
    assert status == 200 and len(doc["data"][0]["embedding"]) == 8192


async def test_example_config_bounds_embedding_inputs_and_reads_a_token_array_as_one(start_proxy):
    proxy = await start_proxy.from_file(str(EXAMPLE))
    status, doc = await post_json(proxy.url, "/v1/embeddings",
                                  {"model": "text-embedding-3-small", "input": ["x"] * 2049})
    assert status == 400 and doc["error"]["param"] == "input", doc
    status, doc = await post_json(proxy.url, "/v1/embeddings",
                                  {"model": "text-embedding-3-small", "input": ["x"] * 2048})
    assert status == 200 and len(doc["data"]) == 2048
    # A flat list of token ids is one input (as OpenAI reads it), not 100,000.
    status, doc = await post_json(proxy.url, "/v1/embeddings",
                                  {"model": "text-embedding-3-small", "input": [1] * 100_000})
    assert status == 200 and len(doc["data"]) == 1, len(doc.get("data", []))


async def test_example_config_caps_the_echoed_reply_like_an_output_limit(start_proxy):
    proxy = await start_proxy.from_file(str(EXAMPLE))
    words = "a " * 200_000
    chat = {"model": "echo", "messages": [{"role": "user", "content": words}]}
    status, doc = await post_json(proxy.url, "/v1/chat/completions", chat)
    assert status == 200
    assert doc["choices"][0]["finish_reason"] == "length"
    assert doc["usage"]["completion_tokens"] == mock.MAX_REPLY_TOKENS == 4096
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/chat/completions", json={**chat, "stream": True}) as r:
            raw = await r.read()
    events = [block[6:] for block in raw.split(b"\n\n") if block.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    assert len(events) == 4096 + 3  # role, one chunk per word, finish, [DONE]
    assert b'"finish_reason":"length"' in events[-2]
    # Short replies are untouched.
    status, doc = await post_json(proxy.url, "/v1/chat/completions",
                                  {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]})
    assert doc["choices"][0]["message"]["content"] == "hello there"
    assert doc["choices"][0]["finish_reason"] == "stop"

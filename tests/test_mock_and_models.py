"""The built-in mock provider and the models endpoints, through the real proxy."""

from __future__ import annotations

import base64
import struct

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

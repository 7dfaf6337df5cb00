"""Stream spend is exact on every ingress and provider family: the usage comes
from the stream itself (asked for where the provider needs asking), and a
client that did not ask for usage never sees a usage chunk."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest

from .conftest import RunningProxy
from .fakes import Reply, openai_stream, responses_stream, sse
from .fakes_anthropic import AnthropicFake, message

KEY = "sk-llmp-streams-0123456789abcdefghij"
PRICE = "price: {input_per_mtok: 1000000, output_per_mtok: 2000000, cached_input_per_mtok: 500000}"


def _config(kind: str, url: str) -> str:
    return textwrap.dedent(f"""
    providers:
      p: {{type: {kind}, base_url: "{url}", api_key: upstream-key-0001}}
    models:
      m: {{deployments: [{{provider: p, model: up, {PRICE}}}], retry: {{retries: 0}}}}
    keys:
      - name: team
        key: {KEY}
    """)


async def _spend(proxy: RunningProxy) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/admin/keys") as r:
        doc = await r.json()
    life: dict[str, Any] = doc["keys"][0]["spend"]["lifetime"]
    return life


async def _post(proxy: RunningProxy, path: str, body: dict[str, Any]) -> bytes:
    async with aiohttp.ClientSession() as s, s.post(proxy.url + path, json=body,
                                                    headers={"x-api-key": KEY}) as r:
        assert r.status == 200, await r.text()
        return await r.read()


@pytest.fixture
async def claude() -> AsyncIterator[Callable[[RunningProxy], anthropic.AsyncAnthropic]]:
    clients: list[anthropic.AsyncAnthropic] = []

    def make(proxy: RunningProxy) -> anthropic.AsyncAnthropic:
        client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=KEY, max_retries=0)
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


async def test_messages_stream_on_an_openai_deployment(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_stream(["a", "b"], usage=True)))
    proxy = await start_proxy(_config("openai", fake.url + "/v1"))
    async with claude(proxy).messages.stream(model="m", max_tokens=10,
                                             messages=[{"role": "user", "content": "x"}]) as stream:
        final = await stream.get_final_message()
    assert final.usage.output_tokens == 2
    assert fake.seen[0].json["stream_options"] == {"include_usage": True}
    assert await _spend(proxy) == {"usd": 5 + 2 * 2, "requests": 1, "tokens": 7, "window_start": None,
                                   "resets_at": None}


async def test_messages_passthrough_stream_on_an_anthropic_deployment(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.responder = AnthropicFake(message([{"type": "text", "text": "hello there"}], input_tokens=10,
                                           output_tokens=4, cache_read=6))
    proxy = await start_proxy(_config("anthropic", fake.url))
    async with claude(proxy).messages.stream(model="m", max_tokens=10,
                                             messages=[{"role": "user", "content": "x"}]) as stream:
        await stream.get_final_message()
    # 16 prompt tokens, 6 of them read from the cache at half price, 4 out.
    assert await _spend(proxy) == {"usd": 10 + 6 * 0.5 + 4 * 2, "requests": 1, "tokens": 20,
                                   "window_start": None, "resets_at": None}


async def test_chat_stream_on_an_anthropic_deployment(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.responder = AnthropicFake(message([{"type": "text", "text": "hi"}], input_tokens=3, output_tokens=5))
    proxy = await start_proxy(_config("anthropic", fake.url))
    raw = await _post(proxy, "/v1/chat/completions",
                      {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert b'"usage":{' not in raw
    assert (await _spend(proxy))["tokens"] == 8


async def test_native_responses_stream(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(stream=responses_stream()))  # usage: 3 in, 2 out
    proxy = await start_proxy(_config("openai", fake.url + "/v1"))
    await _post(proxy, "/v1/responses", {"model": "m", "stream": True, "input": "x"})
    assert (await _spend(proxy))["tokens"] == 5
    assert (await _spend(proxy))["usd"] == 3 + 2 * 2


async def test_legacy_completions_stream_asks_for_usage_and_hides_it(start_proxy, fake_upstream):
    fake = await fake_upstream()
    piece = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "up",
             "choices": [{"text": " world", "index": 0, "finish_reason": "stop", "logprobs": None}]}
    tail = {**piece, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}}
    fake.script(Reply(stream=[sse(piece), sse(tail), b"data: [DONE]\n\n"]))
    proxy = await start_proxy(_config("openai", fake.url + "/v1"))
    raw = await _post(proxy, "/v1/completions", {"model": "m", "stream": True, "prompt": "hello"})
    assert fake.seen[0].json["stream_options"] == {"include_usage": True}
    assert b'"usage"' not in raw and b" world" in raw
    assert (await _spend(proxy))["tokens"] == 5


async def test_a_stream_cut_by_the_upstream_is_charged_from_the_estimate(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_stream(["a", "b", "c"], usage=True), drop_after=2))
    proxy = await start_proxy(_config("openai", fake.url + "/v1"))
    raw = await _post(proxy, "/v1/chat/completions", {"model": "m", "stream": True, "max_tokens": 10,
                                                      "messages": [{"role": "user", "content": "xxxx"}]})
    assert b"error" in raw
    spend = await _spend(proxy)
    assert spend["tokens"] == 2 + 10 and spend["usd"] == 2 + 10 * 2  # estimate: 4 chars -> 2, max_tokens 10
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/metrics") as r:
        assert 'llmproxy_key_usage_estimated_total{key="team"} 1.0' in await r.text()


def test_usage_of_every_shape_is_counted_by_the_ticket() -> None:
    # The shapes adapters hand over (OpenAI's usage; cached tokens in prompt_tokens_details).
    from llmproxy.keys.service import _counts

    assert _counts({"prompt_tokens": 3, "completion_tokens": 4}) == (3, 4, 0)
    assert _counts({"prompt_tokens": 3, "completion_tokens": 4,
                    "prompt_tokens_details": {"cached_tokens": 2}}) == (3, 4, 2)
    assert _counts({"prompt_tokens": True, "completion_tokens": "4"}) == (None, None, 0)
    assert _counts(orjson.loads(b'{"prompt_tokens": 9, "total_tokens": 9}')) == (9, None, 0)  # embeddings
    assert _counts(None) == (None, None, 0)

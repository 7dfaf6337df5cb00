"""POST /v1/messages and /v1/messages/count_tokens through the real proxy,
driven by the official anthropic SDK, against fake upstreams of three kinds:
Anthropic (passthrough), OpenAI chat and Gemini (translated)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anthropic
import pytest

from .conftest import RunningProxy
from .fakes import Reply, openai_completion, openai_stream, sse
from .fakes_anthropic import COUNTED, AnthropicFake, message
from .fakes_gemini import GeminiFake, response

UPSTREAM_KEY = "sk-ant-upstream-secret-0001"
CLIENT_KEY = "team-key-1"


@pytest.fixture
async def claude() -> AsyncIterator[Callable[..., anthropic.AsyncAnthropic]]:
    clients: list[anthropic.AsyncAnthropic] = []

    def make(proxy: RunningProxy, api_key: str = CLIENT_KEY, **kw: Any) -> anthropic.AsyncAnthropic:
        client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=api_key, max_retries=0, **kw)
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


def config(kind: str, url: str, extra: str = "", provider: str = "") -> str:
    keys = {"anthropic": UPSTREAM_KEY, "openai": "sk-openai-upstream-0002", "gemini": "AIza-upstream-0003"}
    return f"""
    server: {{api_keys: [{CLIENT_KEY}]}}
    providers:
      p: {{type: {kind}, base_url: '{url}', api_key: {keys[kind]}{provider}}}
    models:
      claude:
        deployments: [{{provider: p, model: upstream-model}}]
        retry: {{retries: 0}}
    {extra}
    """


TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


# --------------------------------------------------------------------------- (a) Anthropic upstream: passthrough


async def test_passthrough_forwards_the_body_untouched_and_never_the_clients_key(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.script(Reply(json=message([{"type": "text", "text": "Hi from Claude"}])))
    proxy = await start_proxy(config("anthropic", fake.url, provider=", beta: [interleaved-thinking-2025-05-14]"))
    client = claude(proxy, default_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    msg = await client.messages.create(
        model="claude", max_tokens=64, messages=[{"role": "user", "content": "hi"}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"some_future_field": {"nested": [1, 2]}},
    )
    assert msg.content[0].text == "Hi from Claude" and msg.usage.input_tokens == 25
    seen = fake.seen[0]
    assert seen.path == "/v1/messages"
    body = seen.json
    assert body["model"] == "upstream-model"
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["some_future_field"] == {"nested": [1, 2]}
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert headers["x-api-key"] == UPSTREAM_KEY
    assert "authorization" not in headers
    assert CLIENT_KEY not in " ".join(seen.headers.values())
    assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


async def test_passthrough_refuses_a_beta_the_provider_does_not_allow(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    proxy = await start_proxy(config("anthropic", fake.url))
    client = claude(proxy, default_headers={"anthropic-beta": "files-api-2025-04-14"})
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert "files-api-2025-04-14" in info.value.message and info.value.body["type"] == "error"
    assert fake.seen == []


async def test_passthrough_stream_is_relayed_as_anthropic_sent_it(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.responder = AnthropicFake(message([
        {"type": "text", "text": "Let me look that up."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
    ], "tool_use"))
    proxy = await start_proxy(config("anthropic", fake.url))
    client = claude(proxy)
    async with client.messages.stream(model="claude", max_tokens=64, tools=TOOLS,
                                      messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == "Let me look that up."
    assert final.content[1].input == {"city": "Paris"} and final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 42
    assert fake.seen[0].json["tools"] == TOOLS  # untouched
    # The bytes: each upstream event as it came (pings included).
    async with aiohttp.ClientSession() as s, s.post(
        proxy.url + "/v1/messages", headers={"x-api-key": CLIENT_KEY},
        json={"model": "claude", "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ) as r:
        raw = await r.read()
        assert r.headers["x-llmproxy-deployment"]
    assert b"event: ping\ndata: {\"type\":\"ping\"}\n\n" in raw
    assert raw.endswith(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")


async def test_passthrough_count_tokens_is_forwarded(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.responder = AnthropicFake()
    proxy = await start_proxy(config("anthropic", fake.url))
    count = await claude(proxy).messages.count_tokens(
        model="claude", messages=[{"role": "user", "content": "hello"}], tools=TOOLS)
    assert count.input_tokens == COUNTED
    assert fake.seen[0].path == "/v1/messages/count_tokens"
    assert fake.seen[0].json["model"] == "upstream-model"
    assert fake.seen[0].headers["x-api-key"] == UPSTREAM_KEY


async def test_upstream_errors_keep_anthropics_shape(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.script(Reply(status=529, json={"type": "error", "error": {"type": "overloaded_error",
                                                                   "message": "Overloaded"}}))
    proxy = await start_proxy(config("anthropic", fake.url))
    with pytest.raises(anthropic.OverloadedError) as info:
        await claude(proxy).messages.create(model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"


# --------------------------------------------------------------------------- (b) OpenAI chat upstream: translated


async def test_openai_upstream_non_stream(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("Bonjour")))
    proxy = await start_proxy(config("openai", fake.url))
    msg = await claude(proxy).messages.create(
        model="claude", max_tokens=50, system="Be brief.",
        # This SDK (2.15) no longer types the sampling fields; older ones and the wire still take them.
        extra_body={"temperature": 0.3, "top_k": 7},
        stop_sequences=["END"], metadata={"user_id": "u-42"},
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}],
    )
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert msg.content[0].text == "Bonjour" and msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (5, 2)
    sent = fake.seen[0].json
    assert fake.seen[0].path == "/chat/completions"
    assert sent["model"] == "upstream-model" and sent["max_tokens"] == 50 and sent["stop"] == ["END"]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert (sent["temperature"], sent["top_k"], sent["user"]) == (0.3, 7, "u-42")
    assert fake.seen[0].headers["Authorization"] == "Bearer sk-openai-upstream-0002"


def _tool_stream() -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse({"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    return [
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Checking "}), chunk({"content": "the sky."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_w", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Paris"}'}}]}),
        chunk({}, "tool_calls"),
        sse({"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
             "usage": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43}}),
        b"data: [DONE]\n\n",
    ]


async def test_openai_upstream_stream_with_a_tool_call(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.script(Reply(stream=_tool_stream()))
    proxy = await start_proxy(config("openai", fake.url))
    deltas: list[str] = []
    async with claude(proxy).messages.stream(
        model="claude", max_tokens=64, tools=TOOLS, tool_choice={"type": "auto"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        async for ev in stream:
            if ev.type == "input_json":
                deltas.append(ev.partial_json)
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "Checking the sky."
    assert (final.content[1].id, final.content[1].name, final.content[1].input) == ("call_w", "get_weather",
                                                                                     {"city": "Paris"})
    assert deltas == ['{"city"', ': "Paris"}']  # incrementally, as the upstream sent them
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (31, 12)
    sent = fake.seen[0].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["tools"][0]["function"]["parameters"] == TOOLS[0]["input_schema"]


async def test_tool_result_round_trip(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("It is 18C in Paris.")))
    proxy = await start_proxy(config("openai", fake.url))
    msg = await claude(proxy).messages.create(model="claude", max_tokens=64, tools=TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_w", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_w", "content": [{"type": "text", "text": "18C"}]}]},
    ])
    assert msg.content[0].text == "It is 18C in Paris."
    sent = fake.seen[0].json["messages"]
    assert sent[1] == {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert sent[2] == {"role": "tool", "tool_call_id": "call_w", "content": "18C"}


async def test_untranslatable_field_is_a_400_naming_it(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    proxy = await start_proxy(config("openai", fake.url))
    with pytest.raises(anthropic.BadRequestError) as info:
        await claude(proxy).messages.create(model="claude", max_tokens=64,
                                            thinking={"type": "enabled", "budget_tokens": 2000},
                                            messages=[{"role": "user", "content": "x"}])
    assert info.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                          "message": info.value.body["error"]["message"]}}
    assert "'thinking'" in info.value.body["error"]["message"]
    assert fake.seen == []


async def test_count_tokens_is_estimated_for_other_providers(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    proxy = await start_proxy(config("openai", fake.url))
    text = "word " * 400
    count = await claude(proxy).messages.count_tokens(model="claude", system="Be brief.",
                                                      messages=[{"role": "user", "content": text}])
    assert count.input_tokens == (len(text) + len("Be brief.")) // 4 + 1  # router/estimate.py
    assert fake.seen == []


async def test_proxy_errors_are_in_anthropics_shape(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.script(Reply(status=429, json={"error": {"message": "slow down", "type": "rate_limit_error"}}))
    proxy = await start_proxy(config("openai", fake.url))
    with pytest.raises(anthropic.NotFoundError) as nf:
        await claude(proxy).messages.create(model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert nf.value.body["type"] == "error" and nf.value.body["error"]["type"] == "not_found_error"
    assert "nope" in nf.value.body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError) as auth:
        await claude(proxy, api_key="wrong").messages.create(
            model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert auth.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.RateLimitError) as rl:
        await claude(proxy).messages.create(model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert rl.value.body == {"type": "error", "error": {"type": "rate_limit_error",
                                                        "message": rl.value.body["error"]["message"]}}
    with pytest.raises(anthropic.BadRequestError) as bad:
        await claude(proxy).messages.create(model="claude", max_tokens=8, messages=[])
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    # Bearer works as well as x-api-key, and the chat route keeps OpenAI's shape.
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/messages", headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                          json={"model": "nope", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}) as r:
            assert r.status == 404 and (await r.json())["error"]["type"] == "not_found_error"
        async with s.post(proxy.v1 + "/chat/completions", headers={"x-api-key": "wrong"},
                          json={"model": "claude", "messages": [{"role": "user", "content": "x"}]}) as r:
            doc = await r.json()
            assert r.status == 401 and "type" not in doc and doc["error"]["code"] == "invalid_api_key"


async def test_payload_too_large_in_anthropics_shape(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config("openai", fake.url).replace(
        f"server: {{api_keys: [{CLIENT_KEY}]}}", "server: {max_body_size: 1000}"))
    async with aiohttp.ClientSession() as s, s.post(
        proxy.url + "/v1/messages",
        json={"model": "claude", "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 5000}]},
    ) as r:
        assert r.status == 413
        assert (await r.json())["error"]["type"] == "request_too_large"
    assert fake.seen == []


async def test_stream_failure_after_the_first_byte_is_an_error_event(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_stream(["partial ", "answer"]), drop_after=2))
    proxy = await start_proxy(config("openai", fake.url))
    with pytest.raises(anthropic.APIStatusError) as info:
        async with claude(proxy).messages.stream(model="claude", max_tokens=8,
                                                 messages=[{"role": "user", "content": "x"}]) as stream:
            await stream.get_final_message()
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "api_error"


# --------------------------------------------------------------------------- (c) Gemini upstream: translated


async def test_gemini_upstream_non_stream_and_stream(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.responder = GeminiFake(
        [response([{"text": "Sunny"}], prompt=9, candidates=3)],
        [response([{"text": "Let me "}], None), response([{"text": "check."}], None),
         response([{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}], "STOP",
                  prompt=12, candidates=6)],
    )
    proxy = await start_proxy(config("gemini", fake.url))
    client = claude(proxy)
    msg = await client.messages.create(model="claude", max_tokens=40, extra_body={"top_k": 3},
                                       messages=[{"role": "user", "content": "Weather?"}])
    assert msg.content[0].text == "Sunny" and msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (9, 3)
    assert fake.seen[0].json["generationConfig"]["topK"] == 3
    async with client.messages.stream(model="claude", max_tokens=40, tools=TOOLS,
                                      messages=[{"role": "user", "content": "Weather in Rome?"}]) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == "Let me check."
    assert final.content[1].name == "get_weather" and final.content[1].input == {"city": "Rome"}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 6
    assert fake.seen[1].headers["x-goog-api-key"] == "AIza-upstream-0003"
    assert all(CLIENT_KEY not in " ".join(s.headers.values()) for s in fake.seen)


async def test_gemini_refuses_what_it_lacks_by_name(start_proxy, fake_upstream, claude):
    fake = await fake_upstream()
    fake.responder = GeminiFake()
    proxy = await start_proxy(config("gemini", fake.url))
    with pytest.raises(anthropic.BadRequestError) as info:
        await claude(proxy).messages.create(
            model="claude", max_tokens=8, tools=TOOLS,
            tool_choice={"type": "auto", "disable_parallel_tool_use": True},
            messages=[{"role": "user", "content": "x"}])
    assert "parallel_tool_calls" in info.value.body["error"]["message"]
    await asyncio.sleep(0)
    assert fake.seen == []


# --------------------------------------------------------------------------- POST /v1/completions (legacy)


async def test_legacy_completions_pass_through_to_openai_deployments(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    done = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "upstream-model",
            "choices": [{"text": " world", "index": 0, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    piece = {**done, "usage": None}
    fake.script(Reply(json=done), Reply(stream=[sse(piece), b"data: [DONE]\n\n"]))
    proxy = await start_proxy(config("openai", fake.url))
    client = openai_client(proxy, api_key=CLIENT_KEY)
    out = await client.completions.create(model="claude", prompt="hello", max_tokens=3, extra_body={"best_of": 1})
    assert out.choices[0].text == " world"
    assert fake.seen[0].path == "/completions"
    assert fake.seen[0].json == {"model": "upstream-model", "prompt": "hello", "max_tokens": 3, "best_of": 1}
    texts = [c.choices[0].text async for c in await client.completions.create(
        model="claude", prompt="hello", stream=True)]
    assert texts == [" world"]


async def test_legacy_completions_are_a_400_elsewhere(start_proxy, fake_upstream, openai_client):
    import openai

    fake = await fake_upstream()
    proxy = await start_proxy(config("anthropic", fake.url))
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy, api_key=CLIENT_KEY).completions.create(model="claude", prompt="hello")
    assert "no legacy completions API" in info.value.message
    assert fake.seen == []

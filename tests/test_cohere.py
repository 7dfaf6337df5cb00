"""type: cohere — v2 chat and embed, pure and through the real proxy."""

from __future__ import annotations

import copy
from typing import Any

import openai
import orjson
import pytest

from llmproxy.config.tree import parse_config
from llmproxy.errors import (
    InvalidRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from llmproxy.providers.base import CallContext
from llmproxy.providers.cohere import CohereAdapter, chat_body

from .fakes import Reply

ADAPTER = CohereAdapter()
CTX = CallContext(public_model="command", request_id="req1", created=1700000000, include_usage=True)


def dep_for(extra: str = "") -> Any:
    config = parse_config(f"""
    providers:
      co: {{type: cohere, api_key: co-key, {extra}}}
    models:
      command: {{deployments: [{{provider: co, model: command-a-03-2025}}]}}
    """, env={})
    return config.models["command"].deployments[0]


DEP = dep_for()


def ev(obj: dict[str, Any], named: bool = True) -> bytes:
    # Cohere's SSE names each event after its type; clients read the JSON "type".
    head = f"event: {obj['type']}\n".encode() if named else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


TEXT_STREAM = [
    ev({"id": "a8fc192e", "type": "message-start", "delta": {"message": {
        "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
    ev({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
    ev({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Coca"}}}}),
    ev({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "-Cola ✓"}}}}, named=False),
    ev({"type": "citation-start", "index": 0, "delta": {"message": {"citations": {
        "start": 0, "end": 9, "text": "Coca-Cola", "sources": [{"type": "document", "id": "doc:0"}]}}}}),
    ev({"type": "citation-end", "index": 0}),
    ev({"type": "content-end", "index": 0}),
    ev({"type": "message-end", "id": "a8fc192e", "delta": {"finish_reason": "COMPLETE", "usage": {
        "billed_units": {"input_tokens": 5, "output_tokens": 4},
        "tokens": {"input_tokens": 71.0, "output_tokens": 4.0}}}}),
]
TOOL_STREAM = [
    ev({"id": "b1", "type": "message-start", "delta": {"message": {"role": "assistant"}}}),
    ev({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will look up the weather."}}}),
    ev({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
        "id": "get_weather_k0", "type": "function", "function": {"name": "get_weather", "arguments": ""}}}}}),
    ev({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": "{\"city\""}}}}}),
    ev({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {"function": {"arguments": ": \"Paris\"}"}}}}}),
    ev({"type": "tool-call-end", "index": 0}),
    ev({"type": "message-end", "id": "b1", "delta": {"finish_reason": "TOOL_CALL", "usage": {
        "tokens": {"input_tokens": 30, "output_tokens": 12}}}}),
]


def sse_events(data: bytes) -> list[Any]:
    return ["[DONE]" if b[6:] == b"[DONE]" else orjson.loads(b[6:]) for b in data.split(b"\n\n") if b]


def run_stream(pieces: list[bytes]) -> list[Any]:
    tr = ADAPTER.chat_stream(DEP, CTX)
    return sse_events(b"".join(tr.feed(p) for p in pieces) + tr.finish())


def test_request_translation() -> None:
    body = {
        "model": "command",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"cat"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {"role": "user", "content": "thanks"},
        ],
        "max_completion_tokens": 300, "temperature": 0.3, "top_p": 0.75, "stop": "END", "seed": 7,
        "frequency_penalty": 0.1, "top_k": 10,
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "search",
                                                    "parameters": {"type": "object"}, "strict": True}}],
        "tool_choice": "required",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    }
    before = copy.deepcopy(body)
    doc = chat_body(body, "command-a-03-2025", stream=True)
    assert body == before
    assert doc["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}}]},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"cat"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {"role": "user", "content": "thanks"},
    ]
    assert {k: v for k, v in doc.items() if k != "messages"} == {
        "model": "command-a-03-2025", "stream": True, "seed": 7, "temperature": 0.3, "frequency_penalty": 0.1,
        "max_tokens": 300, "p": 0.75, "k": 10, "stop_sequences": ["END"],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "search",
                                                    "parameters": {"type": "object"}}}],
        "strict_tools": True, "tool_choice": "REQUIRED",
        "response_format": {"type": "json_object", "json_schema": {"type": "object"}},
    }


@pytest.mark.parametrize("extra, param", [
    ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
])
def test_unsupported_is_a_400(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        chat_body({"messages": [{"role": "user", "content": "x"}], **extra}, "m", stream=False)
    assert info.value.param == param


def test_request_url_and_auth() -> None:
    req = ADAPTER.chat_request(DEP, {"messages": [{"role": "user", "content": "x"}], "tool_choice": "none",
                                     "tools": [{"type": "function", "function": {"name": "f"}}]}, stream=False)
    assert req.url == "https://api.cohere.com/v2/chat"
    assert req.headers["Authorization"] == "Bearer co-key"
    assert orjson.loads(req.body)["tool_choice"] == "NONE"


def test_unary_response_with_tool_calls_and_citations_dropped() -> None:
    data = orjson.dumps({
        "id": "r1", "finish_reason": "TOOL_CALL",
        "message": {"role": "assistant", "tool_plan": "I will search.",
                    "tool_calls": [{"id": "lookup_1", "type": "function",
                                    "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}}],
                    "citations": [{"start": 0, "end": 3, "text": "cat", "sources": []}]},
        "usage": {"billed_units": {"input_tokens": 10, "output_tokens": 20},
                  "tokens": {"input_tokens": 110.0, "output_tokens": 20.0}},
    })
    out, usage = ADAPTER.chat_response(DEP, data, CTX)
    doc = orjson.loads(out)
    msg = doc["choices"][0]["message"]
    assert msg["content"] is None and "citations" not in msg
    assert msg["tool_calls"] == [{"id": "lookup_1", "type": "function",
                                  "function": {"name": "lookup", "arguments": '{"q":"cat"}'}}]
    assert doc["choices"][0]["finish_reason"] == "tool_calls"
    assert usage == {"prompt_tokens": 110, "completion_tokens": 20, "total_tokens": 130}


def test_unary_text_and_max_tokens() -> None:
    data = orjson.dumps({"id": "r", "finish_reason": "MAX_TOKENS", "message": {"role": "assistant", "content": [
        {"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}]},
        "usage": {"billed_units": {"input_tokens": 1, "output_tokens": 2}}})
    doc = orjson.loads(ADAPTER.chat_response(DEP, data, CTX)[0])
    assert doc["choices"][0]["message"]["content"] == "Hello world"
    assert doc["choices"][0]["finish_reason"] == "length"
    assert doc["usage"]["total_tokens"] == 3


def test_unary_error_finish_is_an_upstream_error() -> None:
    data = orjson.dumps({"id": "r", "finish_reason": "ERROR", "message": {"role": "assistant", "content": []}})
    with pytest.raises(UpstreamError) as info:
        ADAPTER.chat_response(DEP, data, CTX)
    assert info.value.retryable


def test_stream_text_with_citations_dropped() -> None:
    events = run_stream(TEXT_STREAM)
    assert events[-1] == "[DONE]"
    deltas = [e["choices"][0]["delta"] for e in events[:-1] if e["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Coca-Cola ✓"
    assert all("citations" not in d for d in deltas)
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"] == {"prompt_tokens": 71, "completion_tokens": 4, "total_tokens": 75}


def test_stream_tool_call_fragments() -> None:
    events = run_stream(TOOL_STREAM)
    calls = [tc for e in events[:-1] if e["choices"] for tc in e["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "get_weather_k0", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city": "Paris"}'
    assert [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]][-1] == "tool_calls"
    # The tool plan is the model's note to itself: not relayed as content.
    assert not any(e["choices"][0]["delta"].get("content") for e in events[:-1] if e["choices"])


@pytest.mark.parametrize("stream", [TEXT_STREAM, TOOL_STREAM], ids=["text", "tools"])
def test_stream_split_at_every_byte_boundary(stream: list[bytes]) -> None:
    data = b"".join(stream)
    whole = run_stream([data])
    for cut in range(len(data) + 1):
        assert run_stream([data[:cut], data[cut:]]) == whole, cut


def test_stream_error_finish_after_text() -> None:
    tr = ADAPTER.chat_stream(DEP, CTX)
    out = tr.feed(b"".join(TEXT_STREAM[:3]) + ev({"type": "message-end", "delta": {
        "finish_reason": "ERROR", "error": "internal failure"}}))
    assert "Coca" in out.decode()
    with pytest.raises(UpstreamStatusError, match="internal failure"):
        tr.finish()


def test_stream_cut_before_message_end_is_an_error() -> None:
    tr = ADAPTER.chat_stream(DEP, CTX)
    tr.feed(b"".join(TEXT_STREAM[:4]))
    with pytest.raises(UpstreamProtocolError, match="message-end"):
        tr.finish()


def test_done_sentinel_is_skipped() -> None:
    assert run_stream([*TEXT_STREAM[:3], b"data: [DONE]\n\n", *TEXT_STREAM[3:]])[-1] == "[DONE]"


def test_errors_keep_status_and_invalid_token_is_401() -> None:
    err = ADAPTER.error_from_response(429, {}, b'{"id":"x","message":"You are using a Trial key"}')
    assert err.status == 429 and err.retryable and err.message == "You are using a Trial key"
    err = ADAPTER.error_from_response(498, {}, b'{"message":"invalid api token"}')
    assert err.status == 401 and not err.retryable
    assert not ADAPTER.error_from_response(422, {}, b'{"message":"bad"}').retryable


def test_embeddings_translation() -> None:
    req = ADAPTER.embeddings_request(DEP, {"model": "e", "input": ["a", "b"], "dimensions": 256,
                                           "input_type": "search_query"})
    assert req.url == "https://api.cohere.com/v2/embed"
    assert orjson.loads(req.body) == {"model": "command-a-03-2025", "texts": ["a", "b"], "input_type": "search_query",
                                      "embedding_types": ["float"], "output_dimension": 256}
    out, usage = ADAPTER.embeddings_response(DEP, orjson.dumps({
        "id": "e1", "embeddings": {"float": [[0.5], [0.25]]}, "texts": ["a", "b"],
        "meta": {"billed_units": {"input_tokens": 2}}, "response_type": "embeddings_by_type"}), CTX)
    assert [d["embedding"] for d in orjson.loads(out)["data"]] == [[0.5], [0.25]]
    assert usage == {"prompt_tokens": 2, "total_tokens": 2}


# --------------------------------------------------------------------------- through the proxy


def cohere_yaml(url: str) -> str:
    return f"""
    providers:
      co: {{type: cohere, base_url: "{url}", api_key: co-secret}}
    models:
      command: {{deployments: [{{provider: co, model: command-r-plus-08-2024}}]}}
      emb: {{deployments: [{{provider: co, model: embed-english-v3.0}}]}}
    """


async def test_stream_through_the_proxy(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    fake.script(Reply(stream=TOOL_STREAM))
    proxy = await start_proxy(cohere_yaml(fake.url))
    stream = await openai_client(proxy).chat.completions.create(
        model="command", messages=[{"role": "user", "content": "weather in Paris?"}], stream=True,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
    args, finish = "", None
    async for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                args += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert args == '{"city": "Paris"}' and finish == "tool_calls"
    seen = fake.seen[0]
    assert seen.path == "/v2/chat" and seen.headers["Authorization"] == "Bearer co-secret"
    assert seen.json["stream"] is True and seen.json["model"] == "command-r-plus-08-2024"


async def test_unary_and_rate_limit_through_the_proxy(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    fake.script(Reply(status=429, json={"message": "rate limited"}))
    proxy = await start_proxy(cohere_yaml(fake.url))
    with pytest.raises(openai.RateLimitError, match="rate limited"):
        await openai_client(proxy).chat.completions.create(model="command", messages=[{"role": "user", "content": "x"}])
    fake.script(Reply(json={"id": "r", "finish_reason": "COMPLETE", "message": {
        "role": "assistant", "content": [{"type": "text", "text": "hi there"}]},
        "usage": {"tokens": {"input_tokens": 3, "output_tokens": 2}}}))
    result = await openai_client(proxy).chat.completions.create(model="command", messages=[{"role": "user", "content": "x"}])
    assert result.choices[0].message.content == "hi there" and result.usage.total_tokens == 5


async def test_embeddings_through_the_proxy(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    fake.script(Reply(json={"id": "e", "embeddings": {"float": [[0.5, 0.25]]}, "texts": ["x"],
                            "meta": {"billed_units": {"input_tokens": 1}}, "response_type": "embeddings_by_type"}))
    proxy = await start_proxy(cohere_yaml(fake.url))
    result = await openai_client(proxy).embeddings.create(model="emb", input="x")
    assert result.data[0].embedding == [0.5, 0.25]
    assert fake.seen[0].path == "/v2/embed" and fake.seen[0].json["input_type"] == "search_document"

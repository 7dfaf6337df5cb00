"""type: ollama — native /api/chat and /api/embed, pure and through the real proxy."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import openai
import orjson
import pytest

from llmproxy.config.tree import BodyLimits, parse_config
from llmproxy.errors import (
    InvalidRequest,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTooLarge,
)
from llmproxy.providers.base import CallContext
from llmproxy.providers.ollama import OllamaAdapter, chat_body

from .fakes import Reply

ADAPTER = OllamaAdapter()
CTX = CallContext(public_model="llama", request_id="req1", created=1700000000, include_usage=True)


def dep_for(extra: str = "") -> Any:
    config = parse_config(f"""
    providers:
      local: {{type: ollama, {extra}}}
    models:
      llama: {{deployments: [{{provider: local, model: "llama3.2:3b"}}]}}
    """, env={})
    return config.models["llama"].deployments[0]


DEP = dep_for()


def line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


# A stream as Ollama 0.12 writes it (docs/api.md "Chat request (streaming)" and "with tools").
TEXT_LINES = [
    line({"model": "llama3.2:3b", "created_at": "2025-01-01T00:00:00.1Z",
          "message": {"role": "assistant", "content": "The"}, "done": False}),
    line({"model": "llama3.2:3b", "created_at": "2025-01-01T00:00:00.2Z",
          "message": {"role": "assistant", "content": " sky ☁"}, "done": False}),
    line({"model": "llama3.2:3b", "created_at": "2025-01-01T00:00:00.3Z",
          "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
          "total_duration": 182242375, "load_duration": 41295167, "prompt_eval_count": 26,
          "prompt_eval_duration": 24573166, "eval_count": 3, "eval_duration": 115959084}),
]
TOOL_LINES = [
    line({"model": "llama3.2:3b", "created_at": "2025-01-01T00:00:00.1Z",
          "message": {"role": "assistant", "content": "", "tool_calls": [
              {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
              {"id": "call_x", "function": {"index": 1, "name": "get_time", "arguments": {}}}]},
          "done": False}),
    line({"model": "llama3.2:3b", "created_at": "2025-01-01T00:00:00.2Z",
          "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
          "prompt_eval_count": 169, "eval_count": 15}),
]


def sse_events(data: bytes) -> list[Any]:
    return [
        "[DONE]" if block[6:] == b"[DONE]" else orjson.loads(block[6:])
        for block in data.split(b"\n\n") if block
    ]


def run_stream(pieces: list[bytes]) -> list[Any]:
    tr = ADAPTER.chat_stream(DEP, CTX)
    return sse_events(b"".join(tr.feed(p) for p in pieces) + tr.finish())


# --------------------------------------------------------------------------- requests


def test_request_translation_options_images_tools() -> None:
    body = {
        "model": "llama",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Toronto"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "11 degrees celsius"},
        ],
        "temperature": 0.2, "top_p": 0.9, "seed": 101, "max_tokens": 256, "stop": ["END"],
        "presence_penalty": 0.5, "top_k": 40, "options": {"num_ctx": 8192},
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                                                    "parameters": {"type": "object"}, "strict": True}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "keep_alive": "5m",
    }
    before = copy.deepcopy(body)
    doc = chat_body(body, "llama3.2:3b", stream=False)
    assert body == before
    assert doc["model"] == "llama3.2:3b" and doc["stream"] is False
    assert doc["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is in this image?", "images": ["iVBORw0KGgo="]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Toronto"}}}]},
        {"role": "tool", "content": "11 degrees celsius", "tool_name": "get_weather"},
    ]
    assert doc["options"] == {"num_ctx": 8192, "temperature": 0.2, "top_p": 0.9, "seed": 101, "top_k": 40,
                              "presence_penalty": 0.5, "num_predict": 256, "stop": ["END"]}
    assert doc["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "d", "parameters": {"type": "object"}}}]
    assert doc["format"] == {"type": "object"}
    assert doc["keep_alive"] == "5m"


def test_json_object_and_reasoning_effort() -> None:
    doc = chat_body({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"},
                     "reasoning_effort": "none"}, "m", stream=True)
    assert doc["format"] == "json" and doc["think"] is False and doc["stream"] is True
    assert "options" not in doc


@pytest.mark.parametrize("extra, param", [
    ({"tool_choice": "required"}, "tool_choice"),
    ({"n": 3}, "n"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0]"),
])
def test_unsupported_is_a_400(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        chat_body({"messages": [{"role": "user", "content": "x"}], **extra}, "m", stream=False)
    assert info.value.param == param


def test_tool_choice_none_leaves_the_tools_out() -> None:
    doc = chat_body({"messages": [{"role": "user", "content": "x"}], "tool_choice": "none",
                     "tools": [{"type": "function", "function": {"name": "f"}}]}, "m", stream=False)
    assert "tools" not in doc


def test_urls_and_bearer_key_for_hosted_ollama() -> None:
    req = ADAPTER.chat_request(DEP, {"messages": [{"role": "user", "content": "x"}]}, stream=True)
    assert req.url == "http://localhost:11434/api/chat" and "Authorization" not in req.headers
    hosted = dep_for('base_url: "https://ollama.com/api", api_key: ok')
    req = ADAPTER.chat_request(hosted, {"messages": [{"role": "user", "content": "x"}]}, stream=False)
    assert req.url == "https://ollama.com/api/chat" and req.headers["Authorization"] == "Bearer ok"


# --------------------------------------------------------------------------- answers


def test_unary_response_text() -> None:
    out, usage = ADAPTER.chat_response(DEP, TEXT_LINES[2].replace(b'"content":""', b'"content":"Blue."'), CTX)
    doc = orjson.loads(out)
    assert doc["choices"][0]["message"]["content"] == "Blue."
    assert doc["choices"][0]["finish_reason"] == "stop"
    assert usage == doc["usage"] == {"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29}


def test_unary_response_tool_calls_finish_as_tool_calls() -> None:
    data = orjson.dumps({**orjson.loads(TOOL_LINES[0]), "done": True, "done_reason": "stop",
                         "prompt_eval_count": 1, "eval_count": 2})
    doc = orjson.loads(ADAPTER.chat_response(DEP, data, CTX)[0])
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_req1_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}},
        {"id": "call_x", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]


def test_length_finish() -> None:
    data = orjson.dumps({"message": {"role": "assistant", "content": "abc"}, "done": True, "done_reason": "length"})
    assert orjson.loads(ADAPTER.chat_response(DEP, data, CTX)[0])["choices"][0]["finish_reason"] == "length"


# --------------------------------------------------------------------------- streams


def test_stream_text() -> None:
    events = run_stream(TEXT_LINES)
    assert events[-1] == "[DONE]"
    assert [e["choices"][0]["delta"] for e in events[:3]] == [
        {"role": "assistant", "content": ""}, {"content": "The"}, {"content": " sky ☁"}]
    assert events[3]["choices"][0]["finish_reason"] == "stop"
    assert events[4]["usage"] == {"prompt_tokens": 26, "completion_tokens": 3, "total_tokens": 29}


def test_stream_tool_calls_arrive_whole() -> None:
    events = run_stream(TOOL_LINES)
    calls = [tc for e in events[:-1] if e["choices"] for tc in e["choices"][0]["delta"].get("tool_calls", [])]
    assert calls == [
        {"index": 0, "id": "call_req1_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Tokyo"}'}},
        {"index": 1, "id": "call_x", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]][-1] == "tool_calls"


@pytest.mark.parametrize("lines", [TEXT_LINES, TOOL_LINES], ids=["text", "tools"])
def test_stream_split_at_every_byte_boundary(lines: list[bytes]) -> None:
    data = b"".join(lines)
    whole = run_stream([data])
    for cut in range(len(data) + 1):
        assert run_stream([data[:cut], data[cut:]]) == whole, cut
    assert run_stream([data[i : i + 1] for i in range(len(data))]) == whole


def test_last_line_without_newline_is_still_read() -> None:
    assert run_stream([b"".join(TEXT_LINES)[:-1]])[-1] == "[DONE]"


def test_mid_stream_error_line_after_text() -> None:
    tr = ADAPTER.chat_stream(DEP, CTX)
    out = tr.feed(TEXT_LINES[0] + line({"error": "model runner has unexpectedly stopped"}))
    assert [e["choices"][0]["delta"].get("content") for e in sse_events(out)] == ["", "The"]
    with pytest.raises(UpstreamStatusError, match="unexpectedly stopped") as info:
        tr.finish()
    assert info.value.retryable


def test_stream_cut_before_done_is_an_error() -> None:
    tr = ADAPTER.chat_stream(DEP, CTX)
    tr.feed(TEXT_LINES[0] + TEXT_LINES[1])
    with pytest.raises(UpstreamProtocolError, match="done"):
        tr.finish()


def test_garbage_line_is_a_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        ADAPTER.chat_stream(DEP, CTX).feed(b"<html>\n")


# --------------------------------------------------------------------------- embeddings


def test_embeddings_translation() -> None:
    req = ADAPTER.embeddings_request(DEP, {"model": "e", "input": ["a", "b"], "dimensions": 2})
    assert req.url == "http://localhost:11434/api/embed"
    assert orjson.loads(req.body) == {"model": "llama3.2:3b", "input": ["a", "b"], "dimensions": 2}
    with pytest.raises(InvalidRequest, match="token arrays"):
        ADAPTER.embeddings_request(DEP, {"model": "e", "input": [[1, 2, 3]]})
    out, usage = ADAPTER.embeddings_response(
        DEP, b'{"model":"m","embeddings":[[0.5,1.0],[0.25,-1.0]],"prompt_eval_count":4}', CTX)
    doc = orjson.loads(out)
    assert [d["embedding"] for d in doc["data"]] == [[0.5, 1.0], [0.25, -1.0]]
    assert usage == doc["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


def test_base64_embeddings_when_the_context_asks_for_them() -> None:
    import base64
    import struct

    class Ctx:
        encoding_format = "base64"

    out, _ = ADAPTER.embeddings_response(DEP, b'{"embeddings":[[0.5,-2.0]],"prompt_eval_count":1}', Ctx())  # type: ignore[arg-type]
    raw = base64.b64decode(orjson.loads(out)["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -2.0)


# --------------------------------------------------------------------------- through the proxy


def ollama_yaml(url: str) -> str:
    return f"""
    providers:
      local: {{type: ollama, base_url: "{url}"}}
    models:
      llama: {{deployments: [{{provider: local, model: "llama3.2:3b"}}]}}
      emb: {{deployments: [{{provider: local, model: "nomic-embed-text"}}]}}
    """


async def test_unary_through_the_proxy(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    fake.script(Reply(json={"model": "llama3.2:3b", "created_at": "2025-01-01T00:00:00Z",
                            "message": {"role": "assistant", "content": "Hello!"}, "done": True,
                            "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 2}))
    proxy = await start_proxy(ollama_yaml(fake.url))
    result = await openai_client(proxy).chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "hi"}], temperature=0.1)
    assert result.choices[0].message.content == "Hello!" and result.usage.total_tokens == 7
    seen = fake.seen[0]
    assert seen.path == "/api/chat"
    assert seen.json == {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi"}],
                         "stream": False, "options": {"temperature": 0.1}}


async def test_stream_through_the_proxy(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    data = b"".join(TEXT_LINES)
    fake.script(Reply(stream=[data[i : i + 29] for i in range(0, len(data), 29)], content_type="application/x-ndjson"))
    proxy = await start_proxy(ollama_yaml(fake.url))
    stream = await openai_client(proxy).chat.completions.create(
        model="llama", messages=[{"role": "user", "content": "sky?"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The sky ☁"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 26
    assert fake.seen[0].json["stream"] is True


async def test_model_not_found_is_a_404_not_retried(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    fake.script(Reply(status=404, json={"error": "model \"llama3.2:3b\" not found, try pulling it first"}))
    proxy = await start_proxy(ollama_yaml(fake.url))
    with pytest.raises(openai.NotFoundError, match="try pulling it first"):
        await openai_client(proxy).chat.completions.create(model="llama", messages=[{"role": "user", "content": "x"}])
    assert len(fake.seen) == 1


async def test_embeddings_through_the_proxy(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    fake.script(Reply(json={"model": "nomic-embed-text", "embeddings": [[0.5, -0.25]], "prompt_eval_count": 2}))
    proxy = await start_proxy(ollama_yaml(fake.url))
    result = await openai_client(proxy).embeddings.create(model="emb", input="hello")
    # The SDK asked for base64 by default; floats are what it falls back to reading.
    assert result.data[0].embedding == [0.5, -0.25]
    assert fake.seen[0].path == "/api/embed" and fake.seen[0].json["input"] == ["hello"]


def test_native_options_must_be_an_object() -> None:
    with pytest.raises(InvalidRequest, match="'options' must be an object"):
        chat_body({"messages": [{"role": "user", "content": "x"}], "options": [1]}, "m", stream=False)


def test_line_limit_split_at_every_byte_boundary() -> None:
    data = b"".join(TEXT_LINES)
    longest = max(len(line) for line in TEXT_LINES)  # each ends with its newline
    fits = replace(DEP, provider=replace(DEP.provider, limits=BodyLimits(max_event_size=longest)))
    tight = replace(DEP, provider=replace(DEP.provider, limits=BodyLimits(max_event_size=longest - 1)))
    whole = run_stream([data])

    def run(dep: Any, pieces: list[bytes]) -> list[Any]:
        tr = ADAPTER.chat_stream(dep, CTX)
        return sse_events(b"".join(tr.feed(p) for p in pieces) + tr.finish())

    for cut in range(len(data) + 1):
        assert run(fits, [data[:cut], data[cut:]]) == whole, cut
        with pytest.raises(UpstreamTooLarge):
            run(tight, [data[:cut], data[cut:]])

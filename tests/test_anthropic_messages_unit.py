"""The pure Messages ingress (llmproxy.ingress.anthropic_messages): requests,
answers, and the stream translator, checked against the anthropic SDK's own
accumulator (what ``messages.stream(...).get_final_message()`` runs)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event

from llmproxy.errors import (
    InvalidRequest,
    NoCapacity,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from llmproxy.ingress import anthropic_messages as am
from llmproxy.sse import SSEDecoder

from .fakes import openai_stream, sse


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **extra}


def test_request_translates_every_field() -> None:
    body = _body(
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "boom"}],
                 "is_error": True},
                {"type": "text", "text": "and now?"},
            ]},
        ],
        tools=[{"name": "f", "description": "does f", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"], temperature=0.5, top_p=0.9, top_k=5,
        metadata={"user_id": "u1"}, stream=True,
    )
    out = am.to_chat(body)
    assert out["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
        ]},
        {"role": "assistant", "content": "calling", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: boom"},
        {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
    ]
    assert out["tools"] == [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object"}, "description": "does f"}}]
    assert out["tool_choice"] == "required" and out["parallel_tool_calls"] is False
    assert (out["stop"], out["temperature"], out["top_p"], out["top_k"]) == (["END"], 0.5, 0.9, 5)
    assert out["user"] == "u1" and out["max_tokens"] == 100
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert body["messages"][2]["content"][0]["is_error"] is True  # input untouched


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
])
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    assert am.to_chat(_body(tool_choice=choice))["tool_choice"] == expected


@pytest.mark.parametrize(("extra", "param"), [
    ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, "thinking"),
    ({"service_tier": "auto"}, "service_tier"),
    ({"mcp_servers": []}, "mcp_servers"),
    ({"metadata": {"user_id": "u", "other": 1}}, "metadata.other"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "citations": [1]}]}]},
     "messages[0].content[0].citations"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}, "messages[0].content[0].source"),
])
def test_untranslatable_fields_are_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        am.to_chat(_body(**extra))
    assert info.value.param == param and param.split(".")[0].split("[")[0] in info.value.message


def test_max_tokens_is_required_except_for_counting() -> None:
    body = _body()
    del body["max_tokens"]
    with pytest.raises(InvalidRequest) as info:
        am.to_chat(body)
    assert info.value.param == "max_tokens"
    assert "max_tokens" not in am.to_chat(body, count_only=True)


def test_disabled_thinking_and_cache_hints_ask_for_nothing() -> None:
    out = am.to_chat(_body(thinking={"type": "disabled"}, cache_control={"type": "ephemeral"}))
    assert "thinking" not in out and "cache_control" not in out


def test_answer_with_tool_call_and_cached_usage() -> None:
    doc = {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "let me check",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"q": "x"}'}}]}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37,
                  "prompt_tokens_details": {"cached_tokens": 10}}}
    msg = orjson.loads(am.from_completion(orjson.dumps(doc), "public", "req1"))
    assert msg == {
        "id": "msg_chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-4o",
        "content": [{"type": "text", "text": "let me check"},
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"q": "x"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 10},
    }


@pytest.mark.parametrize(("finish", "matched", "reason", "sequence"), [
    ("stop", None, "end_turn", None), ("length", None, "max_tokens", None),
    ("content_filter", None, "refusal", None), ("stop", "END", "stop_sequence", "END"),
    (None, None, "end_turn", None),
])
def test_stop_reasons(finish: Any, matched: Any, reason: str, sequence: Any) -> None:
    assert am.stop_of(finish, matched) == (reason, sequence)


def _tool_stream() -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    return b"".join([
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Checking é "}),
        chunk({"content": "now."}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "time", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        sse({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
             "usage": {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}}),
        b"data: [DONE]\n\n",
    ])


def _sdk_final(data: bytes) -> Any:
    """Run the SDK's accumulator over our SSE bytes, as its stream helper does."""
    events = SSEDecoder().feed(data)
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    kinds = []
    for name, payload in events:
        doc = orjson.loads(payload)
        assert name == doc["type"]  # the SDK dispatches on the event: line
        kinds.append(name)
        if name in ("message_stop", "error"):
            continue
        snapshot = accumulate_event(event=doc, current_snapshot=snapshot, json_bufs=json_bufs)
    return snapshot, kinds


def test_stream_assembles_in_the_sdk() -> None:
    tr = am.MessagesStream("public", "req1")
    out = tr.feed(_tool_stream()) + tr.finish()
    final, kinds = _sdk_final(out)
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[0].text == "Checking é now."
    assert (final.content[1].id, final.content[1].name, final.content[1].input) == ("call_a", "weather", {"city": "Paris"})
    assert final.content[2].input == {}
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 9)
    # input_json_delta arrives piece by piece, as the upstream sent it
    pieces = [orjson.loads(p)["delta"]["partial_json"] for n, p in SSEDecoder().feed(out)
              if n == "content_block_delta" and b"input_json_delta" in p]
    assert pieces == ['{"city": ', '"Paris"}', "{}"]


def test_stream_split_at_every_byte_offset() -> None:
    data = _tool_stream()
    whole = am.MessagesStream("public", "req1")
    expected = whole.feed(data) + whole.finish()
    for at in range(len(data) + 1):
        tr = am.MessagesStream("public", "req1")
        assert tr.feed(data[:at]) + tr.feed(data[at:]) + tr.finish() == expected, at


def test_text_stream_without_usage_and_a_cut_stream() -> None:
    data = b"".join(openai_stream(["Hel", "lo"]))
    tr = am.MessagesStream("public", "req1")
    final, _ = _sdk_final(tr.feed(data) + tr.finish())
    assert final.content[0].text == "Hello" and final.stop_reason == "end_turn"
    cut = am.MessagesStream("public", "req1")
    cut.feed(data[: data.index(b"data: [DONE]")])
    with pytest.raises(UpstreamProtocolError):
        cut.finish()


def test_error_chunk_becomes_an_error_event() -> None:
    tr = am.MessagesStream("public", "req1")
    out = tr.feed(sse({"error": {"message": "overloaded", "type": "server_error"}}))
    assert out.startswith(b"event: error\ndata: ")
    assert orjson.loads(out.split(b"data: ", 1)[1])["error"] == {"type": "api_error", "message": "overloaded"}
    assert tr.finish() == b""


@pytest.mark.parametrize(("exc", "status", "etype"), [
    (InvalidRequest("x"), 400, "invalid_request_error"),
    (NoCapacity("busy"), 429, "rate_limit_error"),
    (UpstreamStatusError("over", status=503, code="overloaded_error"), 529, "overloaded_error"),
    (UpstreamStatusError("bad", status=502), 502, "api_error"),
])
def test_errors_in_anthropic_shape(exc: Any, status: int, etype: str) -> None:
    got_status, doc = am.render_error(exc)
    assert got_status == status and doc == {"type": "error", "error": {"type": etype, "message": exc.message}}


def test_anthropic_passthrough_relay_split_at_every_byte_offset() -> None:
    from llmproxy.providers.anthropic_passthrough import AnthropicRelay

    from .fakes_anthropic import message, stream_events

    data = b"".join(stream_events(message([
        {"type": "text", "text": "Hi there"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": "b"}}], "tool_use"), piece=3))
    data = data.replace(b"\n", b"\r\n")  # re-framed on the way: the client sees \n framing
    whole = AnthropicRelay()
    expected = whole.feed(data) + whole.finish()
    assert expected == data.replace(b"\r\n", b"\n")
    assert whole.usage == {"prompt_tokens": 25, "completion_tokens": 42, "total_tokens": 67,
                           "prompt_tokens_details": {"cached_tokens": 0}}
    for at in range(len(data) + 1):
        tr = AnthropicRelay()
        assert tr.feed(data[:at]) + tr.feed(data[at:]) + tr.finish() == expected, at
    cut = AnthropicRelay()
    cut.feed(data[: data.index(b"event: message_stop")])
    with pytest.raises(UpstreamProtocolError):
        cut.finish()


def test_anthropic_passthrough_fast_path_relays_the_same_bytes_read_by_read() -> None:
    # The byte fast path (whole canonical events that need no look) must give
    # what the event path gives, for every way the stream can arrive in reads,
    # and still read usage and the end from the events it looks at.
    from llmproxy.providers.anthropic_passthrough import AnthropicRelay

    from .fakes_anthropic import message, stream_events

    events = stream_events(message([{"type": "text", "text": "Hi there, how are you"}], "end_turn"), piece=2)
    data = b"".join(events)
    for split in range(1, len(events)):  # reads of whole events, cut at every event boundary
        tr = AnthropicRelay()
        head, tail = b"".join(events[:split]), b"".join(events[split:])
        assert tr.feed(head) + tr.feed(tail) + tr.finish() == data, split
        assert tr.usage is not None and tr.done
    for at in range(len(data) + 1):  # and at every byte offset
        tr = AnthropicRelay()
        assert tr.feed(data[:at]) + tr.feed(data[at:]) + tr.finish() == data, at
    deltas = b"".join(e for e in events if b"content_block_delta" in e)
    tr = AnthropicRelay()
    assert tr.feed(deltas) is deltas  # relayed as they are, not re-framed

"""The pure Responses ingress: request → chat, chat answer → Response, chat stream → events."""

from __future__ import annotations

import openai
import orjson
import pytest
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response
from openai.types.responses.response_stream_event import ResponseStreamEvent
from pydantic import TypeAdapter

from llmproxy.errors import InvalidRequest, UpstreamProtocolError
from llmproxy.ingress import responses as r
from llmproxy.ingress.responses_stream import ResponsesStream
from llmproxy.providers.openai import ResponsesRelay

from .fakes import (
    openai_completion,
    openai_stream,
    openai_tool_stream,
    responses_stream,
)

IDS = r.Ids("abc")


def test_request_translation():
    chat = r.to_chat({
        "model": "m", "instructions": "sys", "max_output_tokens": 99, "parallel_tool_calls": False,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": None}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": True}},
        "reasoning": {"effort": "low"},
        "input": [{"role": "assistant", "content": [{"type": "output_text", "text": "a", "annotations": []}]},
                  {"type": "function_call", "call_id": "c1", "name": "f", "arguments": ""},
                  {"type": "reasoning", "id": "rs_1", "summary": []}],
    }, stream=True)
    assert chat == {
        "model": "m", "max_completion_tokens": 99, "parallel_tool_calls": False, "reasoning_effort": "low",
        "messages": [{"role": "system", "content": "sys"},
                     {"role": "assistant", "content": "a",
                      "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"},
                                                                   "strict": True}},
        "stream": True, "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(("body", "param"), [
    ({"conversation": "conv_1"}, "conversation"),
    ({"include": ["reasoning.encrypted_content"]}, "include"),
    ({"truncation": "auto"}, "truncation"),
    ({"tools": [{"type": "file_search"}]}, "tools[0]"),
    ({"tools": [{"type": "function", "name": "f", "defer_loading": True}]}, "tools[0].defer_loading"),
    ({"tool_choice": {"type": "mcp", "server_label": "x"}}, "tool_choice"),
    ({"text": {"format": {"type": "grammar"}}}, "text.format"),
    ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input[0].content[0]"),
])
def test_untranslatable_is_refused_by_name(body, param):
    with pytest.raises(InvalidRequest) as info:
        r.to_chat({"model": "m", "input": "x", **body})
    assert info.value.param == param


def test_answer_validates_as_the_sdk_response():
    doc = openai_completion("hi")
    doc["choices"][0]["message"]["tool_calls"] = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    echo = r.echo_of({"model": "m", "tools": [{"type": "function", "name": "f", "parameters": {}, "strict": True}]})
    out = r.response_from_chat(orjson.dumps(doc), echo, IDS, 1700)
    resp = Response.model_validate(out)  # strict validation: every required field present
    assert resp.output_text == "hi" and resp.id == "resp_abc"
    assert [o.id for o in resp.output] == ["msg_abc_0", "fc_abc_1"]
    assert resp.usage is not None and resp.usage.total_tokens == 7


def _events(data: bytes) -> list[dict]:
    return [orjson.loads(b.split(b"data: ", 1)[1]) for b in data.split(b"\n\n") if b.strip()]


def _translate(chat: bytes, cuts: list[int]) -> bytes:
    t = ResponsesStream(r.echo_of({"model": "m"}), IDS, 1700)
    out, last = [], 0
    for c in [*cuts, len(chat)]:
        out.append(t.feed(chat[last:c]))
        last = c
    out.append(t.finish())
    return b"".join(out)


@pytest.mark.parametrize("stream", [openai_stream(["Hel", "lo"], usage=True),
                                    openai_tool_stream("Hi", "f", ['{"a"', ': 1}'])], ids=["text", "tool"])
def test_stream_split_at_every_byte_offset(stream):
    chat = b"".join(stream)
    whole = _translate(chat, [])
    for i in range(1, len(chat)):
        assert _translate(chat, [i]) == whole, i
    events = _events(whole)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    # The SDK's own accumulator (the strict 3.x one) assembles it.
    state: ResponseStreamState = ResponseStreamState(input_tools=openai.omit, text_format=openai.omit)
    adapter: TypeAdapter = TypeAdapter(ResponseStreamEvent)
    for e in events:
        state.handle_event(adapter.validate_python(e))
    final = events[-1]
    assert final["type"] == "response.completed"
    indexes = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert indexes == list(range(len(indexes)))
    assert Response.model_validate(final["response"]).output_text == ("Hello" if len(indexes) == 1 else "Hi")


def test_stream_cut_before_done_is_an_error():
    t = ResponsesStream(r.echo_of({"model": "m"}), IDS, 1700)
    t.feed(b"".join(openai_stream(["x"])[:2]))
    with pytest.raises(UpstreamProtocolError):
        t.finish()


def test_native_relay_split_at_every_byte_offset():
    raw = b"".join(responses_stream())
    for i in range(len(raw) + 1):
        relay = ResponsesRelay()
        first, second = relay.feed(raw[:i]), relay.feed(raw[i:])
        assert first + second + relay.finish() == raw, i
        assert first == raw[: raw.rfind(b"\n\n", 0, i) + 2] if b"\n\n" in raw[:i] else first == b""
        assert relay.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    relay = ResponsesRelay()
    relay.feed(raw[: raw.find(b"response.completed")])
    with pytest.raises(UpstreamProtocolError):
        relay.finish()


def _chat_chunks(*deltas: dict, finish: str = "stop") -> bytes:
    chunks = [{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def test_a_streamed_refusal_is_a_refusal_part_not_dropped():
    # §6.5: delta.refusal → a refusal content part with response.refusal.delta / .done.
    chat = _chat_chunks({"role": "assistant", "content": None}, {"refusal": "I can't "}, {"refusal": "help."})
    whole = _translate(chat, [])
    for i in range(1, len(chat)):
        assert _translate(chat, [i]) == whole, i
    events = _events(whole)
    types = [e["type"] for e in events]
    assert "response.refusal.delta" in types and "response.refusal.done" in types
    state: ResponseStreamState = ResponseStreamState(input_tools=openai.omit, text_format=openai.omit)
    adapter: TypeAdapter = TypeAdapter(ResponseStreamEvent)
    for e in events:
        state.handle_event(adapter.validate_python(e))
    final = Response.model_validate(events[-1]["response"])
    assert final.output[0].type == "message"
    assert [p.model_dump() for p in final.output[0].content] == [{"type": "refusal", "refusal": "I can't help."}]

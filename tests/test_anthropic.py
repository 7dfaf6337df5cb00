"""The Anthropic adapter: pure translation with payloads from Anthropic's docs, then the
real proxy against a fake Messages API that rejects what the real one rejects."""

from __future__ import annotations

import copy
from typing import Any

import openai
import orjson
import pytest

from llmproxy.config.tree import parse_config
from llmproxy.errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from llmproxy.providers import adapter_for
from llmproxy.providers.anthropic import JSON_INSTRUCTION, AnthropicStream
from llmproxy.providers.base import CallContext

from .fakes import Reply, Seen
from .fakes_anthropic import (
    AnthropicFake,
    accumulate,
    check,
    feed_split,
    message,
    parse_sse,
    stream_events,
)

ADAPTER = adapter_for("anthropic")
CTX = CallContext(public_model="claude", request_id="req-1", created=1700000000)
CTX_USAGE = CallContext(public_model="claude", request_id="req-1", created=1700000000, include_usage=True)


def dep(max_tokens: int | None = 1024, extra: str = ""):
    mt = f", max_tokens: {max_tokens}" if max_tokens else ""
    cfg = parse_config(f"""
    providers:
      a: {{type: anthropic, api_key: sk-ant-secret, beta: [b1, b2]{extra}}}
    models:
      claude: {{deployments: [{{provider: a, model: claude-sonnet-4-5{mt}}}]}}
    """, env={})
    return cfg.models["claude"].deployments[0]


DEP = dep()


def translate(body: dict[str, Any], d=None, stream: bool = False) -> dict[str, Any]:
    req = ADAPTER.chat_request(d or DEP, {"model": "claude", **body}, stream=stream)
    return orjson.loads(req.body)


def valid(body: dict[str, Any]) -> None:
    """The fake API (which rejects what the real one does) accepts the translated body."""
    seen = Seen("POST", "/v1/messages", {}, {"x-api-key": "k", "anthropic-version": "2023-06-01"},
                orjson.dumps(body))
    problem = check(seen)
    assert problem is None, problem.json


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a given location",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["location"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"timezone": {"type": "string"}}}}}


# --------------------------------------------------------------------------- requests


def test_request_url_headers_and_system_messages():
    req = ADAPTER.chat_request(DEP, {"model": "claude", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Hi"},
    ]}, stream=True)
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == "sk-ant-secret"
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["anthropic-beta"] == "b1,b2"
    assert req.headers["Accept"] == "text/event-stream"
    body = orjson.loads(req.body)
    assert body["system"] == [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Use metric units."}]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert body["stream"] is True and body["model"] == "claude-sonnet-4-5" and body["max_tokens"] == 1024
    valid(body)


def test_consecutive_same_role_messages_are_merged():
    body = translate({"messages": [
        {"role": "user", "content": "one"}, {"role": "user", "content": "two"},
        {"role": "assistant", "content": "a"}, {"role": "assistant", "content": ""},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
        {"role": "system", "content": "late system"}, {"role": "user", "content": "three"},
    ]})
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [b["text"] for b in body["messages"][0]["content"]] == ["one", "two"]
    assert [b["text"] for b in body["messages"][1]["content"]] == ["a", "b"]
    assert body["system"] == [{"type": "text", "text": "late system"}]
    valid(body)


def test_several_tool_calls_in_one_turn_make_a_valid_request():
    """The known failure: results of a parallel call split over turns, or text before them."""
    body = translate({"tools": [WEATHER, TIME], "messages": [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}},
            {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": '{"timezone":"CET"}'}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": [{"type": "text", "text": "14:00"}]},
        {"role": "user", "content": "Thanks, and tomorrow?"},
    ]})
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"] == [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"location": "Paris"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {"timezone": "CET"}},
    ]
    assert msgs[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "14:00"},
        {"type": "text", "text": "Thanks, and tomorrow?"},
    ]
    valid(body)


def test_foreign_tool_call_ids_are_made_valid_for_anthropic_consistently():
    body = translate({"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "call:1/a", "type": "function",
                                              "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call:1/a", "content": "ok"},
    ]})
    assert body["messages"][1]["content"][0]["id"] == "call_1_a"
    assert body["messages"][1]["content"][0]["input"] == {}
    assert body["messages"][2]["content"][0]["tool_use_id"] == "call_1_a"
    valid(body)


def test_images_as_data_urls_and_http_urls_and_pdf_files():
    body = translate({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"},
         "prompt_cache_breakpoint": {"mode": "explicit"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0xLjQ=", "filename": "a.pdf"}},
    ]}]})
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"},
         "cache_control": {"type": "ephemeral"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="},
         "title": "a.pdf"},
    ]
    valid(body)


@pytest.mark.parametrize("part, param", [
    ({"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}, "messages[0].content[0]"),
    ({"type": "image_url", "image_url": {"url": "data:image/png,raw"}}, "messages[0].content[0].image_url.url"),
    ({"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}, "messages[0].content[0]"),
    ({"type": "input_audio", "input_audio": {"data": "AAA=", "format": "wav"}}, "messages[0].content[0]"),
    ({"type": "file", "file": {"file_id": "file-abc"}}, "messages[0].content[0]"),
])
def test_content_anthropic_cannot_take_is_refused(part, param):
    with pytest.raises(InvalidRequest) as err:
        translate({"messages": [{"role": "user", "content": [part]}]})
    assert err.value.status == 400 and err.value.param == param


@pytest.mark.parametrize("choice, parallel, expected", [
    (None, None, None),
    ("auto", None, None),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_time"}}, None, {"type": "tool", "name": "get_time"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
])
def test_tool_choice(choice, parallel, expected):
    body = translate({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER, TIME],
                      "tool_choice": choice, "parallel_tool_calls": parallel})
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
    assert body["tools"][0]["description"] == "Get the current weather in a given location"
    assert body.get("tool_choice") == expected
    valid(body)


def test_allowed_tools_narrows_the_offer_and_strict_passes():
    strict = {"type": "function", "function": {**TIME["function"], "strict": True}}
    body = translate({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER, strict],
                      "tool_choice": {"type": "allowed_tools", "allowed_tools": {
                          "mode": "required", "tools": [{"type": "function", "function": {"name": "get_time"}}]}}})
    assert body["tools"] == [{"name": "get_time", "input_schema": TIME["function"]["parameters"], "strict": True}]
    assert body["tool_choice"] == {"type": "any"}


def test_sampling_and_output_parameters():
    body = translate({"messages": [{"role": "user", "content": "x"}], "temperature": 1.7, "top_p": 0.9,
                      "top_k": 40, "stop": ["END", "STOP"], "max_completion_tokens": 300, "max_tokens": 99,
                      "user": "u-42", "reasoning_effort": "minimal",
                      "response_format": {"type": "json_schema", "json_schema": {
                          "name": "r", "strict": True, "schema": {"type": "object", "properties": {"a": {"type": "integer"}},
                                                                  "additionalProperties": False}}}})
    assert body["temperature"] == 1.0  # clamped: Anthropic takes 0..1
    assert body["top_p"] == 0.9 and body["top_k"] == 40
    assert body["stop_sequences"] == ["END", "STOP"]
    assert body["max_tokens"] == 300
    assert body["metadata"] == {"user_id": "u-42"}
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}},
        "effort": "low"}
    valid(body)


def test_json_object_becomes_a_system_instruction():
    body = translate({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "x"}],
                      "response_format": {"type": "json_object"}})
    assert body["system"] == [{"type": "text", "text": "S"}, {"type": "text", "text": JSON_INSTRUCTION}]
    assert "output_config" not in body


def test_max_tokens_default_comes_from_the_deployment_then_a_fallback():
    assert translate({"messages": [{"role": "user", "content": "x"}]}, dep(2048))["max_tokens"] == 2048
    assert translate({"messages": [{"role": "user", "content": "x"}]}, dep(None))["max_tokens"] == 4096
    assert translate({"messages": [{"role": "user", "content": "x"}], "max_tokens": 7}, dep(2048))["max_tokens"] == 7


@pytest.mark.parametrize("field, value", [
    ("n", 2), ("seed", 7), ("logit_bias", {"50256": -100}), ("logprobs", True), ("top_logprobs", 3),
    ("frequency_penalty", 0.5), ("presence_penalty", -1), ("functions", [{"name": "f"}]),
    ("function_call", "auto"), ("audio", {"voice": "alloy", "format": "wav"}), ("modalities", ["text", "audio"]),
    ("prediction", {"type": "content", "content": "x"}), ("web_search_options", {}), ("verbosity", "low"),
    ("store", True), ("service_tier", "flex"), ("moderation", {"model": "omni-moderation-latest"}),
    ("some_future_field", 1),
])
def test_what_anthropic_cannot_do_is_refused_with_a_400_naming_it(field, value):
    with pytest.raises(InvalidRequest) as err:
        translate({"messages": [{"role": "user", "content": "x"}], field: value})
    assert err.value.status == 400 and err.value.param == field
    assert field in err.value.message


def test_defaults_and_hints_are_accepted():
    body = translate({"messages": [{"role": "user", "content": "x"}], "n": 1, "logprobs": False,
                      "frequency_penalty": 0, "presence_penalty": 0.0, "logit_bias": {}, "store": False,
                      "modalities": ["text"], "service_tier": "auto", "parallel_tool_calls": True,
                      "metadata": {"k": "v"}, "prompt_cache_key": "abc", "stream_options": {"include_usage": True},
                      "reasoning_effort": "none", "seed": None, "stop": None})
    assert set(body) == {"model", "max_tokens", "messages"}


@pytest.mark.parametrize("messages, param", [
    ([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}],
     "messages[1].tool_calls[0].function.arguments"),
    ([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}],
     "messages[1].tool_calls[0].function.arguments"),
    ([{"role": "tool", "content": "r"}], "messages[0].tool_call_id"),
    ([{"role": "function", "name": "f", "content": "r"}], "messages[0].role"),
    ([{"role": "system", "content": "only a system prompt"}], "messages"),
    ([{"role": "user", "content": 5}], "messages[0].content"),
])
def test_malformed_messages_are_400s(messages, param):
    with pytest.raises(InvalidRequest) as err:
        translate({"messages": messages})
    assert err.value.param == param


def test_translation_never_mutates_the_request():
    body = {"model": "claude", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                              "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "now"},
    ], "tools": [TIME], "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "response_format": {"type": "json_object"}, "stop": ["x"]}
    before = copy.deepcopy(body)
    ADAPTER.chat_request(DEP, body, stream=True)
    assert body == before


# --------------------------------------------------------------------------- responses

# The tool-use answer from Anthropic's tool-use guide.
DOC_RESPONSE = {
    "id": "msg_01Aq9w938a90dw8q", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
         "input": {"location": "San Francisco, CA", "unit": "celsius"}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 384, "output_tokens": 67, "cache_creation_input_tokens": 100,
              "cache_read_input_tokens": 2000},
}


def test_response_with_text_and_tool_use():
    data, usage = ADAPTER.chat_response(DEP, orjson.dumps(DOC_RESPONSE), CTX)
    doc = orjson.loads(data)
    assert doc["object"] == "chat.completion" and doc["id"] == "msg_01Aq9w938a90dw8q"
    assert doc["created"] == 1700000000 and doc["model"] == "claude-sonnet-4-5-20250929"
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the current weather in San Francisco for you."
    assert choice["message"]["tool_calls"] == [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                                                "function": {"name": "get_weather",
                                                             "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'}}]
    # Prompt counts every input token: fresh, written to cache and read from it.
    assert usage == doc["usage"] == {"prompt_tokens": 2484, "completion_tokens": 67, "total_tokens": 2551,
                                     "prompt_tokens_details": {"cached_tokens": 2000}}
    openai.types.chat.ChatCompletion.model_validate(doc)


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("refusal", "content_filter"), ("tool_use", "tool_calls"),
    (None, "stop"), ("a_future_reason", "stop"),
])
def test_stop_reasons(stop_reason, finish):
    doc = {**message([{"type": "text", "text": "x"}]), "stop_reason": stop_reason}
    out = orjson.loads(ADAPTER.chat_response(DEP, orjson.dumps(doc), CTX)[0])
    assert out["choices"][0]["finish_reason"] == finish


def test_tool_only_answer_has_null_content():
    doc = message([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}], "tool_use")
    msg = orjson.loads(ADAPTER.chat_response(DEP, orjson.dumps(doc), CTX)[0])["choices"][0]["message"]
    assert msg["content"] is None and msg["tool_calls"][0]["function"]["arguments"] == "{}"


def test_garbage_response_is_a_protocol_error():
    with pytest.raises(UpstreamProtocolError):
        ADAPTER.chat_response(DEP, b"<html>", CTX)
    with pytest.raises(UpstreamProtocolError):
        ADAPTER.chat_response(DEP, b'{"type": "message"}', CTX)


# --------------------------------------------------------------------------- streams

# The tool-use stream of Anthropic's streaming guide (with cache counts added).
DOC_STREAM = b"".join(
    f"event: {json_type}\ndata: {payload}\n\n".encode()
    for json_type, payload in [
        ("message_start", '{"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-6","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2,"cache_creation_input_tokens":10,"cache_read_input_tokens":1500},"content":[],"stop_reason":null}}'),
        ("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
        ("ping", '{"type": "ping"}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" let\'s check the weather for San Francisco, CA:"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":0}'),
        ("content_block_start", '{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"San Fra"}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ncisc"}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o, CA\\""}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", \\"unit\\": \\"fah"}}'),
        ("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\\"}"}}'),
        ("content_block_stop", '{"type":"content_block_stop","index":1}'),
        ("message_delta", '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}'),
        ("message_stop", '{"type":"message_stop"}'),
    ]
)


def test_doc_stream_translates_text_tool_call_and_usage():
    tr = AnthropicStream(CTX_USAGE)
    out = tr.feed(DOC_STREAM) + tr.finish()
    chunks, done = parse_sse(out)
    assert done
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U" and c["model"] == "claude-opus-4-6" for c in chunks)
    result = accumulate(chunks)
    choice = result["choices"][0]
    assert choice["content"] == "Okay, let's check the weather for San Francisco, CA:"
    assert choice["tool_calls"] == [{"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                                     "arguments": '{"location": "San Francisco, CA", "unit": "fahrenheit"}'}]
    assert choice["finish_reason"] == "tool_calls"
    # Tool index counts tool blocks only: Anthropic's block 1 is OpenAI's tool 0.
    assert {tc["index"] for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []} == {0}
    expected = {"prompt_tokens": 1982, "completion_tokens": 89, "total_tokens": 2071,
                "prompt_tokens_details": {"cached_tokens": 1500}}
    assert result["usage"] == expected and tr.usage == expected
    assert chunks[-1]["choices"] == [] and all(c["usage"] is None for c in chunks[:-1])
    for c in chunks:
        openai.types.chat.ChatCompletionChunk.model_validate(c)


def test_doc_stream_split_at_every_byte_offset_gives_the_same_output():
    whole = feed_split(lambda: AnthropicStream(CTX_USAGE), DOC_STREAM, len(DOC_STREAM))
    for at in range(len(DOC_STREAM)):
        assert feed_split(lambda: AnthropicStream(CTX_USAGE), DOC_STREAM, at) == whole, at
    crlf = DOC_STREAM.replace(b"\n", b"\r\n")
    for at in range(0, len(crlf), 7):
        assert feed_split(lambda: AnthropicStream(CTX_USAGE), crlf, at) == whole, at


def test_tool_argument_deltas_are_relayed_as_they_arrive_with_include_usage():
    """The known failure: argument deltas held back and sent in one burst at the end."""
    tr = AnthropicStream(CTX_USAGE)
    events = [e + b"\n\n" for e in DOC_STREAM.split(b"\n\n") if e]
    pieces = []
    for e in events:
        out = tr.feed(e)
        if b'"input_json_delta"' in e and b'"partial_json":""' not in e:
            chunks, _ = parse_sse(out)
            assert len(chunks) == 1, e
            pieces.append(chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"])
        if b"message_delta" in e:
            assert b'"usage":{' not in out  # the usage chunk waits for message_stop
    assert "".join(pieces) == '{"location": "San Francisco, CA", "unit": "fahrenheit"}'
    assert len(pieces) == 6


def test_parallel_tool_calls_stream_with_stable_indexes():
    msg = message([
        {"type": "text", "text": "Let me look both up."},
        {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"location": "Paris"}},
        {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {"timezone": "Europe/Paris"}},
    ], "tool_use")
    data = b"".join(stream_events(msg, piece=3))
    tr = AnthropicStream(CTX)
    chunks, done = parse_sse(tr.feed(data) + tr.finish())
    choice = accumulate(chunks)["choices"][0]
    assert [(c["id"], c["name"], orjson.loads(c["arguments"])) for c in choice["tool_calls"]] == [
        ("toolu_A", "get_weather", {"location": "Paris"}), ("toolu_B", "get_time", {"timezone": "Europe/Paris"})]
    assert done and "usage" not in chunks[-1]


def test_message_delta_usage_replaces_start_counts_and_keeps_cache():
    events = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","content":[],'
        b'"usage":{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":1}}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"input_tokens":12,"output_tokens":30}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    tr = AnthropicStream(CTX_USAGE)
    chunks, _ = parse_sse(tr.feed(events) + tr.finish())
    assert chunks[-1]["usage"] == {"prompt_tokens": 102, "completion_tokens": 30, "total_tokens": 132,
                                   "prompt_tokens_details": {"cached_tokens": 90}}


def test_tool_block_without_argument_deltas_still_sends_valid_json():
    events = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t1","name":"now","input":{}}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":5}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    tr = AnthropicStream(CTX)
    choice = accumulate(parse_sse(tr.feed(events) + tr.finish())[0])["choices"][0]
    assert choice["tool_calls"] == [{"id": "t1", "name": "now", "arguments": "{}"}]


def test_stream_cut_before_message_stop_is_an_error():
    cut = DOC_STREAM[: DOC_STREAM.index(b"event: message_stop")]
    tr = AnthropicStream(CTX)
    tr.feed(cut)
    with pytest.raises(UpstreamProtocolError):
        tr.finish()


def test_error_event_mid_stream_is_a_retryable_overload():
    tr = AnthropicStream(CTX)
    tr.feed(DOC_STREAM[: DOC_STREAM.index(b"event: content_block_stop")])
    with pytest.raises(UpstreamStatusError) as err:
        tr.feed(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n')
    assert err.value.status == 503 and err.value.retryable and err.value.code == "overloaded_error"


def test_unknown_events_and_blocks_are_ignored_and_trailing_data_dropped():
    events = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","content":[],"usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
        b'event: brand_new_event\ndata: {"type":"brand_new_event","x":1}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    tr = AnthropicStream(CTX)
    out = tr.feed(events) + tr.feed(b'event: ping\ndata: {"type":"ping"}\n\n') + tr.finish()
    chunks, done = parse_sse(out)
    assert done and [c["choices"][0]["delta"].get("reasoning_content") for c in chunks][1] == "hmm"


# --------------------------------------------------------------------------- errors


def test_overloaded_529_becomes_a_retryable_503():
    err = ADAPTER.error_from_response(529, {}, orjson.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"}))
    assert err.status == 503 and err.retryable and err.code == "overloaded_error"
    assert err.message == "Overloaded (anthropic request_id req_1)"


def test_rate_limit_is_retryable_with_retry_after_and_bad_requests_are_not():
    err = ADAPTER.error_from_response(429, {"retry-after": "12"}, orjson.dumps(
        {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}}))
    assert err.status == 429 and err.retryable and err.retry_after == 12.0 and err.type == "rate_limit_error"
    bad = ADAPTER.error_from_response(400, {}, orjson.dumps(
        {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}))
    assert bad.status == 400 and not bad.retryable and bad.message == "max_tokens: Field required"
    html = ADAPTER.error_from_response(502, {}, b"<html>Bad gateway</html>")
    assert html.status == 502 and "Bad gateway" in html.message


def test_embeddings_are_refused():
    with pytest.raises(InvalidRequest) as err:
        ADAPTER.embeddings_request(DEP, {"model": "claude", "input": "x"})
    assert err.value.status == 400


# --------------------------------------------------------------------------- through the proxy


def proxy_config(url: str, max_tokens: str = "", fallback: str | None = None) -> str:
    """One Anthropic deployment and no retries, so each test sees exactly its own attempts;
    with ``fallback``, the model falls back to a second Anthropic provider at that URL."""
    second = f"b: {{type: anthropic, base_url: '{fallback or url}', api_key: sk-ant-1}}"
    return f"""
    providers:
      a: {{type: anthropic, base_url: '{url}', api_key: sk-ant-0}}
      {second}
    models:
      claude:
        deployments: [{{provider: a, model: claude-sonnet-4-5{max_tokens}}}]
        retry: {{retries: 0}}
        fallbacks: {"[claude-b]" if fallback else "[]"}
      claude-b:
        deployments: [{{provider: b, model: claude-sonnet-4-5}}]
        retry: {{retries: 0}}
    """


async def test_sdk_non_streaming_with_tools(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    api = AnthropicFake(DOC_RESPONSE)
    fake.responder = api
    proxy = await start_proxy(proxy_config(fake.url, max_tokens=", max_tokens: 2000"))
    client = openai_client(proxy)
    result = await client.chat.completions.create(
        model="claude", messages=[{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Weather in SF?"}],
        tools=[WEATHER], tool_choice="auto", temperature=0.2,
    )
    assert result.choices[0].finish_reason == "tool_calls"
    call = result.choices[0].message.tool_calls[0]
    assert call.id == "toolu_01A09q90qw90lq917835lq9" and call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"location": "San Francisco, CA", "unit": "celsius"}
    assert result.usage.prompt_tokens == 2484 and result.usage.prompt_tokens_details.cached_tokens == 2000
    sent = api.bodies[0]
    assert sent["max_tokens"] == 2000 and sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert fake.seen[0].headers["x-api-key"] == "sk-ant-0"


async def test_sdk_multi_turn_with_parallel_tool_results_is_accepted(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    api = AnthropicFake(message([{"type": "text", "text": "Paris: 18C at 14:00."}]))
    fake.responder = api
    proxy = await start_proxy(proxy_config(fake.url))
    client = openai_client(proxy)
    result = await client.chat.completions.create(model="claude", tools=[WEATHER, TIME], messages=[
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}},
            {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": '{"timezone":"CET"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "14:00"},
    ])
    assert result.choices[0].message.content == "Paris: 18C at 14:00."
    assert api.bodies[0]["max_tokens"] == 4096  # no client or deployment value: the fallback


async def test_sdk_streaming_with_tools_and_usage(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.responder = AnthropicFake(message([
        {"type": "text", "text": "Looking up both."},
        {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"location": "Paris", "unit": "celsius"}},
        {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {"timezone": "Europe/Paris"}},
    ], "tool_use", input_tokens=50, cache_read=1000, cache_write=20, output_tokens=77), piece=4)
    proxy = await start_proxy(proxy_config(fake.url))
    client = openai_client(proxy)
    stream = await client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Paris?"}], tools=[WEATHER, TIME],
        stream=True, stream_options={"include_usage": True})
    text, calls, finish, usage, after_finish = "", {}, None, None, []
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            if finish:
                after_finish.append(ch)
            text += ch.delta.content or ""
            for tc in ch.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "args": ""})
                slot["args"] += tc.function.arguments or ""
            finish = ch.finish_reason or finish
    assert text == "Looking up both." and finish == "tool_calls" and not after_finish
    assert [(c["id"], c["name"], orjson.loads(c["args"])) for _, c in sorted(calls.items())] == [
        ("toolu_A", "get_weather", {"location": "Paris", "unit": "celsius"}),
        ("toolu_B", "get_time", {"timezone": "Europe/Paris"})]
    assert usage.prompt_tokens == 1070 and usage.completion_tokens == 77 and usage.total_tokens == 1147
    assert usage.prompt_tokens_details.cached_tokens == 1000
    assert fake.seen[0].json["stream"] is True


async def test_overloaded_deployment_falls_over_to_the_next(start_proxy, fake_upstream, openai_client):
    busy, ok = await fake_upstream(), await fake_upstream()
    busy.script(Reply(status=529, json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    ok.responder = AnthropicFake()
    proxy = await start_proxy(proxy_config(busy.url, fallback=ok.url))
    client = openai_client(proxy)
    result = await client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == "Hello!"
    assert len(busy.seen) == 1 and len(ok.seen) == 1


async def test_overload_everywhere_reaches_the_client_as_503(start_proxy, fake_upstream, openai_client):
    busy = await fake_upstream()
    busy.script(Reply(status=529, json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    proxy = await start_proxy(proxy_config(busy.url))
    client = openai_client(proxy)
    with pytest.raises(openai.InternalServerError) as err:
        await client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 503
    assert err.value.body["code"] == "overloaded_error"


async def test_untranslatable_request_is_a_400_and_never_reaches_anthropic(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.responder = AnthropicFake()
    proxy = await start_proxy(proxy_config(fake.url))
    client = openai_client(proxy)
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], n=3)
    assert err.value.body["param"] == "n"
    assert fake.seen == []


def test_fake_rejects_what_the_real_api_rejects():
    """Keep the fake honest: requests a careless translation would send are refused."""
    api = AnthropicFake()
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}

    def ask(body: dict[str, Any], h: dict[str, str] = headers) -> Reply:
        return api(Seen("POST", "/v1/messages", {}, h, orjson.dumps(body)))

    ok = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert ask(ok).status == 200
    assert ask({**ok, "max_tokens": None}).status == 400
    assert ask(ok, {"x-api-key": "k"}).status == 400
    assert "system" in ask({**ok, "messages": [{"role": "system", "content": "s"}, *ok["messages"]]}).json["error"]["message"]
    assert ask({**ok, "messages": ok["messages"] * 2}).status == 400
    orphan = {**ok, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]}]}
    assert "tool_use_id" in ask(orphan).json["error"]["message"]
    unanswered = {**ok, "messages": [ok["messages"][0], {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}, {"role": "user", "content": "next"}]}
    assert "without `tool_result`" in ask(unanswered).json["error"]["message"]
    assert ask({**ok, "temperature": 1.5}).status == 400
    assert ask({**ok, "n": 2}).status == 400

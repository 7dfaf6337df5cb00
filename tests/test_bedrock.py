"""type: bedrock — Converse/ConverseStream translation, pure and through the real proxy.

The fake Bedrock server checks every request's SigV4 signature by recomputing
it with botocore from what actually arrived (the raw path, the headers named
in SignedHeaders, the body), the way AWS would, and answers a bad signature
with 403 InvalidSignatureException. Its event-stream frames are checked to be
what botocore's own ConverseStream parser reads.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import botocore.auth
import botocore.session
import openai
import orjson
import pytest
from aiohttp import web
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStream
from botocore.exceptions import EventStreamError as BotocoreEventStreamError
from botocore.parsers import EventStreamJSONParser

from llmproxy.config.tree import parse_config
from llmproxy.errors import (
    InvalidRequest,
    ProxyError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from llmproxy.providers.base import CallContext
from llmproxy.providers.bedrock import BedrockAdapter, converse_body

from .fakes import FakeUpstream, Reply
from .test_eventstream import encode_message

AK, SK = "AKIAFAKEFAKEFAKE", "fake/secret+key"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
CTX = CallContext(public_model="claude", request_id="req1", created=1700000000)
ADAPTER = BedrockAdapter()


def dep_for(extra: str = "", model: str = MODEL, env: dict[str, str] | None = None) -> Any:
    config = parse_config(f"""
    providers:
      aws:
        type: bedrock
        region: us-east-1
        {extra}
    models:
      claude: {{deployments: [{{provider: aws, model: "{model}"}}]}}
    """, env=env if env is not None else {"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK})
    return config.models["claude"].deployments[0]


# --------------------------------------------------------------------------- frames


def event(name: str, payload: dict[str, Any]) -> bytes:
    # Bedrock pads event payloads with a "p" field of varying length.
    body = orjson.dumps({**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[: 5 + len(name)]})
    return encode_message({":event-type": name, ":content-type": "application/json",
                           ":message-type": "event"}, body)


def exception(name: str, message: str) -> bytes:
    return encode_message({":exception-type": name, ":content-type": "application/json",
                           ":message-type": "exception"}, orjson.dumps({"message": message}))


TOOL_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me "}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "check ✓."}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("contentBlockStart", {"contentBlockIndex": 1,
                                "start": {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": '}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event("messageStop", {"stopReason": "tool_use"}),
    event("metadata", {"usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42,
                                 "cacheReadInputTokens": 5, "cacheWriteInputTokens": 0},
                       "metrics": {"latencyMs": 812}}),
]


def text_stream(*pieces: str) -> list[bytes]:
    return [
        event("messageStart", {"role": "assistant"}),
        *(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "end_turn"}),
        event("metadata", {"usage": {"inputTokens": 3, "outputTokens": len(pieces), "totalTokens": 3 + len(pieces)},
                           "metrics": {"latencyMs": 10}}),
    ]


def test_fake_frames_are_what_botocore_parses_as_converse_stream() -> None:
    shape = botocore.session.get_session().get_service_model("bedrock-runtime") \
        .operation_model("ConverseStream").output_shape.members["stream"]

    class Raw:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def stream(self) -> Any:
            yield self.data

    events = list(EventStream(Raw(b"".join(TOOL_STREAM)), shape, EventStreamJSONParser(), "ConverseStream"))
    assert [next(iter(e)) for e in events] == [
        "messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "contentBlockStart",
        "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]
    assert events[5]["contentBlockDelta"]["delta"]["toolUse"]["input"] == '{"city": '
    bad = EventStream(Raw(exception("throttlingException", "slow down")), shape, EventStreamJSONParser(),
                      "ConverseStream")
    with pytest.raises(BotocoreEventStreamError, match="throttlingException"):
        list(bad)


# --------------------------------------------------------------------------- requests


def test_request_translation_with_tools_images_and_history() -> None:
    body = {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "Thanks. Again?"},
        ],
        "max_completion_tokens": 512, "temperature": 0.2, "top_p": 0.9, "stop": "END", "top_k": 40,
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": True}},
            {"type": "function", "function": {"name": "get_time"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "n": 1, "user": "u-1", "stream_options": {"include_usage": True},
    }
    before = copy.deepcopy(body)
    doc = converse_body(body)
    assert body == before  # the input is never mutated
    assert doc["system"] == [{"text": "You are terse."}, {"text": "Use metric units."}]
    assert doc["messages"] == [
        {"role": "user", "content": [
            {"text": "Weather here?"},
            {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]},
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "get_time", "input": {}}}]},
        # Tool results and the next user turn merge into one user message (roles alternate).
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "noon"}]}},
            {"text": "Thanks. Again?"}]},
    ]
    assert doc["inferenceConfig"] == {"maxTokens": 512, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}
    assert doc["additionalModelRequestFields"] == {"top_k": 40}
    assert doc["toolConfig"] == {
        "tools": [
            {"toolSpec": {"name": "get_weather", "description": "Weather for a city", "strict": True,
                          "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}},
            {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {}}}}}],
        "toolChoice": {"tool": {"name": "get_weather"}},
    }


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"auto": {}}), ("required", {"any": {}}), (None, None), ("none", "no-tools"),
])
def test_tool_choice_mapping(choice: str | None, expected: Any) -> None:
    body = {"messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice}
    doc = converse_body(body)
    if expected == "no-tools":
        assert "toolConfig" not in doc  # Converse has no "none": the tools are left out
    else:
        assert doc["toolConfig"].get("toolChoice") == expected


def test_json_schema_response_format_becomes_output_config() -> None:
    doc = converse_body({"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}}})
    assert doc["outputConfig"] == {"textFormat": {"type": "json_schema", "structure": {
        "jsonSchema": {"schema": '{"type":"object"}', "name": "out"}}}}


@pytest.mark.parametrize("extra, param", [
    ({"seed": 7}, "seed"),
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
])
def test_what_bedrock_cannot_do_is_a_400_naming_the_field(extra: dict[str, Any], param: str) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], **extra}
    with pytest.raises(InvalidRequest) as info:
        converse_body(body)
    assert info.value.status == 400 and info.value.param == param


def test_neutral_values_of_unsupported_fields_are_accepted() -> None:
    converse_body({"messages": [{"role": "user", "content": "x"}], "n": 1, "logprobs": False,
                   "presence_penalty": 0, "frequency_penalty": 0.0, "seed": None, "parallel_tool_calls": True})


def test_chat_request_url_headers_and_signing_data() -> None:
    dep = dep_for()
    req = ADAPTER.chat_request(dep, {"messages": [{"role": "user", "content": "hi"}]}, stream=True)
    assert req.url == ("https://bedrock-runtime.us-east-1.amazonaws.com/model/"
                       "anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream")
    assert req.headers["Accept"] == "application/vnd.amazon.eventstream"
    assert "Authorization" not in req.headers
    signing = req.aws_sigv4
    assert signing is not None and signing.region == "us-east-1" and signing.service == "bedrock"
    assert signing.access_key == AK and SK not in repr(signing)
    assert orjson.loads(req.body) == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}


def test_bedrock_api_key_is_a_bearer_token_without_signing() -> None:
    req = ADAPTER.chat_request(dep_for("api_key: bedrock-api-key", env={}),
                               {"messages": [{"role": "user", "content": "hi"}]}, stream=False)
    assert req.headers["Authorization"] == "Bearer bedrock-api-key" and req.aws_sigv4 is None
    assert req.url.endswith("/converse")


def test_missing_credentials_are_named_not_sent_unsigned() -> None:
    with pytest.raises(ProxyError) as info:
        ADAPTER.chat_request(dep_for(env={}), {"messages": [{"role": "user", "content": "hi"}]}, stream=False)
    assert info.value.status == 500 and "AWS_ACCESS_KEY_ID" in info.value.message


def test_config_takes_region_and_credentials_from_env_as_a_set() -> None:
    env = {"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "envak", "AWS_SECRET_ACCESS_KEY": "envsk",
           "AWS_SESSION_TOKEN": "envtok"}
    config = parse_config("""
    providers:
      a: {type: bedrock}
      b: {type: bedrock, region: us-west-2, aws_access_key_id: yamlak, aws_secret_access_key: yamlsk}
    models:
      m: {deployments: [{provider: a, model: x}, {provider: b, model: y}]}
    """, env=env)
    a, b = config.providers["a"], config.providers["b"]
    assert a.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert dict(a.options) == {"region": "eu-west-1", "aws_access_key_id": "envak",
                               "aws_secret_access_key": "envsk", "aws_session_token": "envtok"}
    assert b.base_url == "https://bedrock-runtime.us-west-2.amazonaws.com"
    assert dict(b.options) == {"region": "us-west-2", "aws_access_key_id": "yamlak",
                               "aws_secret_access_key": "yamlsk"}  # never mixed with env


def test_config_errors_for_bedrock() -> None:
    from llmproxy.config.tree import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config("""
        providers:
          a: {type: bedrock}
          b: {type: bedrock, region: us-east-1, aws_access_key_id: only-half}
        models:
          m: {deployments: [{provider: a, model: x}, {provider: b, model: y}]}
        """, env={})
    text = "\n".join(info.value.problems)
    assert "providers.a.region: is required for type bedrock" in text
    assert "providers.b: set both aws_access_key_id and aws_secret_access_key" in text


# --------------------------------------------------------------------------- answers


def test_converse_response_with_text_and_tool_use() -> None:
    data = orjson.dumps({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42, "cacheReadInputTokens": 8},
        "metrics": {"latencyMs": 812},
    })
    out, usage = ADAPTER.chat_response(dep_for(), data, CTX)
    doc = orjson.loads(out)
    assert doc["object"] == "chat.completion" and doc["model"] == MODEL and doc["created"] == 1700000000
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    assert choice["message"]["tool_calls"] == [{"id": "tooluse_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert usage == doc["usage"] == {"prompt_tokens": 38, "completion_tokens": 12, "total_tokens": 50,
                                     "prompt_tokens_details": {"cached_tokens": 8}}


@pytest.mark.parametrize("reason, finish", [("end_turn", "stop"), ("max_tokens", "length"),
                                            ("guardrail_intervened", "content_filter"),
                                            ("stop_sequence", "stop")])
def test_stop_reasons(reason: str, finish: str) -> None:
    data = orjson.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
                         "stopReason": reason, "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}})
    assert orjson.loads(ADAPTER.chat_response(dep_for(), data, CTX)[0])["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize("status, error_type, expected, retryable", [
    (429, "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", 429, True),
    (400, "ValidationException", 400, False),
    (400, "ServiceQuotaExceededException", 429, True),
    (424, "ModelErrorException", 502, True),
    (408, "ModelTimeoutException", 408, True),
    (503, "ServiceUnavailableException", 503, True),
    (403, "AccessDeniedException", 403, False),
    (500, "", 500, True),
])
def test_unary_errors_map_to_retryable_statuses(status: int, error_type: str, expected: int,
                                                 retryable: bool) -> None:
    headers = {"x-amzn-ErrorType": error_type} if error_type else {}
    err = ADAPTER.error_from_response(status, headers, b'{"message":"nope"}')
    assert (err.status, err.retryable, err.message) == (expected, retryable, "nope")
    if error_type:
        assert err.code == error_type.split(":")[0]


def test_error_code_from_body_type_when_no_header() -> None:
    err = ADAPTER.error_from_response(400, {}, b'{"__type":"com.amazon#ThrottlingException","message":"m"}')
    assert err.status == 429 and err.code == "ThrottlingException"


# --------------------------------------------------------------------------- streams


STREAM_DEP = dep_for()


def sse_events(data: bytes) -> list[Any]:
    out: list[Any] = []
    for block in data.split(b"\n\n"):
        if block:
            assert block.startswith(b"data: ")
            payload = block[6:]
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def run_stream(pieces: list[bytes], include_usage: bool = True) -> list[Any]:
    ctx = CallContext(public_model="claude", request_id="req1", created=1, include_usage=include_usage)
    tr = ADAPTER.chat_stream(STREAM_DEP, ctx)
    out = b"".join(tr.feed(p) for p in pieces) + tr.finish()
    return sse_events(out)


def test_stream_translation_text_then_tool_use() -> None:
    events = run_stream(TOOL_STREAM)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-req1" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Let me check ✓."
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "tooluse_abc", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert "".join(tc["function"]["arguments"] for tc in calls) == '{"city": "Paris"}'
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 35, "completion_tokens": 12, "total_tokens": 47,
        "prompt_tokens_details": {"cached_tokens": 5}}


def test_stream_split_at_every_byte_boundary_gives_the_same_answer() -> None:
    data = b"".join(TOOL_STREAM)
    whole = run_stream([data])
    for cut in range(1, len(data)):
        assert run_stream([data[:cut], data[cut:]]) == whole, cut
    assert run_stream([data[i : i + 1] for i in range(len(data))]) == whole


def test_stream_usage_is_kept_even_when_the_client_did_not_ask_for_the_chunk() -> None:
    ctx = CallContext(public_model="claude", request_id="r", created=1, include_usage=False)
    tr = ADAPTER.chat_stream(dep_for(), ctx)
    events = sse_events(tr.feed(b"".join(text_stream("a", "b"))) + tr.finish())
    assert all(e == "[DONE]" or e["choices"] for e in events)
    assert tr.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_corrupted_crc_in_the_stream_is_an_error_not_a_hang() -> None:
    frames = text_stream("a", "b")
    bad = bytearray(frames[2])
    bad[-2] ^= 0x10
    tr = ADAPTER.chat_stream(dep_for(), CTX)
    tr.feed(frames[0] + frames[1])
    with pytest.raises(UpstreamProtocolError, match="checksum"):
        tr.feed(bytes(bad))


def test_exception_frame_after_text_delivers_the_text_then_raises() -> None:
    tr = ADAPTER.chat_stream(dep_for(), CTX)
    first = tr.feed(b"".join(text_stream("partial")[:2]) + exception("throttlingException", "Too many tokens"))
    assert [e["choices"][0]["delta"].get("content") for e in sse_events(first)] == ["", "partial"]
    with pytest.raises(UpstreamStatusError) as info:
        tr.finish()
    assert info.value.status == 429 and info.value.retryable and info.value.message == "Too many tokens"


def test_exception_frame_first_raises_at_once_so_the_router_can_retry() -> None:
    tr = ADAPTER.chat_stream(dep_for(), CTX)
    with pytest.raises(UpstreamStatusError) as info:
        tr.feed(exception("modelStreamErrorException", "model broke"))
    assert info.value.status == 502 and info.value.retryable
    tr = ADAPTER.chat_stream(dep_for(), CTX)
    with pytest.raises(UpstreamStatusError) as info:
        tr.feed(exception("validationException", "bad input"))
    assert info.value.status == 400 and not info.value.retryable


@pytest.mark.parametrize("keep", [0, 3, 4])
def test_stream_cut_before_message_stop_is_an_error(keep: int) -> None:
    tr = ADAPTER.chat_stream(dep_for(), CTX)
    tr.feed(b"".join(text_stream("a", "b")[:keep]))
    with pytest.raises(UpstreamProtocolError, match="messageStop"):
        tr.finish()


def test_stream_cut_mid_frame_is_an_error() -> None:
    data = b"".join(text_stream("a"))
    tr = ADAPTER.chat_stream(dep_for(), CTX)
    tr.feed(data[:-3])
    with pytest.raises(UpstreamProtocolError, match="middle of an event"):
        tr.finish()


def test_stream_without_metadata_after_message_stop_still_ends_cleanly() -> None:
    events = run_stream(text_stream("a")[:-1])
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


# --------------------------------------------------------------------------- embeddings


def test_titan_embeddings_one_text_per_call() -> None:
    dep = dep_for(model="amazon.titan-embed-text-v2:0")
    req = ADAPTER.embeddings_request(dep, {"model": "e", "input": "hello", "dimensions": 256})
    assert req.url.endswith("/model/amazon.titan-embed-text-v2%3A0/invoke")
    assert orjson.loads(req.body) == {"inputText": "hello", "dimensions": 256}
    with pytest.raises(InvalidRequest):
        ADAPTER.embeddings_request(dep, {"model": "e", "input": ["a", "b"]})
    out, usage = ADAPTER.embeddings_response(dep, b'{"embedding":[0.5,-0.25],"inputTextTokenCount":2}', CTX)
    assert orjson.loads(out)["data"] == [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}]
    assert usage == {"prompt_tokens": 2, "total_tokens": 2}


def test_cohere_on_bedrock_embeddings_are_batched() -> None:
    dep = dep_for(model="cohere.embed-english-v3")
    req = ADAPTER.embeddings_request(dep, {"model": "e", "input": ["a", "b"], "input_type": "search_query"})
    assert orjson.loads(req.body) == {"texts": ["a", "b"], "input_type": "search_query"}
    out, _ = ADAPTER.embeddings_response(dep, b'{"embeddings":[[1.0],[2.0]],"id":"x","texts":["a","b"]}', CTX)
    assert [d["embedding"] for d in orjson.loads(out)["data"]] == [[1.0], [2.0]]


# --------------------------------------------------------------------------- through the proxy


def verify_sigv4(request: web.Request, body: bytes, secrets: dict[str, str]) -> str | None:
    """Recompute the signature with botocore from what arrived; None if it matches."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return "missing SigV4 Authorization"
    fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    ak, day, region, service, _ = fields["Credential"].split("/")
    if ak not in secrets or service != "bedrock":
        return f"unknown key {ak} or service {service}"
    amz_date = request.headers["X-Amz-Date"]
    stamp = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    if abs((datetime.now(timezone.utc) - stamp).total_seconds()) > 300:
        return "request time too skewed"  # AWS rejects signatures older than 5 minutes
    signed = fields["SignedHeaders"].split(";")
    headers = {h: request.headers[h] for h in signed if h not in ("host", "x-amz-date", "x-amz-security-token")}
    url = f"http://{request.headers['Host']}{request.raw_path}"
    req = AWSRequest(request.method, url, headers=headers, data=body)
    token = request.headers.get("X-Amz-Security-Token")
    signer = botocore.auth.SigV4Auth(Credentials(ak, secrets[ak], token), "bedrock", region)
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: stamp.replace(tzinfo=None)
    try:
        signer.add_auth(req)
    finally:
        botocore.auth.get_current_datetime = original
    expected = req.headers["Authorization"]
    expected = expected.decode() if isinstance(expected, bytes) else expected
    return None if expected == auth else f"signature mismatch: expected {expected}"


class FakeBedrock(FakeUpstream):
    """A FakeUpstream that insists on a valid SigV4 signature (or a known Bedrock API key)."""

    def __init__(self, secrets: dict[str, str], bearer: str | None = None) -> None:
        super().__init__()
        self.secrets = secrets
        self.bearer = bearer
        self.raw_paths: list[str] = []
        self.tokens: list[str | None] = []
        self.rejected: list[str] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.raw_paths.append(request.raw_path)
        self.tokens.append(request.headers.get("X-Amz-Security-Token"))
        if self.bearer is not None and request.headers.get("Authorization") == f"Bearer {self.bearer}":
            problem = None
        else:
            problem = verify_sigv4(request, body, self.secrets)
        if problem is not None:
            self.rejected.append(problem)
            return web.json_response({"message": problem}, status=403,
                                     headers={"x-amzn-ErrorType": "InvalidSignatureException"})
        return await super()._handle(request)


MakeFake = Callable[..., Awaitable[FakeBedrock]]


@pytest.fixture
async def fake_bedrock() -> AsyncIterator[MakeFake]:
    fakes: list[FakeBedrock] = []

    async def make(bearer: str | None = None) -> FakeBedrock:
        fake = FakeBedrock({AK: SK}, bearer)
        await fake.start()
        fakes.append(fake)
        return fake

    yield make
    for f in fakes:
        await f.close()


def bedrock_yaml(*urls: str, creds: bool = True, model: str = MODEL) -> str:
    providers = "\n".join(
        f"""      aws{i}:
        type: bedrock
        region: us-east-1
        base_url: {url}
""" + (f"""        aws_access_key_id: {AK}
        aws_secret_access_key: "{SK}"
""" if creds else "") for i, url in enumerate(urls))
    deps = ", ".join(f'{{provider: aws{i}, model: "{model}"}}' for i in range(len(urls)))
    return f"""
    providers:
{providers}
    models:
      claude: {{deployments: [{deps}]}}
    """


CONVERSE_TOOL_ANSWER = {
    "output": {"message": {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "tooluse_9", "name": "get_weather", "input": {"city": "Paris"}}}]}},
    "stopReason": "tool_use",
    "usage": {"inputTokens": 20, "outputTokens": 9, "totalTokens": 29},
    "metrics": {"latencyMs": 300},
}


async def test_unary_chat_signed_path_is_the_wire_path(start_proxy, fake_bedrock, openai_client) -> None:
    fake = await fake_bedrock()
    fake.script(Reply(json=CONVERSE_TOOL_ANSWER))
    proxy = await start_proxy(bedrock_yaml(fake.url))
    client = openai_client(proxy)
    result = await client.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                               {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}]}],
        tools=[{"type": "function", "function": {"name": "get_weather",
                                                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        max_tokens=100,
    )
    assert fake.rejected == []
    assert fake.raw_paths == ["/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"]
    call = result.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("tooluse_9", "get_weather", '{"city":"Paris"}')
    assert result.choices[0].finish_reason == "tool_calls"
    assert result.usage is not None and result.usage.total_tokens == 29
    sent = fake.seen[0].json
    assert sent["system"] == [{"text": "Be brief."}]
    assert sent["messages"][0]["content"][1] == {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}}
    assert sent["inferenceConfig"] == {"maxTokens": 100}
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"


async def test_streaming_through_the_proxy(start_proxy, fake_bedrock, openai_client) -> None:
    fake = await fake_bedrock()
    data = b"".join(TOOL_STREAM)
    # Odd-sized writes so frames arrive split across reads.
    fake.script(Reply(stream=[data[i : i + 37] for i in range(0, len(data), 37)],
                      content_type="application/vnd.amazon.eventstream"))
    proxy = await start_proxy(bedrock_yaml(fake.url))
    client = openai_client(proxy)
    stream = await client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "weather?"}], stream=True,
        stream_options={"include_usage": True},
    )
    text, args, finishes, usage = "", "", [], None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                args += tc.function.arguments or ""
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    assert fake.rejected == []
    assert fake.raw_paths == ["/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"]
    assert text == "Let me check ✓." and args == '{"city": "Paris"}' and finishes == ["tool_calls"]
    assert usage is not None and usage.prompt_tokens == 35 and usage.completion_tokens == 12


async def test_env_credentials_with_session_token(start_proxy, fake_bedrock, openai_client) -> None:
    fake = await fake_bedrock()
    fake.script(Reply(json={"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
                            "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                            "metrics": {"latencyMs": 1}}))
    proxy = await start_proxy(bedrock_yaml(fake.url, creds=False),
                              env={"AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK, "AWS_SESSION_TOKEN": "sess-tok"})
    result = await openai_client(proxy).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "x"}])
    assert result.choices[0].message.content == "ok"
    assert fake.rejected == [] and fake.tokens == ["sess-tok"]


async def test_wrong_secret_is_rejected_by_the_fake(start_proxy, fake_bedrock, openai_client) -> None:
    fake = await fake_bedrock()
    proxy = await start_proxy(bedrock_yaml(fake.url).replace(SK, "not-the-secret"))
    with pytest.raises(openai.PermissionDeniedError) as info:
        await openai_client(proxy).chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 403 and "signature mismatch" in info.value.message
    assert len(fake.seen) == 0 and len(fake.rejected) == 1


async def test_bedrock_api_key_through_the_proxy(start_proxy, fake_bedrock, openai_client) -> None:
    fake = await fake_bedrock(bearer="brk-key")
    fake.script(Reply(json={"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
                            "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                            "metrics": {"latencyMs": 1}}))
    yaml_text = bedrock_yaml(fake.url, creds=False).replace("region: us-east-1", "region: us-east-1\n        api_key: brk-key")
    proxy = await start_proxy(yaml_text)
    result = await openai_client(proxy).chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert result.choices[0].message.content == "ok" and fake.rejected == []


async def test_throttling_moves_to_the_next_deployment(start_proxy, fake_bedrock, openai_client) -> None:
    fake = await fake_bedrock()
    fake.script(
        Reply(status=429, json={"message": "Too many requests, please wait before trying again."},
              headers={"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"}),
        Reply(json={"output": {"message": {"role": "assistant", "content": [{"text": "second"}]}},
                    "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                    "metrics": {"latencyMs": 1}}),
    )
    proxy = await start_proxy(bedrock_yaml(fake.url, fake.url))
    result = await openai_client(proxy).chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert result.choices[0].message.content == "second" and len(fake.seen) == 2


async def test_validation_error_is_not_retried(start_proxy, fake_bedrock, openai_client) -> None:
    fake = await fake_bedrock()
    fake.script(Reply(status=400, json={"message": "Malformed input request"},
                      headers={"x-amzn-ErrorType": "ValidationException"}))
    proxy = await start_proxy(bedrock_yaml(fake.url, fake.url))
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "ValidationException" and "Malformed" in info.value.message
    assert len(fake.seen) == 1


async def test_corrupted_frame_mid_stream_ends_with_an_error_event(start_proxy, fake_bedrock, openai_client) -> None:
    fake = await fake_bedrock()
    frames = text_stream("one ", "two")
    bad = bytearray(frames[2])
    bad[20] ^= 0x01
    resume = asyncio.Event()
    fake.script(Reply(stream=[frames[0] + frames[1], bytes(bad), *frames[3:]], pause_after=1, resume=resume,
                      content_type="application/vnd.amazon.eventstream"))
    proxy = await start_proxy(bedrock_yaml(fake.url))
    stream = await openai_client(proxy).chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "x"}], stream=True)
    got = []
    with pytest.raises(openai.APIError, match="checksum"):
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content)
            if len(got) == 2:
                resume.set()
    assert got == ["", "one "]


async def test_titan_embeddings_through_the_proxy(start_proxy, fake_bedrock, openai_client) -> None:
    fake = await fake_bedrock()
    fake.script(Reply(json={"embedding": [0.125, -0.5], "inputTextTokenCount": 3}))
    proxy = await start_proxy(bedrock_yaml(fake.url, model="amazon.titan-embed-text-v2:0").replace("claude:", "emb:"))
    result = await openai_client(proxy).embeddings.create(model="emb", input="hello there", encoding_format="float")
    assert result.data[0].embedding == [0.125, -0.5] and result.usage.prompt_tokens == 3
    assert fake.raw_paths == ["/model/amazon.titan-embed-text-v2%3A0/invoke"] and fake.rejected == []
    assert fake.seen[0].json == {"inputText": "hello there"}


def test_deployment_max_tokens_is_the_default() -> None:
    config = parse_config("""
    providers:
      aws: {type: bedrock, region: us-east-1, aws_access_key_id: a, aws_secret_access_key: b}
    models:
      m: {deployments: [{provider: aws, model: x, max_tokens: 99}]}
    """, env={})
    dep = config.models["m"].deployments[0]
    body = {"messages": [{"role": "user", "content": "x"}]}
    assert orjson.loads(ADAPTER.chat_request(dep, body, stream=False).body)["inferenceConfig"] == {"maxTokens": 99}
    body["max_tokens"] = 5
    assert orjson.loads(ADAPTER.chat_request(dep, body, stream=False).body)["inferenceConfig"] == {"maxTokens": 5}


def test_image_links_are_listed_for_fetch_only_when_the_provider_allows_it() -> None:
    from llmproxy.upstream.images import inline_image_urls

    body = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}
    assert ADAPTER.image_urls_to_fetch(dep_for(), body) == []
    allowed = dep_for("allow_image_urls: true")
    assert ADAPTER.image_urls_to_fetch(allowed, body) == ["https://example.com/cat.png"]
    inlined = inline_image_urls(body, {"https://example.com/cat.png": "data:image/jpeg;base64,/9j/4AAQ"})
    blocks = converse_body(inlined)["messages"][0]["content"]
    assert blocks[0] == {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}}
    with pytest.raises(InvalidRequest, match="allow_image_urls"):
        converse_body(body)

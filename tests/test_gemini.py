"""The Gemini / Vertex AI adapter: pure translation with payloads from Google's docs, then
the real proxy against a fake Gemini API that rejects what the real one rejects."""

from __future__ import annotations

import base64
import copy
import struct
from typing import Any

import openai
import orjson
import pytest

from llmproxy.config.tree import parse_config
from llmproxy.errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from llmproxy.providers import adapter_for
from llmproxy.providers.base import CallContext
from llmproxy.providers.gemini import GeminiStream, call_id, thought_signature
from llmproxy.upstream.images import inline_image_urls

from .fakes import Reply, Seen
from .fakes_anthropic import accumulate, feed_split, parse_sse
from .fakes_gemini import GeminiFake, check_body, error, response, sse_events

ADAPTER = adapter_for("gemini")
CTX = CallContext(public_model="gem", request_id="req-1", created=1700000000)
CTX_USAGE = CallContext(public_model="gem", request_id="req-1", created=1700000000, include_usage=True)
SIGNATURE = "CiIBVKhc7oDPpCaXyJKKssjqr4g3JNOSgJ/M2V+1THC1icsWCmwBVKhc7pb1WUTx1Ct6/3cSZw=="


def deps(yaml_providers: str, model: str = "gemini-2.5-flash"):
    cfg = parse_config(f"""
    providers:
{yaml_providers}
    models:
      gem: {{deployments: [{{provider: p, model: {model}}}]}}
    """, env={})
    return cfg.models["gem"].deployments[0]


DEP = deps("      p: {type: gemini, api_key: AIza-secret}")


def translate(body: dict[str, Any], d=None) -> dict[str, Any]:
    req = (adapter_for((d or DEP).provider.type)).chat_request(d or DEP, {"model": "gem", **body}, stream=False)
    return orjson.loads(req.body)


def valid(body: dict[str, Any]) -> None:
    problem = check_body(body)
    assert problem is None, problem


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"],
                   "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"timezone": {"type": "string"}}}}}


# --------------------------------------------------------------------------- URLs and auth


def test_gemini_urls_and_headers():
    req = ADAPTER.chat_request(DEP, {"model": "gem", "messages": [{"role": "user", "content": "x"}]}, stream=True)
    assert req.url == ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
                       ":streamGenerateContent?alt=sse")
    assert req.headers["x-goog-api-key"] == "AIza-secret" and "Authorization" not in req.headers
    unary = ADAPTER.chat_request(DEP, {"model": "gem", "messages": [{"role": "user", "content": "x"}]}, stream=False)
    assert unary.url.endswith("/v1beta/models/gemini-2.5-flash:generateContent")
    tuned = deps("      p: {type: gemini, api_key: k, api_version: v1, base_url: 'http://h:1'}", "tunedModels/my-1")
    assert ADAPTER.chat_request(tuned, {"messages": [{"role": "user", "content": "x"}]}, stream=False).url == \
        "http://h:1/v1/tunedModels/my-1:generateContent"
    versioned = deps("      p: {type: gemini, base_url: 'http://h:1/v1beta'}")
    assert ADAPTER.chat_request(versioned, {"messages": [{"role": "user", "content": "x"}]}, stream=False).url == \
        "http://h:1/v1beta/models/gemini-2.5-flash:generateContent"


@pytest.mark.parametrize("provider, model, url", [
    ("{type: vertex, api_key: ya29.tok, project: my-proj, location: us-central1}", "gemini-2.5-pro",
     "https://us-central1-aiplatform.googleapis.com/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent"),
    ("{type: vertex, api_key: ya29.tok, project: my-proj}", "gemini-2.5-pro",
     "https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global/publishers/google/models/gemini-2.5-pro:generateContent"),
    ("{type: vertex, api_key: ya29.tok, project: my-proj, location: eu, api_version: v1beta1}", "gemini-2.5-pro",
     "https://aiplatform.eu.rep.googleapis.com/v1beta1/projects/my-proj/locations/eu/publishers/google/models/gemini-2.5-pro:generateContent"),
    ("{type: vertex, api_key: express-key}", "gemini-2.5-flash",
     "https://aiplatform.googleapis.com/v1/publishers/google/models/gemini-2.5-flash:generateContent"),
    ("{type: vertex, api_key: t, project: p, location: europe-west4, base_url: 'http://fake:9'}", "google/gemini-2.0-flash-001",
     "http://fake:9/v1/projects/p/locations/europe-west4/publishers/google/models/gemini-2.0-flash-001:generateContent"),
])
def test_vertex_urls(provider, model, url):
    d = deps(f"      p: {provider}", model)
    assert adapter_for("vertex").chat_request(d, {"messages": [{"role": "user", "content": "x"}]}, stream=False).url == url


def test_vertex_auth_headers():
    d = deps("      p: {type: vertex, api_key: ya29.tok, project: my-proj, quota_project: billing-proj}")
    headers = adapter_for("vertex").chat_request(d, {"messages": [{"role": "user", "content": "x"}]}, stream=False).headers
    assert headers["Authorization"] == "Bearer ya29.tok" and headers["x-goog-user-project"] == "billing-proj"
    assert "x-goog-api-key" not in headers
    express = deps("      p: {type: vertex, api_key: express-key}")
    assert adapter_for("vertex").chat_request(express, {"messages": [{"role": "user", "content": "x"}]},
                                              stream=False).headers["x-goog-api-key"] == "express-key"


def test_vertex_token_comes_from_a_mounted_file(tmp_path):
    (tmp_path / "token").write_text("ya29.from-file\n")
    cfg = parse_config(f"""
    providers:
      p: {{type: vertex, api_key_file: {tmp_path / 'token'}, project: pr, location: us-east5}}
    models:
      gem: {{deployments: [{{provider: p, model: gemini-2.5-pro}}]}}
    """, env={})
    d = cfg.models["gem"].deployments[0]
    req = adapter_for("vertex").chat_request(d, {"messages": [{"role": "user", "content": "x"}]}, stream=False)
    assert req.headers["Authorization"] == "Bearer ya29.from-file"


# --------------------------------------------------------------------------- requests


def test_system_roles_and_merging():
    body = translate({"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Metric units."}]},
        {"role": "user", "content": "one"}, {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "a"}, {"role": "assistant", "refusal": "I can't.", "content": None},
        {"role": "user", "content": "three"},
    ]})
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}, {"text": "Metric units."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "a"}, {"text": "I can't."}]},
        {"role": "user", "parts": [{"text": "three"}]},
    ]
    valid(body)


def test_parallel_tool_calls_and_results_with_thought_signature():
    first = call_id("call_r1_0_0", SIGNATURE)
    body = translate({"tools": [WEATHER, TIME], "messages": [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": first, "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}},
            {"id": "call_r1_0_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_r1_0_1", "content": "14:00"},
        {"role": "tool", "tool_call_id": first, "content": '{"temp": 18}'},
        {"role": "user", "content": "Thanks"},
    ]})
    assert body["contents"][1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": SIGNATURE},
        {"functionCall": {"name": "get_time", "args": {}}},
    ]}
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_time", "response": {"output": "14:00"}}},
        {"functionResponse": {"name": "get_weather", "response": {"output": '{"temp": 18}'}}},
        {"text": "Thanks"},
    ]}
    valid(body)


def test_thought_signature_survives_the_id_round_trip():
    cid = call_id("call_x", SIGNATURE)
    assert all(c.isalnum() or c in "_-" for c in cid)  # safe for any provider, Anthropic included
    assert thought_signature(cid) == SIGNATURE
    assert thought_signature("call_x") is None and call_id("call_x", None) == "call_x"


def test_tool_result_for_an_unknown_call_is_a_400():
    with pytest.raises(InvalidRequest) as err:
        translate({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}]})
    assert err.value.param == "messages[1].tool_call_id"


def test_media_parts():
    body = translate({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/scan.PNG"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0xLjQ="}},
    ]}]})
    assert body["contents"][0]["parts"] == [
        {"text": "Describe"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/scan.PNG"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQ="}},
    ]
    valid(body)


def test_image_urls_are_refused_unless_allowed_and_fetched():
    msg = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}
    with pytest.raises(InvalidRequest) as err:
        translate(msg)
    # The same refusal as every provider that takes image bytes only (translate.refuse_image_link).
    assert err.value.param == "messages[0].content[0]" and err.value.code == "unsupported_image_url"
    assert "base64 data URLs" in err.value.message and "allow_image_urls: true" in err.value.message
    assert ADAPTER.image_urls_to_fetch(DEP, msg) == []
    allowed = deps("      p: {type: gemini, api_key: k, allow_image_urls: true}")
    assert ADAPTER.image_urls_to_fetch(allowed, msg) == ["https://example.com/cat.png"]
    with pytest.raises(InvalidRequest):
        translate(msg, allowed)  # never sends the URL itself
    fetched = inline_image_urls({"model": "gem", **msg}, {"https://example.com/cat.png": "data:image/png;base64,iVBORw=="})
    assert translate(fetched, allowed)["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw=="}}]
    assert msg["messages"][0]["content"][0]["image_url"]["url"] == "https://example.com/cat.png"


def test_generation_config():
    body = translate({"messages": [{"role": "user", "content": "x"}], "temperature": 1.7, "top_p": 0.8,
                      "top_k": 32, "max_tokens": 256, "stop": "END", "n": 2, "seed": 7,
                      "presence_penalty": 0.5, "frequency_penalty": -0.5, "logprobs": True, "top_logprobs": 3,
                      "reasoning_effort": "low", "user": "ignored-user",
                      "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {
                          "type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}}}})
    assert body["generationConfig"] == {
        "temperature": 1.7, "topP": 0.8, "topK": 32, "maxOutputTokens": 256, "stopSequences": ["END"],
        "candidateCount": 2, "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": -0.5,
        "responseLogprobs": True, "logprobs": 3, "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
        "thinkingConfig": {"thinkingBudget": 1024},
    }
    valid(body)
    json_object = translate({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"},
                             "max_completion_tokens": 9})
    assert json_object["generationConfig"] == {"responseMimeType": "application/json", "maxOutputTokens": 9}


@pytest.mark.parametrize("choice, config", [
    (None, None), ("auto", None), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "get_time"}}, {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
])
def test_tools_and_tool_choice(choice, config):
    body = translate({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER, TIME], "tool_choice": choice})
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Get the current weather",
         "parametersJsonSchema": WEATHER["function"]["parameters"]},
        {"name": "get_time", "parametersJsonSchema": TIME["function"]["parameters"]}]}]
    assert body.get("toolConfig") == ({"functionCallingConfig": config} if config else None)
    valid(body)


def test_allowed_tools_and_parallel_tool_calls():
    body = translate({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER, TIME],
                      "tool_choice": {"type": "allowed_tools", "allowed_tools": {
                          "mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}}})
    assert [d["name"] for d in body["tools"][0]["functionDeclarations"]] == ["get_weather"]
    with pytest.raises(InvalidRequest) as err:
        translate({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER], "parallel_tool_calls": False})
    assert err.value.param == "parallel_tool_calls"
    assert "tools" not in translate({"messages": [{"role": "user", "content": "x"}], "parallel_tool_calls": False})


@pytest.mark.parametrize("field, value", [
    ("logit_bias", {"1": 2}), ("functions", [{"name": "f"}]), ("audio", {"voice": "alloy"}),
    ("prediction", {"type": "content", "content": "x"}), ("verbosity", "high"), ("web_search_options", {}),
    ("store", True), ("service_tier", "priority"), ("moderation", {"model": "m"}), ("unknown_field", 1),
])
def test_what_gemini_cannot_do_is_refused(field, value):
    with pytest.raises(InvalidRequest) as err:
        translate({"messages": [{"role": "user", "content": "x"}], field: value})
    assert err.value.param == field


def test_translation_never_mutates_the_request():
    body = {"model": "gem", "messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}}]},
        {"role": "assistant", "tool_calls": [{"id": call_id("c1", SIGNATURE), "type": "function",
                                              "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": call_id("c1", SIGNATURE), "content": "now"},
    ], "tools": [TIME], "response_format": {"type": "json_object"}}
    before = copy.deepcopy(body)
    ADAPTER.chat_request(DEP, body, stream=True)
    assert body == before


# --------------------------------------------------------------------------- responses

# The function-calling answer of Google's function-calling guide (with a thought signature).
DOC_FUNCTION_CALL = {
    "candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "schedule_meeting", "args": {
            "attendees": ["Bob", "Alice"], "date": "2025-03-27", "time": "10:00", "topic": "Q3 planning"}},
         "thoughtSignature": SIGNATURE}]},
        "finishReason": "STOP", "index": 0, "avgLogprobs": -0.0417}],
    "usageMetadata": {"promptTokenCount": 110, "candidatesTokenCount": 34, "totalTokenCount": 244,
                      "thoughtsTokenCount": 100, "cachedContentTokenCount": 64,
                      "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 110}]},
    "modelVersion": "gemini-2.5-flash", "responseId": "mS4laKTrJ4mA1dkP0dbQ-AQ",
}


def test_function_call_response():
    data, usage = ADAPTER.chat_response(DEP, orjson.dumps(DOC_FUNCTION_CALL), CTX)
    doc = orjson.loads(data)
    assert doc["id"] == "mS4laKTrJ4mA1dkP0dbQ-AQ" and doc["model"] == "gemini-2.5-flash"
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "schedule_meeting", "arguments": orjson.dumps(
        {"attendees": ["Bob", "Alice"], "date": "2025-03-27", "time": "10:00", "topic": "Q3 planning"}).decode()}
    assert call["id"].startswith("call_mS4laKTrJ4mA1dkP0dbQ-AQ_0_0") and thought_signature(call["id"]) == SIGNATURE
    assert usage == doc["usage"] == {"prompt_tokens": 110, "completion_tokens": 134, "total_tokens": 244,
                                     "prompt_tokens_details": {"cached_tokens": 64},
                                     "completion_tokens_details": {"reasoning_tokens": 100}}
    openai.types.chat.ChatCompletion.model_validate(doc)


def test_text_thoughts_and_several_candidates():
    doc = {"candidates": [
        {"index": 0, "content": {"role": "model", "parts": [{"text": "Planning...", "thought": True}, {"text": "Blue."}]},
         "finishReason": "STOP"},
        {"index": 1, "content": {"role": "model", "parts": [{"text": "Azure"}]}, "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}}
    out = orjson.loads(ADAPTER.chat_response(DEP, orjson.dumps(doc), CTX)[0])
    assert out["id"] == "chatcmpl-req-1" and out["model"] == "gemini-2.5-flash"
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "Blue.", "stop"), (1, "Azure", "length")]
    assert out["choices"][0]["message"]["reasoning_content"] == "Planning..."


def test_blocked_prompt_is_content_filter_not_an_empty_success():
    doc = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}, "modelVersion": "gemini-2.5-flash"}
    out = orjson.loads(ADAPTER.chat_response(DEP, orjson.dumps(doc), CTX)[0])
    choice = out["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] is None
    assert "SAFETY" in choice["message"]["refusal"]


@pytest.mark.parametrize("reason, finish", [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("OTHER", "stop"), ("LANGUAGE", "stop"), ("FINISH_REASON_UNSPECIFIED", "stop"), (None, "stop"),
])
def test_finish_reasons(reason, finish):
    doc = response([{"text": "x"}], reason)
    assert orjson.loads(ADAPTER.chat_response(DEP, orjson.dumps(doc), CTX)[0])["choices"][0]["finish_reason"] == finish


def test_safety_stop_without_content():
    doc = {"candidates": [{"index": 0, "finishReason": "SAFETY", "safetyRatings": [
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}]}]}
    choice = orjson.loads(ADAPTER.chat_response(DEP, orjson.dumps(doc), CTX)[0])["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] == ""


def test_malformed_function_call_is_a_retryable_error():
    doc = response(None, "MALFORMED_FUNCTION_CALL")
    doc["candidates"][0]["finishMessage"] = "Malformed function call: print(x"
    with pytest.raises(UpstreamStatusError) as err:
        ADAPTER.chat_response(DEP, orjson.dumps(doc), CTX)
    assert err.value.status == 502 and err.value.retryable and "print(x" in err.value.message


def test_logprobs():
    doc = response([{"text": "Hi"}])
    doc["candidates"][0]["logprobsResult"] = {
        "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.1}, {"token": "Hey", "logProbability": -2.5}]}],
        "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}]}
    out = orjson.loads(ADAPTER.chat_response(DEP, orjson.dumps(doc), CTX)[0])
    assert out["choices"][0]["logprobs"] == {"refusal": None, "content": [{
        "token": "Hi", "logprob": -0.1, "bytes": [72, 105],
        "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                         {"token": "Hey", "logprob": -2.5, "bytes": [72, 101, 121]}]}]}
    openai.types.chat.ChatCompletion.model_validate(out)


def test_no_candidates_and_no_reason_is_a_protocol_error():
    with pytest.raises(UpstreamProtocolError):
        ADAPTER.chat_response(DEP, b'{"usageMetadata": {}}', CTX)


# --------------------------------------------------------------------------- streams

# Chunked candidates as the REST streaming guide shows them (\r\n framing, no end marker).
DOC_STREAM = b"".join(
    b"data: " + orjson.dumps(r) + b"\r\n\r\n" for r in [
        {"candidates": [{"content": {"parts": [{"text": "The sky"}], "role": "model"}, "index": 0}],
         "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "totalTokenCount": 10},
         "modelVersion": "gemini-2.5-flash", "responseId": "r1"},
        {"candidates": [{"content": {"parts": [{"text": " is blue, and here is the "}], "role": "model"}, "index": 0}],
         "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 9, "totalTokenCount": 17},
         "modelVersion": "gemini-2.5-flash", "responseId": "r1"},
        {"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": SIGNATURE},
            {"functionCall": {"name": "get_time", "args": {"timezone": "CET"}}}], "role": "model"}, "index": 0}],
         "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 20, "totalTokenCount": 28},
         "modelVersion": "gemini-2.5-flash", "responseId": "r1"},
        {"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP", "index": 0}],
         "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 21, "totalTokenCount": 93,
                           "cachedContentTokenCount": 4, "thoughtsTokenCount": 64},
         "modelVersion": "gemini-2.5-flash", "responseId": "r1"},
    ]
)


def test_doc_stream_translates_text_whole_function_calls_and_usage():
    tr = GeminiStream(CTX_USAGE, "gemini-2.5-flash")
    body = tr.feed(DOC_STREAM)
    assert b"[DONE]" not in body  # Gemini has no end marker: [DONE] comes at close
    chunks, done = parse_sse(body + tr.finish())
    assert done
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "The sky"}
    result = accumulate(chunks)
    choice = result["choices"][0]
    assert choice["content"] == "The sky is blue, and here is the "
    assert [(c["name"], orjson.loads(c["arguments"])) for c in choice["tool_calls"]] == [
        ("get_weather", {"location": "Paris"}), ("get_time", {"timezone": "CET"})]
    assert thought_signature(choice["tool_calls"][0]["id"]) == SIGNATURE
    assert choice["finish_reason"] == "tool_calls"
    assert result["usage"] == tr.usage == {"prompt_tokens": 8, "completion_tokens": 85, "total_tokens": 93,
                                           "prompt_tokens_details": {"cached_tokens": 4},
                                           "completion_tokens_details": {"reasoning_tokens": 64}}
    for c in chunks:
        openai.types.chat.ChatCompletionChunk.model_validate(c)


def test_doc_stream_split_at_every_byte_offset_gives_the_same_output():
    make = lambda: GeminiStream(CTX_USAGE, "gemini-2.5-flash")  # noqa: E731
    whole = feed_split(make, DOC_STREAM, len(DOC_STREAM))
    for at in range(len(DOC_STREAM)):
        assert feed_split(make, DOC_STREAM, at) == whole, at


def test_stream_without_a_finish_reason_is_cut():
    cut = DOC_STREAM[: DOC_STREAM.rindex(b"data: ")]
    tr = GeminiStream(CTX, "g")
    tr.feed(cut)
    with pytest.raises(UpstreamProtocolError):
        tr.finish()
    with pytest.raises(UpstreamProtocolError):
        GeminiStream(CTX, "g").finish()


def test_stream_blocked_prompt_and_safety_stop():
    tr = GeminiStream(CTX, "g")
    blocked = b'data: {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 3}}\r\n\r\n'
    choice = accumulate(parse_sse(tr.feed(blocked) + tr.finish())[0])["choices"][0]
    assert choice["finish_reason"] == "content_filter" and "PROHIBITED_CONTENT" in choice["refusal"]
    tr = GeminiStream(CTX, "g")
    data = b"".join(sse_events([response([{"text": "Step one: "}], None), response(None, "SAFETY")]))
    choice = accumulate(parse_sse(tr.feed(data) + tr.finish())[0])["choices"][0]
    assert choice["content"] == "Step one: " and choice["finish_reason"] == "content_filter"


def test_stream_with_two_candidates():
    data = b"".join(sse_events([
        {"candidates": [{"index": 0, "content": {"parts": [{"text": "A"}]}},
                        {"index": 1, "content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]}}]},
        {"candidates": [{"index": 0, "content": {"parts": [{"text": "B"}]}, "finishReason": "STOP"},
                        {"index": 1, "finishReason": "STOP"}]},
    ]))
    tr = GeminiStream(CTX, "g")
    choices = accumulate(parse_sse(tr.feed(data) + tr.finish())[0])["choices"]
    assert choices[0]["content"] == "AB" and choices[0]["finish_reason"] == "stop"
    assert choices[1]["tool_calls"][0]["name"] == "f" and choices[1]["finish_reason"] == "tool_calls"
    assert choices[1]["tool_calls"][0]["id"] == "call_req-1_1_0"


def test_stream_error_event():
    tr = GeminiStream(CTX, "g")
    tr.feed(b"".join(sse_events([response([{"text": "x"}], None)])))
    with pytest.raises(UpstreamStatusError) as err:
        tr.feed(b'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}\r\n\r\n')
    assert err.value.status == 503 and err.value.retryable and err.value.code == "UNAVAILABLE"


# --------------------------------------------------------------------------- errors


def test_quota_error_with_retry_info():
    body = orjson.dumps({"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
                                   "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                                               {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "21s"}]}})
    err = ADAPTER.error_from_response(429, {}, body)
    assert err.status == 429 and err.retryable and err.retry_after == 21.0 and err.code == "RESOURCE_EXHAUSTED"
    assert err.type == "rate_limit_error" and err.message == "You exceeded your current quota."


def test_vertex_array_wrapped_error_and_bad_key():
    err = adapter_for("vertex").error_from_response(400, {}, orjson.dumps(
        [{"error": {"code": 400, "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}}]))
    assert err.status == 400 and not err.retryable and err.message == "Invalid JSON payload received."
    key = ADAPTER.error_from_response(400, {}, orjson.dumps({"error": {
        "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}))
    assert "API key not valid" in key.message and "AIza" not in key.message


# --------------------------------------------------------------------------- embeddings


def test_gemini_embeddings():
    req = ADAPTER.embeddings_request(deps("      p: {type: gemini, api_key: k}", "gemini-embedding-001"),
                                     {"model": "e", "input": ["a", "b"], "dimensions": 3, "encoding_format": "base64"})
    assert req.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert orjson.loads(req.body) == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 3}]}
    data, usage = ADAPTER.embeddings_response(DEP, orjson.dumps({"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}), CTX)
    doc = orjson.loads(data)
    assert [d["embedding"] for d in doc["data"]] == [[0.1, 0.2], [0.3, 0.4]]
    assert [d["index"] for d in doc["data"]] == [0, 1] and usage == {"prompt_tokens": 0, "total_tokens": 0}


def test_vertex_embeddings():
    d = deps("      p: {type: vertex, api_key: t, project: p, location: us-central1}", "text-embedding-005")
    req = adapter_for("vertex").embeddings_request(d, {"model": "e", "input": "hello", "dimensions": 256})
    assert req.url.endswith("/projects/p/locations/us-central1/publishers/google/models/text-embedding-005:predict")
    assert orjson.loads(req.body) == {"instances": [{"content": "hello"}], "parameters": {"outputDimensionality": 256}}
    answer = {"predictions": [{"embeddings": {"values": [1.0, -1.0], "statistics": {"token_count": 2, "truncated": False}}}]}
    doc = orjson.loads(adapter_for("vertex").embeddings_response(d, orjson.dumps(answer), CTX)[0])
    assert doc["data"][0]["embedding"] == [1.0, -1.0] and doc["usage"]["prompt_tokens"] == 2


def test_embeddings_in_base64_when_the_call_context_says_so():
    ctx = CallContext(public_model="e", request_id="r", created=1, encoding_format="base64")
    doc = orjson.loads(ADAPTER.embeddings_response(DEP, orjson.dumps({"embeddings": [{"values": [0.5, -2.0]}]}), ctx)[0])
    assert doc["data"][0]["embedding"] == base64.b64encode(struct.pack("<2f", 0.5, -2.0)).decode()


@pytest.mark.parametrize("body, param", [
    ({"input": [[1, 2, 3]]}, "input"), ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "task": "retrieval"}, "task"),
])
def test_embeddings_refusals(body, param):
    with pytest.raises(InvalidRequest) as err:
        ADAPTER.embeddings_request(DEP, {"model": "e", **body})
    assert err.value.param == param


# --------------------------------------------------------------------------- through the proxy


def gemini_config(url: str, extra: str = "", model: str = "gemini-2.5-flash") -> str:
    return f"""
    providers:
      g: {{type: gemini, base_url: '{url}', api_key: AIza-secret{extra}}}
    models:
      gem: {{deployments: [{{provider: g, model: {model}}}], retry: {{retries: 0}}}}
    """


async def test_sdk_non_streaming_with_tools(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    api = GeminiFake(DOC_FUNCTION_CALL)
    fake.responder = api
    proxy = await start_proxy(gemini_config(fake.url))
    client = openai_client(proxy)
    result = await client.chat.completions.create(
        model="gem", messages=[{"role": "system", "content": "Plan meetings."},
                               {"role": "user", "content": "Meet Bob and Alice on 2025-03-27 at 10."}],
        tools=[WEATHER, TIME], tool_choice="required", temperature=0.3)
    assert result.choices[0].finish_reason == "tool_calls"
    assert result.choices[0].message.tool_calls[0].function.name == "schedule_meeting"
    assert result.usage.completion_tokens_details.reasoning_tokens == 100
    sent = api.bodies[0]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert fake.seen[0].path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert fake.seen[0].headers["x-goog-api-key"] == "AIza-secret"


async def test_sdk_streaming_tool_call_then_history_keeps_thought_signature(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    chunks = [orjson.loads(e[6:]) for e in DOC_STREAM.split(b"\r\n\r\n") if e]
    api = GeminiFake(chunks, [response([{"text": "Paris: 18C, 14:00."}])])
    fake.responder = api
    proxy = await start_proxy(gemini_config(fake.url))
    client = openai_client(proxy)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather and time in Paris?"}]
    stream = await client.chat.completions.create(model="gem", messages=messages, tools=[WEATHER, TIME],
                                                  stream=True, stream_options={"include_usage": True})
    calls: dict[int, dict[str, str]] = {}
    usage = finish = None
    async for chunk in stream:
        usage = chunk.usage or usage
        for ch in chunk.choices:
            for tc in ch.delta.tool_calls or []:
                calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
            finish = ch.finish_reason or finish
    assert finish == "tool_calls" and usage.total_tokens == 93 and usage.prompt_tokens_details.cached_tokens == 4
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in calls.values()]})
    messages += [{"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C"},
                 {"role": "tool", "tool_call_id": calls[1]["id"], "content": "14:00"}]
    result = await client.chat.completions.create(model="gem", messages=messages, tools=[WEATHER, TIME])
    assert result.choices[0].message.content == "Paris: 18C, 14:00."
    model_turn = api.bodies[1]["contents"][1]
    assert model_turn["parts"][0]["thoughtSignature"] == SIGNATURE
    assert fake.seen[0].query == {"alt": "sse"}


async def test_sdk_sees_safety_blocks_as_content_filter(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}
    fake.responder = GeminiFake(blocked)
    proxy = await start_proxy(gemini_config(fake.url))
    client = openai_client(proxy)
    result = await client.chat.completions.create(model="gem", messages=[{"role": "user", "content": "bad"}])
    assert result.choices[0].finish_reason == "content_filter" and result.choices[0].message.content is None
    stream = await client.chat.completions.create(model="gem", messages=[{"role": "user", "content": "bad"}], stream=True)
    finishes = [c.choices[0].finish_reason async for c in stream if c.choices and c.choices[0].finish_reason]
    assert finishes == ["content_filter"]


async def test_gemini_errors_reach_the_sdk_with_their_status(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.responder = GeminiFake(error(429, "Resource has been exhausted (e.g. check quota).",
                                      [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]))
    proxy = await start_proxy(gemini_config(fake.url))
    client = openai_client(proxy)
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(model="gem", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["code"] == "RESOURCE_EXHAUSTED"


async def test_sdk_embeddings_default_and_float(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.responder = GeminiFake(Reply(json={"embeddings": [{"values": [0.5, -0.25]}, {"values": [1.0, 0.0]}]}))
    proxy = await start_proxy(gemini_config(fake.url, model="gemini-embedding-001"))
    client = openai_client(proxy)
    result = await client.embeddings.create(model="gem", input=["hello", "world"])  # the SDK asks for base64
    assert [d.embedding for d in result.data] == [[0.5, -0.25], [1.0, 0.0]]
    result = await client.embeddings.create(model="gem", input="hello", encoding_format="float", dimensions=2)
    assert result.data[0].embedding == [0.5, -0.25]
    assert fake.seen[1].json["requests"][0]["outputDimensionality"] == 2
    assert fake.seen[0].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"


async def test_vertex_through_the_proxy(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    api = GeminiFake([response([{"text": "Hi "}], None), response([{"text": "there"}])], vertex=True)
    fake.responder = api
    proxy = await start_proxy(f"""
    providers:
      v: {{type: vertex, base_url: '{fake.url}', api_key: ya29.token, project: proj-1, location: europe-west4}}
    models:
      gem: {{deployments: [{{provider: v, model: gemini-2.5-pro}}], retry: {{retries: 0}}}}
    """)
    client = openai_client(proxy)
    stream = await client.chat.completions.create(model="gem", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "Hi there"
    seen = fake.seen[0]
    assert seen.path == "/v1/projects/proj-1/locations/europe-west4/publishers/google/models/gemini-2.5-pro:streamGenerateContent"
    assert seen.headers["Authorization"] == "Bearer ya29.token"


# --------------------------------------------------------------------------- image URLs through the proxy

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


async def test_image_urls_refused_by_default(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.responder = GeminiFake()
    proxy = await start_proxy(gemini_config(fake.url))
    client = openai_client(proxy)
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="gem", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "allow_image_urls" in err.value.body["message"]
    assert fake.seen == []


async def test_allowed_image_urls_are_fetched_and_inlined(start_proxy, fake_upstream, openai_client):
    fake, images = await fake_upstream(), await fake_upstream()
    images.script(Reply(body=PNG, content_type="image/png"))
    api = GeminiFake()
    fake.responder = api
    proxy = await start_proxy(gemini_config(fake.url, ", allow_image_urls: true, image_url_allow_private: true"))
    client = openai_client(proxy)
    result = await client.chat.completions.create(model="gem", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"{images.url}/cat.png"}}]}])
    assert result.choices[0].message.content == "Hello!"
    assert api.bodies[0]["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    assert images.seen[0].path == "/cat.png"


@pytest.mark.parametrize("reply, extra, needle", [
    (Reply(body=PNG * 100, content_type="image/png"), ", image_url_max_bytes: 1000", "limit"),
    (Reply(body=b"<html>", content_type="text/html"), "", "not an image"),
    (Reply(status=404, body=b"gone", content_type="text/plain"), "", "HTTP 404"),
    (Reply(body=PNG, content_type="image/png"), ", image_url_allow_private: false", "non-public"),
])
async def test_image_fetch_refusals(start_proxy, fake_upstream, openai_client, reply, extra, needle):
    fake, images = await fake_upstream(), await fake_upstream()
    images.script(reply)
    fake.responder = GeminiFake()
    allow = "" if "allow_private" in extra else ", image_url_allow_private: true"
    proxy = await start_proxy(gemini_config(fake.url, f", allow_image_urls: true{allow}{extra}"))
    client = openai_client(proxy)
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="gem", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"{images.url}/x.png"}}]}])
    assert needle in err.value.body["message"]
    assert fake.seen == []


def test_fake_rejects_what_the_real_api_rejects():
    api = GeminiFake()

    def ask(body: dict[str, Any], path: str = "/v1beta/models/g:generateContent") -> Reply:
        return api(Seen("POST", path, {}, {"x-goog-api-key": "k"}, orjson.dumps(body)))

    ok = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert ask(ok).status == 200
    assert ask({**ok, "generation_config": {}}).status == 400
    assert ask({**ok, "generationConfig": {"max_output_tokens": 5}}).status == 400
    assert ask({"contents": [{"role": "system", "parts": [{"text": "s"}]}]}).status == 400
    assert ask({"contents": [{"role": "user", "parts": []}]}).status == 400
    call = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}, {"functionCall": {"name": "g", "args": {}}}]}
    one = {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"output": "x"}}}]}
    assert "number of function response parts" in ask({"contents": [ok["contents"][0], call, one]}).json["error"]["message"]
    assert ask(ok, "/v1beta/models/g:streamGenerateContent").status == 400


async def test_image_fetch_follows_redirects_and_checks_resolved_names(start_proxy, fake_upstream, openai_client):
    fake, images = await fake_upstream(), await fake_upstream()
    images.script(Reply(status=302, body=b"", headers={"Location": "/real.png"}, content_type="text/plain"),
                  Reply(body=PNG, content_type="image/png"))
    api = GeminiFake()
    fake.responder = api
    proxy = await start_proxy(gemini_config(fake.url, ", allow_image_urls: true, image_url_allow_private: true"))
    client = openai_client(proxy)
    await client.chat.completions.create(model="gem", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"{images.url}/moved.png"}}]}])
    assert [s.path for s in images.seen] == ["/moved.png", "/real.png"]
    assert api.bodies[0]["contents"][0]["parts"][0]["inlineData"]["mimeType"] == "image/png"

    # A name that resolves to loopback is refused after resolution, before any request is sent.
    strict = await start_proxy(gemini_config(fake.url, ", allow_image_urls: true"))
    port = images.url.rsplit(":", 1)[1]
    with pytest.raises(openai.BadRequestError) as err:
        await openai_client(strict).chat.completions.create(model="gem", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"http://localhost:{port}/x.png"}}]}])
    assert "non-public" in err.value.body["message"]
    assert len(images.seen) == 2

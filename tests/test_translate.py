"""The shared request reading (providers/translate.py): every translating adapter
accepts and refuses the same OpenAI fields the same way."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from llmproxy.config.tree import parse_config
from llmproxy.errors import InvalidRequest
from llmproxy.providers import adapter_for

CFG = parse_config("""
providers:
  anthropic: {type: anthropic, api_key: k}
  gemini: {type: gemini, api_key: k}
  bedrock: {type: bedrock, region: us-east-1, aws_access_key_id: a, aws_secret_access_key: s}
  cohere: {type: cohere, api_key: k}
  ollama: {type: ollama}
models:
  anthropic: {deployments: [{provider: anthropic, model: claude-x}]}
  gemini: {deployments: [{provider: gemini, model: gemini-x}]}
  bedrock: {deployments: [{provider: bedrock, model: anthropic.claude-x}]}
  cohere: {deployments: [{provider: cohere, model: command-x}]}
  ollama: {deployments: [{provider: ollama, model: llama-x}]}
""", env={})
TYPES = ["anthropic", "gemini", "bedrock", "cohere", "ollama"]
USER = [{"role": "user", "content": "hi"}]
F = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


def translate(provider: str, body: dict[str, Any]) -> dict[str, Any]:
    before = copy.deepcopy(body)
    req = adapter_for(provider).chat_request(CFG.models[provider].deployments[0], body, stream=False)
    assert body == before  # never mutated
    return dict(orjson.loads(req.body))


def refusal(provider: str, body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as err:
        translate(provider, body)
    assert err.value.status == 400
    return err.value


@pytest.mark.parametrize("provider", TYPES)
@pytest.mark.parametrize("field, value", [
    ("store", True), ("service_tier", "flex"), ("logit_bias", {"1": 2}), ("functions", [{"name": "f"}]),
    ("audio", {"voice": "alloy"}), ("modalities", ["text", "audio"]), ("prediction", {"type": "content"}),
    ("some_future_field", 1),
])
def test_fields_no_provider_can_honour_are_refused_alike(provider: str, field: str, value: Any) -> None:
    err = refusal(provider, {"messages": USER, field: value})
    assert (err.param, err.code) == (field, "unsupported_parameter") and field in err.message


@pytest.mark.parametrize("provider", TYPES)
def test_defaults_and_hints_are_accepted_alike(provider: str) -> None:
    translate(provider, {"messages": USER, "n": 1, "logprobs": False, "top_logprobs": 0, "presence_penalty": 0,
                         "frequency_penalty": 0.0, "logit_bias": {}, "store": False, "modalities": ["text"],
                         "service_tier": "auto", "parallel_tool_calls": True, "metadata": {"k": "v"},
                         "prompt_cache_key": "c", "stream_options": {"include_usage": True}, "user": "u",
                         "safety_identifier": "s", "seed": None})


@pytest.mark.parametrize("provider", TYPES)
@pytest.mark.parametrize("extra, param", [
    ({"temperature": 2.5}, "temperature"), ({"top_p": "high"}, "top_p"), ({"max_tokens": 0}, "max_tokens"),
    ({"stop": 5}, "stop"), ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [F], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [{"function": {"name": "f"}}]}, "tools[0]"), ({"tools": [F, F]}, "tools[1].function.name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format.json_schema.schema"),
    ({"messages": [*USER, {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, "messages[1].tool_calls[0].id"),
    ({"messages": [*USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": [*USER, {"role": "tool", "content": "r"}]}, "messages[1].tool_call_id"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}, *USER]},
     "messages[0].content[0]"),
])
def test_malformed_requests_are_the_same_400_everywhere(provider: str, extra: dict[str, Any], param: str) -> None:
    assert refusal(provider, {"messages": USER, **extra}).param == param


@pytest.mark.parametrize("provider", ["gemini", "bedrock", "ollama"])
def test_image_links_are_refused_alike_by_providers_that_take_bytes(provider: str) -> None:
    err = refusal(provider, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
    assert (err.param, err.code) == ("messages[0].content[0]", "unsupported_image_url")
    assert "allow_image_urls: true" in err.message


@pytest.mark.parametrize("provider", TYPES)
def test_allowed_tools_narrows_what_is_offered(provider: str) -> None:
    g = {"type": "function", "function": {"name": "g"}}
    doc = translate(provider, {"messages": USER, "tools": [F, g], "tool_choice": {
        "type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "g"}}]}}})
    names = orjson.dumps(doc).decode()
    assert '"g"' in names and '"f"' not in names

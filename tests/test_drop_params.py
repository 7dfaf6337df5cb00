"""``unsupported_params``: error (a 400 naming the field) or drop (sent without it, and said so), with the openai SDK."""

from __future__ import annotations

import logging

import aiohttp
import openai
import pytest

from llmproxy.config.tree import parse_config
from llmproxy.request.drop import DROPPABLE, build_dropping

from .fakes_anthropic import AnthropicFake, message

MESSAGES = [{"role": "user", "content": "hi"}]


def anthropic_yaml(url: str, *, default: str | None = None, deployment: str | None = None) -> str:
    dep = f", unsupported_params: {deployment}" if deployment else ""
    defaults = f"defaults: {{unsupported_params: {default}}}" if default else ""
    return f"""
    {defaults}
    providers:
      an: {{type: anthropic, base_url: "{url}", api_key: sk-ant}}
    models:
      claude: {{deployments: [{{provider: an, model: claude-sonnet-4-5{dep}}}]}}
    """


@pytest.fixture
async def anthropic_fake(fake_upstream):
    fake = await fake_upstream()
    fake.responder = AnthropicFake(message([{"type": "text", "text": "Hello!"}]))
    return fake


async def test_error_is_the_default_and_sends_nothing(start_proxy, anthropic_fake, openai_client) -> None:
    proxy = await start_proxy(anthropic_yaml(anthropic_fake.url))
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).chat.completions.create(model="claude", messages=MESSAGES,
                                                           logit_bias={"50256": -100})
    err = info.value.body
    assert err["code"] == "unsupported_parameter" and err["param"] == "logit_bias"
    assert "not supported by anthropic" in err["message"]
    assert anthropic_fake.seen == []


async def test_drop_sends_without_the_fields_and_says_so(start_proxy, anthropic_fake, openai_client,
                                                        caplog) -> None:
    proxy = await start_proxy(anthropic_yaml(anthropic_fake.url, default="drop"))
    client = openai_client(proxy)
    with caplog.at_level(logging.DEBUG, logger="llmproxy.drop"):
        raw = await client.chat.completions.with_raw_response.create(
            model="claude", messages=MESSAGES, logit_bias={"50256": -100}, presence_penalty=0.5, temperature=0.2)
    assert raw.parse().choices[0].message.content == "Hello!"
    assert raw.headers["x-llmproxy-dropped-params"] == "logit_bias,presence_penalty"
    sent = anthropic_fake.seen[-1].json
    assert "logit_bias" not in sent and "presence_penalty" not in sent and sent["temperature"] == 0.2
    assert any("dropped logit_bias,presence_penalty" in r.getMessage() for r in caplog.records)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/metrics") as resp:
            text = await resp.text()
    assert 'llmproxy_dropped_params_total{deployment="an/claude-sonnet-4-5",param="logit_bias"} 1.0' in text
    assert 'llmproxy_dropped_params_total{deployment="an/claude-sonnet-4-5",param="presence_penalty"} 1.0' in text

    # A stream carries the header too; a request with nothing to drop has none.
    raw = await client.chat.completions.with_raw_response.create(
        model="claude", messages=MESSAGES, stream=True, frequency_penalty=1.0)
    assert raw.headers["x-llmproxy-dropped-params"] == "frequency_penalty"
    assert "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]) == "Hello!"
    raw = await client.chat.completions.with_raw_response.create(model="claude", messages=MESSAGES)
    assert "x-llmproxy-dropped-params" not in raw.headers


async def test_drop_still_refuses_what_is_no_openai_parameter(start_proxy, anthropic_fake, openai_client) -> None:
    proxy = await start_proxy(anthropic_yaml(anthropic_fake.url, default="drop"))
    with pytest.raises(openai.BadRequestError) as info:  # a typo is not dropped: it would hide the mistake
        await openai_client(proxy).chat.completions.create(model="claude", messages=MESSAGES,
                                                           extra_body={"temprature": 0.2})
    assert info.value.body["param"] == "temprature"
    assert anthropic_fake.seen == []


async def test_the_deployment_wins_over_defaults(start_proxy, anthropic_fake, openai_client) -> None:
    proxy = await start_proxy(anthropic_yaml(anthropic_fake.url, default="drop", deployment="error"))
    with pytest.raises(openai.BadRequestError):
        await openai_client(proxy).chat.completions.create(model="claude", messages=MESSAGES, presence_penalty=0.5)
    proxy = await start_proxy(anthropic_yaml(anthropic_fake.url, deployment="drop"))
    raw = await openai_client(proxy).chat.completions.with_raw_response.create(
        model="claude", messages=MESSAGES, presence_penalty=0.5)
    assert raw.headers["x-llmproxy-dropped-params"] == "presence_penalty"


def test_a_bad_value_is_a_path_qualified_error() -> None:
    from llmproxy.config.tree import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config(anthropic_yaml("http://h:1", deployment="ignore"), env={})
    assert info.value.problems == [
        "models.claude.deployments[0].unsupported_params: must be error or drop, got 'ignore'"]


def test_rounds_are_bounded_and_the_body_is_not_mutated() -> None:
    from llmproxy.errors import InvalidRequest

    body = {"model": "m", "messages": MESSAGES, **{k: 1 for k in DROPPABLE}}
    original = dict(body)
    calls = []

    def build(b):  # refuses every optional field, one at a time, like refuse_unsupported
        calls.append(1)
        for k in b:
            if k not in ("model", "messages"):
                raise InvalidRequest(f"{k} no", param=k, code="unsupported_parameter")
        return b

    out, dropped = build_dropping(build, body)
    assert out == {"model": "m", "messages": MESSAGES} and set(dropped) == DROPPABLE
    assert len(calls) == len(DROPPABLE) + 1 and body == original

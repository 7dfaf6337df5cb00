"""Features that meet on one request: virtual keys with aliases, wildcard
models and the response cache, through the real proxy with the openai SDK."""

from __future__ import annotations

import hashlib

import openai
import orjson
import pytest

from .fakes import Reply, openai_completion

KEY = "sk-llmp-together-0123456789abcdef"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def config(url: str, models: str, extra: str = "") -> str:
    return f"""
    providers:
      up: {{type: openai, base_url: "{url}/v1", api_key: upstream-secret-key}}
    models:
      gpt-4o:
        deployments: [{{provider: up, model: gpt-4o, price: {{input_per_mtok: 1000000, output_per_mtok: 1000000}}}}]
      other:
        deployments: [{{provider: up, model: other}}]
      "openai/*":
        deployments: [{{provider: up, model: "*"}}]
    aliases: {{gpt4: gpt-4o}}
    keys:
      - {{name: team, key_sha256: {sha(KEY)}, models: {models}, budget: {{usd: 100}}}}
    state: {{path: null}}
    {extra}
    """


async def test_a_key_may_name_an_alias_or_a_wildcards_name(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, '[gpt4, "openai/gpt-4o-mini"]'))
    client = openai_client(proxy, api_key=KEY)
    msg = [{"role": "user", "content": "hi"}]
    assert (await client.chat.completions.create(model="gpt4", messages=msg)).choices[0].message.content
    await client.chat.completions.create(model="openai/gpt-4o-mini", messages=msg)
    assert [s.json["model"] for s in fake.seen] == ["gpt-4o", "gpt-4o-mini"]
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.chat.completions.create(model="openai/gpt-4.1", messages=msg)
    assert info.value.code == "model_not_allowed" and "openai/gpt-4.1" in info.value.message
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(model="other", messages=msg)
    listed = sorted(m.id for m in (await client.models.list()).data)
    assert listed == ["gpt4"]


def test_a_keys_model_that_routes_nowhere_is_a_config_error() -> None:
    from llmproxy.config.tree import ConfigError, parse_config

    with pytest.raises(ConfigError) as info:
        parse_config(config("http://127.0.0.1:9", "[gpt-5]"))
    assert any("keys[0].models[0]" in p and "unknown model" in p for p in info.value.problems)


async def test_a_cache_hit_costs_its_key_nothing(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("cached answer")))
    proxy = await start_proxy(config(fake.url, "[gpt-4o]", "cache: {enabled: true}"))
    client = openai_client(proxy, api_key=KEY)
    msg = [{"role": "user", "content": "same question"}]
    first = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=msg)
    assert first.headers["x-llmproxy-cache"] == "miss"
    for _ in range(3):
        again = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=msg)
        assert again.headers["x-llmproxy-cache"] == "hit"
    assert len(fake.seen) == 1
    async with __import__("aiohttp").ClientSession() as s:
        async with s.get(proxy.url + "/admin/keys") as r:
            doc = orjson.loads(await r.read())
    (team,) = [k for k in doc["keys"] if k["name"] == "team"]
    # The fake's usage is 5 + 2 tokens at $1 per token: one miss pays $7, hits pay nothing.
    assert team["spend"]["lifetime"]["usd"] == pytest.approx(7.0)
    assert team["spend"]["lifetime"]["requests"] == 4

"""Aliases and wildcard models through the real proxy: precedence, /v1/models, bounded state, labels, checks."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest

from llmproxy.config.tree import ConfigError, parse_config

from .fakes import Reply, openai_completion, openai_stream


def names_yaml(exact: str, wild: str, special: str, catch_all: str, cap: int = 256) -> str:
    return f"""
    providers:
      exact: {{type: openai, base_url: "{exact}", api_key: os.environ/EXACT_KEY}}
      oa: {{type: openai, base_url: "{wild}", api_key: sk-wild}}
      special: {{type: openai, base_url: "{special}", api_key: sk-special}}
      any: {{type: openai, base_url: "{catch_all}", api_key: sk-any}}
    models:
      "openai/*":
        wildcard_names: {cap}
        deployments: [{{provider: oa, model: "*", rpm: 100}}]
      "openai/gpt-4o":
        deployments: [{{provider: exact, model: gpt-4o-2024-08-06}}]
      "openai/special/*":
        deployments: [{{provider: special, model: "ft:*"}}]
      "*":
        deployments: [{{provider: any, model: "*", id: catch-all}}]
    aliases:
      gpt4: openai/gpt-4o
      nano: openai/gpt-4.1-nano
    """


async def test_exact_alias_and_longest_prefix_win_in_that_order(start_proxy, fake_upstream, openai_client) -> None:
    exact, wild, special, catch_all = [await fake_upstream() for _ in range(4)]
    proxy = await start_proxy(names_yaml(exact.url, wild.url, special.url, catch_all.url), env={"EXACT_KEY": "sk-exact"})
    client = openai_client(proxy)

    async def ask(name: str) -> str:
        raw = await client.chat.completions.with_raw_response.create(
            model=name, messages=[{"role": "user", "content": "hi"}])
        assert raw.parse().model == "gpt-4o"  # the fake's answer, relayed
        return raw.headers["x-llmproxy-deployment"]

    # An exact name beats the wildcard that also matches it.
    assert await ask("openai/gpt-4o") == "exact/gpt-4o-2024-08-06"
    assert exact.seen[-1].json["model"] == "gpt-4o-2024-08-06"
    assert exact.seen[-1].headers["Authorization"] == "Bearer sk-exact"  # os.environ/EXACT_KEY
    # An alias resolves to its model.
    assert await ask("gpt4") == "exact/gpt-4o-2024-08-06"
    # The wildcard: "*" becomes what it matched, on the wildcard's provider.
    assert await ask("openai/gpt-4.1-nano") == "oa/gpt-4.1-nano"
    assert wild.seen[-1].json["model"] == "gpt-4.1-nano"
    assert wild.seen[-1].headers["Authorization"] == "Bearer sk-wild"
    # An alias may name what a wildcard matches.
    assert await ask("nano") == "oa/gpt-4.1-nano"
    # The longest prefix wins; "*" inside a model is replaced too.
    assert await ask("openai/special/my-tune") == "special/ft:my-tune"
    assert special.seen[-1].json["model"] == "ft:my-tune"
    # "*" alone catches what nothing else did.
    assert await ask("mistral-large") == "catch-all/mistral-large"
    assert catch_all.seen[-1].json["model"] == "mistral-large"
    # A stream takes the same route.
    wild.script(Reply(stream=openai_stream(["a", "b"])))
    stream = await client.chat.completions.create(model="openai/o3", messages=[{"role": "user", "content": "x"}],
                                                  stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "ab"
    assert wild.seen[-1].json["model"] == "o3"
    wild.script(Reply(json=openai_completion()))
    # A wildcard pattern itself is no model name; neither is "*".
    for name in ("openai/*", "*"):
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model=name, messages=[{"role": "user", "content": "x"}])


async def test_v1_models_lists_models_and_aliases(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    proxy = await start_proxy(names_yaml(fake.url, fake.url, fake.url, fake.url), env={"EXACT_KEY": "k"})
    client = openai_client(proxy)
    listed = [m.id async for m in client.models.list()]
    assert listed == ["openai/gpt-4o", "gpt4", "nano"]  # patterns are not names a client can send
    assert (await client.models.retrieve("gpt4")).id == "gpt4"
    assert (await client.models.retrieve("openai/gpt-4.1-mini")).id == "openai/gpt-4.1-mini"  # matched by a wildcard
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.v1}/models/openai/*") as resp:
            assert resp.status == 404
    assert fake.seen == []  # nothing was sent upstream to answer these


async def test_invented_names_cannot_grow_state(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    proxy = await start_proxy(names_yaml(fake.url, fake.url, fake.url, fake.url, cap=2), env={"EXACT_KEY": "k"})
    client = openai_client(proxy)
    ids = []
    for i in range(6):
        raw = await client.chat.completions.with_raw_response.create(
            model=f"openai/invented-{i}", messages=[{"role": "user", "content": "x"}])
        ids.append(raw.headers["x-llmproxy-deployment"])
        assert fake.seen[-1].json["model"] == f"invented-{i}"  # every name still routes
    assert ids == [f"oa/invented-{i}" for i in range(6)]
    router, registry = proxy.proxy.runtime.router, proxy.proxy.registry
    # Two names have state of their own; the rest share the wildcard deployment's.
    assert registry.concrete_count() == 2
    shared = router.states["oa/*"]
    assert router.group("openai/invented-5").members[0].state is shared
    assert router.group("openai/invented-0").members[0].state is not shared
    assert shared.requests == 4
    # The router keeps groups for two names of this wildcard; the others are built per request.
    assert sum(1 for name in router._concrete if name.startswith("openai/")) == 2
    # A name past MAX_NAME (256) matches no wildcard: it makes no key at all.
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="openai/" + "x" * 300, messages=[{"role": "user", "content": "x"}])
    # Metrics label with the pattern's id, never the client's names.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/metrics") as resp:
            text = await resp.text()
    assert 'deployment="oa/*"' in text and "invented" not in text


async def test_concrete_state_survives_a_reload_and_goes_with_its_pattern(start_proxy, fake_upstream,
                                                                          openai_client) -> None:
    fake = await fake_upstream()
    text = names_yaml(fake.url, fake.url, fake.url, fake.url)
    proxy = await start_proxy(text, env={"EXACT_KEY": "k"})
    await openai_client(proxy).chat.completions.create(model="openai/kept", messages=[{"role": "user", "content": "x"}])
    before = proxy.proxy.runtime.router.group("openai/kept").members[0].state
    config = await asyncio.to_thread(parse_config, text, env={"EXACT_KEY": "k"})
    proxy.proxy.swap(config)
    assert proxy.proxy.runtime.router.group("openai/kept").members[0].state is before
    # The wildcard deployment gone (a new id): its concrete states go with it.
    renamed = text.replace('model: "*", rpm: 100', 'model: "*", rpm: 100, id: renamed')
    proxy.proxy.swap(await asyncio.to_thread(parse_config, renamed, env={"EXACT_KEY": "k"}))
    assert proxy.proxy.registry.concrete_count() == 0
    after = proxy.proxy.runtime.router.group("openai/kept").members[0]
    assert after.id == "renamed/kept" and after.state is not before


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env or {})
    return info.value.problems


BASE = """
providers:
  p: {type: openai, base_url: "http://127.0.0.1:1/v1", api_key: k}
models:
  gpt-4o: {deployments: [{provider: p, model: gpt-4o}]}
  "openai/*": {deployments: [{provider: p, model: "*"}]}
"""


@pytest.mark.parametrize(("extra", "expected"), [
    ("aliases: {gpt4: gpt-4x}", "aliases.gpt4: unknown model 'gpt-4x' (did you mean 'gpt-4o'?)"),
    ("aliases: {gpt-4o: openai/gpt-4o}", "aliases.gpt-4o: shadows the model 'gpt-4o'"),
    ("aliases: {a: b, b: gpt-4o}", "aliases.a: points at the alias 'b'; aliases do not chain"),
    ("aliases: {w: openai/*}", "aliases.w: points at the wildcard pattern 'openai/*'"),
    ("aliases: {'x*': gpt-4o}", "aliases.x*: an alias is one name: no '*'"),
    ("aliases: [gpt4]", "aliases: must be a mapping of public names to model names, got a list"),
    ("aliases: {a: [gpt-4o]}", "aliases.a: must be a model name, got a list"),
])
def test_bad_aliases_are_path_qualified_errors(extra: str, expected: str) -> None:
    found = problems(BASE + extra)
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(("models", "expected"), [
    ('"open*ai/": {deployments: [{provider: p, model: x}]}', "models.open*ai/: a wildcard model name has one '*'"),
    ('"a/**": {deployments: [{provider: p, model: x}]}', "models.a/**: a wildcard model name has one '*'"),
    ('plain: {deployments: [{provider: p, model: "gpt-*"}]}', "models.plain.deployments[0].model: 'gpt-*' has a '*'"),
    ('"b/*": {deployments: [{provider: p, model: "*-*"}]}', "models.b/*.deployments[0].model: may hold one '*'"),
    ('fb: {fallbacks: ["openai/*"], deployments: [{provider: p, model: x}]}',
     "models.fb.fallbacks[0]: 'openai/*' is a wildcard model"),
])
def test_bad_wildcards_are_path_qualified_errors(models: str, expected: str) -> None:
    found = problems(BASE + "  " + models + "\n")
    assert any(p.startswith(expected) for p in found), found


def test_os_environ_is_dollar_brace() -> None:
    text = BASE.replace("api_key: k", "api_key: os.environ/P_KEY")
    assert parse_config(text, env={"P_KEY": "sk-from-env"}).providers["p"].api_key == "sk-from-env"
    # Unset: the same problem as ${P_KEY}.
    assert problems(text) == problems(BASE.replace("api_key: k", 'api_key: "${P_KEY}"'))
    assert problems(text) == ["providers.p.api_key: environment variable P_KEY is not set"]
    # Only a whole value is a reference; anything else is a plain string.
    text = BASE.replace("api_key: k", "api_key: x-os.environ/P_KEY")
    assert parse_config(text, env={}).providers["p"].api_key == "x-os.environ/P_KEY"


def test_a_rejected_reload_masks_an_os_environ_secret() -> None:
    # The new key, pasted by mistake where a number belongs, is quoted by the problem: masked.
    text = (BASE.replace("api_key: k", "api_key: os.environ/P_KEY")
            + "  bad: {deployments: [{provider: p, model: x, weight: sk-rotated-secret}]}\n")
    found = problems(text, env={"P_KEY": "sk-rotated-secret"})
    assert any(p.startswith("models.bad.deployments[0].weight") for p in found), found
    assert not any("sk-rotated-secret" in p for p in found), found

"""Issue 12, routing and resilience: capped Retry-After and readiness, routing
past open breakers, bounded sticky sessions, usage of every stream.

All through the real proxy on a real port against fake upstreams.
"""

from __future__ import annotations

import asyncio
import io
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmproxy.config.tree import ConfigError, parse_config

from .fakes import Reply, Seen, openai_completion, openai_stream

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def payload(body: dict) -> bytes | io.BytesIO:
    data = orjson.dumps(body)
    # aiohttp warns (an error under pytest) about large raw bytes bodies.
    return io.BytesIO(data) if len(data) > 1 << 18 else data


async def post(session: aiohttp.ClientSession, url: str, body: dict | None = None) -> tuple[int, str, Any]:
    async with session.post(url + "/v1/chat/completions", data=payload(body or CHAT),
                            headers={"Content-Type": "application/json"}) as r:
        raw = await r.read()
        doc = orjson.loads(raw) if r.content_type == "application/json" else raw
        return r.status, r.headers.get("x-llmproxy-deployment", ""), doc


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as r:
        return r.status, await r.json()


async def deployment(session: aiohttp.ClientSession, proxy_url: str, dep_id: str) -> dict[str, Any]:
    _, doc = await get_json(session, proxy_url + "/admin/deployments")
    return next(d for d in doc["deployments"] if d["id"] == dep_id)


async def poll(predicate, timeout: float = 60.0) -> None:
    """Until ``predicate()`` (a coroutine function) is true; generous, for busy machines."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- item 7: Retry-After cap, /readyz


def one_deployment(url: str, breaker: str = "") -> str:
    return textwrap.dedent(f"""
    providers:
      only: {{type: openai, base_url: "{url}/v1", api_key: k}}
    reload: {{enabled: false}}
    defaults:
      breaker: {{{breaker}}}
    models:
      gpt-4o:
        retry: {{retries: 0}}
        deployments: [{{provider: only, model: m, queue_timeout: 0}}]
    """)


async def test_retry_after_999999_is_capped_and_readyz_sees_the_cooling(tmp_path: Path, start_proxy,
                                                                        fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "999999"}),
                Reply(json=openai_completion("back")))
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(one_deployment(fake.url, "max_retry_after: 60"))
    proxy = await start_proxy.from_file(cfg)
    async with aiohttp.ClientSession() as s:
        assert (await get_json(s, proxy.url + "/readyz"))[0] == 200
        status, _, doc = await post(s, proxy.url)
        assert status == 429, doc
        dep = await deployment(s, proxy.url, "only/m")
        assert 0 < dep["cooling_for"] <= 60  # not 11.6 days
        assert dep["usable"] is False
        # The only deployment is cooling: not ready, and saying why.
        status, doc = await get_json(s, proxy.url + "/readyz")
        assert status == 503
        assert "cooling" in doc["reason"] and 0 < doc["retry_in"] <= 60
        # A reload that lowers the cap cuts a cooling already under way.
        cfg.write_text(one_deployment(fake.url, "max_retry_after: 0.5"))
        async with s.post(proxy.url + "/admin/reload") as r:
            assert r.status == 200, await r.text()
        assert (await deployment(s, proxy.url, "only/m"))["cooling_for"] <= 0.5

        async def ready() -> bool:
            return (await get_json(s, proxy.url + "/readyz"))[0] == 200

        await poll(ready)
        status, _, doc = await post(s, proxy.url)
        assert status == 200 and doc["choices"][0]["message"]["content"] == "back"
    assert len(fake.seen) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after-ms": "999999000"},
        # An HTTP-date ten years after the response's own Date.
        {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT", "Date": "Sun, 21 Oct 2016 07:28:00 GMT"},
        {"Retry-After": "999999"},
    ],
    ids=["retry-after-ms", "http-date", "seconds"],
)
async def test_every_form_of_retry_after_is_capped(headers, start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(status=429, json={"error": {"message": "slow down"}}, headers=headers))
    proxy = await start_proxy(one_deployment(fake.url, "max_retry_after: 60"))
    async with aiohttp.ClientSession() as s:
        assert (await post(s, proxy.url))[0] == 429
        cooling = (await deployment(s, proxy.url, "only/m"))["cooling_for"]
    assert 50 < cooling <= 60  # honoured (the date form too), but no longer than the cap


async def test_the_default_cap_is_five_minutes(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "999999"}))
    proxy = await start_proxy(one_deployment(fake.url))
    async with aiohttp.ClientSession() as s:
        assert (await get_json(s, proxy.url + "/readyz"))[0] == 200
        assert (await post(s, proxy.url))[0] == 429
        assert 290 < (await deployment(s, proxy.url, "only/m"))["cooling_for"] <= 300
        status, doc = await get_json(s, proxy.url + "/readyz")  # was 200: the breaker is closed
        assert status == 503 and doc["status"] == "no usable deployment", doc


async def test_a_short_cap_ends_the_cooling_and_readiness_returns(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "999999"}),
                Reply(json=openai_completion()))
    proxy = await start_proxy(one_deployment(fake.url, "max_retry_after: 0.5"))
    async with aiohttp.ClientSession() as s:
        assert (await post(s, proxy.url))[0] == 429
        assert (await deployment(s, proxy.url, "only/m"))["cooling_for"] <= 0.5

        async def ready() -> bool:
            return (await get_json(s, proxy.url + "/readyz"))[0] == 200

        await poll(ready)
        assert (await post(s, proxy.url))[0] == 200


# --------------------------------------------------------------------------- breaker: when_all_open


def breaker_config(url: str, when: str | None) -> str:
    extra = f", when_all_open: {when}" if when else ""
    return textwrap.dedent(f"""
    providers:
      only: {{type: openai, base_url: "{url}/v1", api_key: k}}
    defaults:
      breaker: {{failures: 2, cooldown: 3600{extra}}}
    models:
      gpt-4o:
        retry: {{retries: 1, backoff: 0}}
        deployments: [{{provider: only, model: m, timeouts: {{first_byte: 1}}}}]
    """)


async def test_a_single_deployment_is_not_black_holed_by_its_breaker(start_proxy, fake_upstream):
    fake = await fake_upstream()
    # A hang and a garbage answer in a row open the breaker (each retry counts)...
    fake.script(Reply(hang=True), Reply(body=b"<html>oops", content_type="application/json"),
                Reply(json=openai_completion("recovered")))
    proxy = await start_proxy(breaker_config(fake.url, None))
    async with aiohttp.ClientSession() as s:
        assert (await post(s, proxy.url))[0] == 502
        dep = await deployment(s, proxy.url, "only/m")
        assert dep["breaker"] == "open"
        # ...but the next request still reaches the upstream, which answers now,
        status, dep_id, doc = await post(s, proxy.url)
        assert (status, dep_id) == (200, "only/m"), doc
        assert doc["choices"][0]["message"]["content"] == "recovered"
        # and that success closes the breaker.
        dep = await deployment(s, proxy.url, "only/m")
        assert dep["breaker"] == "closed" and dep["usable"] is True
        assert (await post(s, proxy.url))[0] == 200
    assert len(fake.seen) == 4


async def test_fail_fast_keeps_the_503(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(status=500, json={"error": {"message": "down"}}), Reply(status=500, json={"error": {"message": "down"}}),
                Reply(json=openai_completion()))
    proxy = await start_proxy(breaker_config(fake.url, "fail_fast"))
    async with aiohttp.ClientSession() as s:
        assert (await post(s, proxy.url))[0] == 500
        status, _, doc = await post(s, proxy.url)
        assert status == 503 and "circuit breakers open" in doc["error"]["message"]
    assert len(fake.seen) == 2


async def test_routing_past_open_breakers_picks_the_oldest_and_only_once(start_proxy, fake_upstream):
    first, second = await fake_upstream(), await fake_upstream()
    for fake in (first, second):
        fake.script(Reply(status=500, json={"error": {"message": "down"}}))
    proxy = await start_proxy(f"""
providers:
  first: {{type: openai, base_url: "{first.url}/v1", api_key: k}}
  second: {{type: openai, base_url: "{second.url}/v1", api_key: k}}
defaults:
  breaker: {{failures: 1, cooldown: 3600}}
models:
  gpt-4o:
    strategy: round_robin
    retry: {{retries: 3, backoff: 0}}
    deployments: [{{provider: first, model: m}}, {{provider: second, model: m}}]
""")
    async with aiohttp.ClientSession() as s:
        assert (await post(s, proxy.url))[0] == 500  # first, then second: both open, first opened first
        assert (len(first.seen), len(second.seen)) == (1, 1)
        status, _, doc = await post(s, proxy.url)
        assert status == 500 and doc["error"]["message"] == "down"
    # One attempt past the breakers, to the one opened first, not a retry storm.
    assert (len(first.seen), len(second.seen)) == (2, 1)


async def test_a_cooling_deployment_is_not_routed_past_its_open_breaker(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "60"}))
    proxy = await start_proxy(breaker_config(fake.url, None).replace("failures: 2", "failures: 1"))
    async with aiohttp.ClientSession() as s:
        assert (await post(s, proxy.url))[0] == 429
        status, _, doc = await post(s, proxy.url)
        assert status == 503, doc  # it asked us to stay away: we do
    assert len(fake.seen) == 1


def test_when_all_open_is_validated():
    with pytest.raises(ConfigError) as err:
        parse_config(textwrap.dedent("""
        providers: {m: {type: mock}}
        defaults: {breaker: {when_all_open: panic, max_retry_after: -1}}
        models: {x: {deployments: [{provider: m, model: m, breaker: {when_all_open: [fail_fast]}}]}}
        """), env={})
    text = str(err.value)
    assert "defaults.breaker.when_all_open: must be route_oldest or fail_fast, got 'panic'" in text
    assert "defaults.breaker.max_retry_after: must be a positive number" in text
    assert "models.x.deployments[0].breaker.when_all_open: must be route_oldest or fail_fast, got a list" in text


# --------------------------------------------------------------------------- item 9: sticky session keys


def vm_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def sticky_config(strategy: str) -> str:
    return f"""
providers:
  a: {{type: mock, reply: "from a"}}
  b: {{type: mock, reply: "from b"}}
models:
  gpt-4o:
    strategy: {strategy}
    deployments: [{{provider: a, model: m}}, {{provider: b, model: m}}]
"""


async def test_long_session_keys_do_not_grow_memory(start_proxy):
    proxy = await start_proxy(sticky_config("sticky"))
    filler = "u" * (1 << 20)
    async with aiohttp.ClientSession() as s:
        # Warm up allocator and connection pools before measuring.
        for i in range(5):
            assert (await post(s, proxy.url, {**CHAT, "user": f"warm{i}-{filler}"}))[0] == 200
        before = vm_rss_mib()
        for i in range(200):
            status, _, _ = await post(s, proxy.url, {**CHAT, "user": f"{i:08d}{filler}"})
            assert status == 200
        grown = vm_rss_mib() - before
    assert grown < 50, f"RSS grew {grown:.0f} MiB for 200 MiB of session keys"


@pytest.mark.parametrize("strategy", ["sticky", "consistent_hash"])
async def test_a_long_session_key_is_still_sticky(strategy, start_proxy):
    proxy = await start_proxy(sticky_config(strategy))
    long_key = "tenant-" + "x" * (1 << 20)
    async with aiohttp.ClientSession() as s:
        by_key = {(await post(s, proxy.url, {**CHAT, "user": long_key}))[1] for _ in range(6)}
        without = {(await post(s, proxy.url))[1] for _ in range(4)}
        # Keys that differ only at their far end are still keys of their own.
        endings = {(await post(s, proxy.url, {**CHAT, "user": long_key[:100] + f"-{i}"}))[1] for i in range(40)}
    assert len(by_key) == 1
    assert without == {"a/m", "b/m"}  # there was a choice to make
    assert endings == {"a/m", "b/m"}


# --------------------------------------------------------------------------- stream usage


def honours_include_usage(seen: Seen) -> Reply:
    opts = seen.json.get("stream_options") or {}
    return Reply(stream=openai_stream(["a", "b", "c"], usage=opts.get("include_usage") is True))


def events(raw: bytes) -> list[Any]:
    out = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: ") and block != b"data: [DONE]":
            out.append(orjson.loads(block[6:]))
    return out


async def stream(session: aiohttp.ClientSession, url: str, **extra: Any) -> bytes:
    async with session.post(url + "/v1/chat/completions", data=orjson.dumps({**CHAT, "stream": True, **extra})) as r:
        assert r.status == 200
        return await r.read()


async def token_counts(url: str, deployment_id: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/metrics") as r:
            text = await r.text()
    counts: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if sample.name == "llmproxy_tokens_total" and sample.labels.get("deployment") == deployment_id:
                kind = sample.labels["gen_ai_token_type"]
                counts[kind] = counts.get(kind, 0) + sample.value
    return counts


@pytest.mark.parametrize("ptype", ["openai", "azure"])
async def test_streams_are_accounted_without_include_usage(ptype, start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.responder = honours_include_usage
    extra = ', api_version: "2024-10-21"' if ptype == "azure" else ""
    proxy = await start_proxy(f"""
providers:
  up: {{type: {ptype}, base_url: "{fake.url}", api_key: k{extra}}}
models:
  gpt-4o:
    deployments: [{{provider: up, model: m}}]
""")
    async with aiohttp.ClientSession() as s:
        raw = await stream(s, proxy.url, stream_options={"include_obfuscation": False})
    chunks = events(raw)
    assert raw.endswith(b"data: [DONE]\n\n")
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "abc"
    assert all(c["choices"] for c in chunks), "the client never sees a usage chunk it did not ask for"
    assert not any(isinstance(c.get("usage"), dict) for c in chunks)
    # The upstream was asked for usage (other stream options kept) ...
    assert fake.seen[0].json["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    # ... and the tokens are on /metrics.
    assert await token_counts(proxy.url, "up/m") == {"input": 5, "output": 3}


async def test_a_client_that_asks_for_usage_gets_it_once(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.responder = honours_include_usage
    proxy = await start_proxy(f"""
providers:
  up: {{type: openai, base_url: "{fake.url}/v1", api_key: k}}
models:
  gpt-4o:
    deployments: [{{provider: up, model: m}}]
""")
    async with aiohttp.ClientSession() as s:
        raw = await stream(s, proxy.url, stream_options={"include_usage": True})
    usage_chunks = [c for c in events(raw) if isinstance(c.get("usage"), dict)]
    assert len(usage_chunks) == 1 and usage_chunks[0]["choices"] == []
    assert usage_chunks[0]["usage"]["total_tokens"] == 8
    assert fake.seen[0].json["stream_options"] == {"include_usage": True}
    assert await token_counts(proxy.url, "up/m") == {"input": 5, "output": 3}


async def test_mock_streams_are_accounted_without_include_usage(start_proxy):
    proxy = await start_proxy("""
providers:
  local: {type: mock, reply: "one two three four"}
models:
  gpt-4o:
    deployments: [{provider: local, model: m}]
""")
    async with aiohttp.ClientSession() as s:
        raw = await stream(s, proxy.url)
        with_usage = await stream(s, proxy.url, stream_options={"include_usage": True})
    assert all(c["choices"] for c in events(raw))
    assert len([c for c in events(with_usage) if isinstance(c.get("usage"), dict)]) == 1
    assert await token_counts(proxy.url, "local/m") == {"input": 2, "output": 8}


@pytest.mark.parametrize("provider", ['{type: qianfan, base_url: "URL/v2", api_key: k}',
                                      '{type: openai, base_url: "URL/v1", api_key: k, stream_usage: false}'])
async def test_stream_options_are_only_added_where_supported(provider, start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.responder = honours_include_usage
    proxy = await start_proxy(f"""
providers:
  up: {provider.replace("URL", fake.url)}
models:
  gpt-4o:
    deployments: [{{provider: up, model: m}}]
""")
    async with aiohttp.ClientSession() as s:
        raw = await stream(s, proxy.url)
    assert raw.endswith(b"data: [DONE]\n\n")
    assert "stream_options" not in fake.seen[0].json

"""Virtual keys through the real proxy: authentication, model policy, per-key
limits, spend and budgets, /v1/models filtering, /admin/keys, the access line.

Clients are the real openai and anthropic SDKs; upstreams are fake servers
speaking OpenAI's wire format; per-key limits run on an injected clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from llmproxy.observe.logs import REDACTOR, setup_logging

from .conftest import RunningProxy
from .fakes import FakeUpstream, Reply, openai_completion, openai_stream

SEARCH_KEY = "sk-llmp-search-0123456789abcdefghij"
ENV_KEY = "sk-llmp-fromenv-0123456789abcdefghij"
FILE_KEY = "sk-llmp-fromfile-0123456789abcdefghij"
ADMIN_KEY = "sk-llmp-admin-0123456789abcdefghijkl"
PLAIN_KEY = "plain-api-key-0123456789"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(url: str, keys: str, extra: str = "") -> str:
    """Three models on one OpenAI-compatible fake, priced at $1/$2 per million tokens."""
    return textwrap.dedent(f"""
    providers:
      up: {{type: openai, base_url: "{url}/v1", api_key: upstream-secret-key}}
    models:
      gpt-4o-mini:
        deployments: [{{provider: up, model: gpt-4o-mini, price: {{input_per_mtok: 1000000, output_per_mtok: 2000000}}}}]
      claude-haiku:
        deployments: [{{provider: up, model: haiku, price: {{input_per_mtok: 1, output_per_mtok: 1}}}}]
      secret-model:
        deployments: [{{provider: up, model: secret}}]
    """) + textwrap.dedent(keys) + textwrap.dedent(extra)


KEYS = f"""
server: {{api_keys: ["{PLAIN_KEY}"]}}
keys:
  - name: search-team
    key_sha256: {sha(SEARCH_KEY)}
    models: [gpt-4o-mini, "claude-*"]
    metadata: {{team: search}}
  - name: env-team
    key: ${{ENV_KEY}}
    models: ["claude-*"]
  - name: ops
    key: {ADMIN_KEY}
    role: admin
"""


@pytest.fixture
async def claude() -> AsyncIterator[Callable[..., anthropic.AsyncAnthropic]]:
    clients: list[anthropic.AsyncAnthropic] = []

    def make(proxy: RunningProxy, api_key: str) -> anthropic.AsyncAnthropic:
        client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=api_key, max_retries=0)
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


async def _fake(fake_upstream: Callable[..., Any], *replies: Reply) -> FakeUpstream:
    fake: FakeUpstream = await fake_upstream()
    fake.script(*(replies or (Reply(json=openai_completion()),)))
    return fake


def _ask(model: str = "gpt-4o-mini", **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **kw}


async def _admin_keys(proxy: RunningProxy, key: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/admin/keys", headers=headers) as r:
        assert r.status == 200, await r.text()
        doc: dict[str, Any] = await r.json()
        return doc


def _key(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (entry,) = [k for k in doc["keys"] if k["name"] == name]
    return entry


# --------------------------------------------------------------------------- authentication


async def test_hashed_env_file_and_plain_keys_are_accepted_in_every_header(
        start_proxy, fake_upstream, openai_client, tmp_path: Path):
    fake = await _fake(fake_upstream)
    key_file = tmp_path / "key.txt"
    key_file.write_text(FILE_KEY + "\n")
    keys = KEYS + f"""
  - name: file-team
    key_file: {key_file}
"""
    proxy = await start_proxy(config(fake.url, keys), env={"ENV_KEY": ENV_KEY})
    for key, model in ((SEARCH_KEY, "gpt-4o-mini"), (ENV_KEY, "claude-haiku"), (FILE_KEY, "secret-model"),
                       (PLAIN_KEY, "secret-model")):
        out = await openai_client(proxy, api_key=key).chat.completions.create(**_ask(model))
        assert out.choices[0].message.content == "hi"
    async with aiohttp.ClientSession() as s:
        for header in ("api-key", "x-api-key"):
            async with s.post(proxy.v1 + "/chat/completions", json=_ask(), headers={header: SEARCH_KEY}) as r:
                assert r.status == 200, await r.text()
    # The client's key never goes upstream.
    assert all(SEARCH_KEY not in str(seen.headers) for seen in fake.seen)


async def test_a_missing_or_unknown_key_is_401_invalid_api_key(start_proxy, fake_upstream, openai_client, claude):
    fake = await _fake(fake_upstream)
    proxy = await start_proxy(config(fake.url, KEYS), env={"ENV_KEY": ENV_KEY})
    with pytest.raises(openai.AuthenticationError) as err:
        await openai_client(proxy, api_key="sk-llmp-not-a-key-000000000000").chat.completions.create(**_ask())
    assert err.value.status_code == 401
    assert err.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        await openai_client(proxy, api_key="sk-llmp-not-a-key-000000000000").models.list()
    with pytest.raises(anthropic.AuthenticationError) as aerr:
        await claude(proxy, "wrong").messages.create(model="claude-haiku", max_tokens=5,
                                                      messages=[{"role": "user", "content": "x"}])
    assert aerr.value.body["type"] == "error"  # type: ignore[index]  # Anthropic's shape
    async with aiohttp.ClientSession() as s, s.post(proxy.v1 + "/embeddings", json={"model": "x"}) as r:
        assert r.status == 401
    assert fake.seen == []


# --------------------------------------------------------------------------- model policy


async def test_a_model_the_key_may_not_use_is_403_naming_key_and_model(
        start_proxy, fake_upstream, openai_client, claude):
    fake = await _fake(fake_upstream)
    proxy = await start_proxy(config(fake.url, KEYS), env={"ENV_KEY": ENV_KEY})
    client = openai_client(proxy, api_key=SEARCH_KEY)
    with pytest.raises(openai.PermissionDeniedError) as err:
        await client.chat.completions.create(**_ask("secret-model"))
    assert err.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    assert "'search-team'" in err.value.message and "'secret-model'" in err.value.message
    with pytest.raises(openai.PermissionDeniedError):
        await client.embeddings.create(model="secret-model", input="x")
    with pytest.raises(openai.PermissionDeniedError):
        await client.completions.create(model="secret-model", prompt="x")
    with pytest.raises(openai.PermissionDeniedError):
        await client.responses.create(model="secret-model", input="x")
    # The glob: env-team may use claude-* only.
    env_client = openai_client(proxy, api_key=ENV_KEY)
    assert (await env_client.chat.completions.create(**_ask("claude-haiku"))).choices
    with pytest.raises(openai.PermissionDeniedError):
        await env_client.chat.completions.create(**_ask("gpt-4o-mini"))
    c = claude(proxy, ENV_KEY)
    with pytest.raises(anthropic.PermissionDeniedError) as aerr:
        await c.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert aerr.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert "env-team" in aerr.value.message
    with pytest.raises(anthropic.PermissionDeniedError):
        await c.messages.count_tokens(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert len(fake.seen) == 1


async def test_models_list_shows_only_the_keys_models(start_proxy, fake_upstream, openai_client):
    fake = await _fake(fake_upstream)
    proxy = await start_proxy(config(fake.url, KEYS), env={"ENV_KEY": ENV_KEY})
    listed = await openai_client(proxy, api_key=SEARCH_KEY).models.list()
    assert sorted(m.id for m in listed.data) == ["claude-haiku", "gpt-4o-mini"]
    env = openai_client(proxy, api_key=ENV_KEY)
    assert [m.id for m in (await env.models.list()).data] == ["claude-haiku"]
    assert (await env.models.retrieve("claude-haiku")).id == "claude-haiku"
    with pytest.raises(openai.NotFoundError):
        await env.models.retrieve("gpt-4o-mini")
    plain = await openai_client(proxy, api_key=PLAIN_KEY).models.list()
    assert len(plain.data) == 3


# --------------------------------------------------------------------------- per-key limits


async def test_rpm_is_per_key_with_retry_after_on_the_injected_clock(start_proxy, fake_upstream, openai_client):
    fake = await _fake(fake_upstream)
    keys = f"""
keys:
  - name: slow
    key: {SEARCH_KEY}
    rpm: 2
  - name: other
    key: {ENV_KEY}
    rpm: 2
"""
    clock = Clock()
    proxy = await start_proxy(config(fake.url, keys), clock=clock)
    client = openai_client(proxy, api_key=SEARCH_KEY)
    await client.chat.completions.create(**_ask())
    await client.chat.completions.create(**_ask())
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(**_ask())
    assert err.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert "'slow'" in err.value.message and "rpm" in err.value.message
    assert err.value.response.headers["Retry-After"] == "30"
    # Another key has its own budget of requests.
    await openai_client(proxy, api_key=ENV_KEY).chat.completions.create(**_ask())
    clock.now += 30
    await client.chat.completions.create(**_ask())
    assert len(fake.seen) == 4


async def test_tpm_is_settled_from_the_real_usage(start_proxy, fake_upstream, openai_client):
    fake = await _fake(fake_upstream)  # usage: 7 tokens
    keys = f"""
keys:
  - name: t
    key: {SEARCH_KEY}
    tpm: 300
"""
    clock = Clock()
    proxy = await start_proxy(config(fake.url, keys), clock=clock)
    client = openai_client(proxy, api_key=SEARCH_KEY)
    # Each request is estimated at ~256+ tokens, then settled at the 7 it used:
    # many more than 300 / 256 requests fit in one minute.
    for _ in range(5):
        await client.chat.completions.create(**_ask())
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(**_ask(max_tokens=100_000))  # more than the bucket holds
    assert "tpm" in err.value.message


async def test_max_parallel_slot_is_freed_however_the_request_ends(start_proxy, fake_upstream, openai_client):
    hold = asyncio.Event()
    fake = await _fake(fake_upstream, Reply(stream=openai_stream(["a", "b"]), pause_after=1, resume=hold))
    keys = f"""
keys:
  - name: one-at-a-time
    key: {SEARCH_KEY}
    max_parallel: 1
"""
    proxy = await start_proxy(config(fake.url, keys))
    client = openai_client(proxy, api_key=SEARCH_KEY)
    async with aiohttp.ClientSession() as s:
        first = await s.post(proxy.v1 + "/chat/completions", json=_ask(stream=True),
                             headers={"Authorization": f"Bearer {SEARCH_KEY}"})
        await first.content.readuntil(b"\n\n")
        with pytest.raises(openai.RateLimitError) as err:
            await client.chat.completions.create(**_ask())
        assert "max_parallel" in err.value.message
        assert err.value.response.headers["Retry-After"] == "1"
        first.close()  # the client leaves mid-stream
    service = proxy.proxy.keys
    for _ in range(200):
        if service.counters.in_flight("one-at-a-time") == 0:
            break
        await asyncio.sleep(0.01)  # the handler's cancellation runs on the loop; bounded
    assert service.counters.in_flight("one-at-a-time") == 0
    hold.set()
    fake.script(Reply(json=openai_completion()))
    await client.chat.completions.create(**_ask())
    assert service.counters.in_flight("one-at-a-time") == 0


# --------------------------------------------------------------------------- spend and budgets


def _budget_keys(path: Path, usd: float = 10.0, period: str = "1d", rpm: str = "") -> str:
    return f"""
keys:
  - name: capped
    key: {SEARCH_KEY}
    budget: {{usd: {usd}, period: {period}}}
    {rpm}
state: {{path: "{path}"}}
"""


async def test_budget_crossed_is_429_insufficient_quota_with_spend_cap_and_reset(
        start_proxy, fake_upstream, openai_client, claude, tmp_path: Path):
    fake = await _fake(fake_upstream)  # 5 prompt + 2 completion tokens: $5 + $4 at these prices
    proxy = await start_proxy(config(fake.url, _budget_keys(tmp_path / "s.db")))
    client = openai_client(proxy, api_key=SEARCH_KEY)
    await client.chat.completions.create(**_ask())  # $9 of $10
    await client.chat.completions.create(**_ask())  # $18: crossed while in flight, answered
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(**_ask())
    body = err.value.body
    assert body["code"] == "insufficient_quota" and body["type"] == "insufficient_quota"  # type: ignore[index]
    msg = err.value.message
    assert "$18.0000" in msg and "$10.00" in msg and "1d" in msg and "resets at 20" in msg
    reset = err.value.response.headers["x-llmproxy-budget-reset"]
    assert reset in msg and int(err.value.response.headers["Retry-After"]) <= 86400
    with pytest.raises(anthropic.RateLimitError) as aerr:
        await claude(proxy, SEARCH_KEY).messages.create(model="claude-haiku", max_tokens=5,
                                                        messages=[{"role": "user", "content": "x"}])
    assert "insufficient" not in aerr.value.body["error"]["type"]  # type: ignore[index]
    assert "budget" in aerr.value.message
    doc = _key(await _admin_keys(proxy), "capped")
    assert doc["budget"] == {"usd": 10.0, "period": "1d", "remaining_usd": 0.0, "resets_at": reset}
    assert doc["spend"]["period"]["usd"] == 18.0 and doc["requests"] == 2  # refused ones are not admitted
    assert len(fake.seen) == 2


async def test_budget_is_still_refused_after_a_restart_on_the_same_file(
        start_proxy, fake_upstream, openai_client, tmp_path: Path):
    fake = await _fake(fake_upstream)
    text = config(fake.url, _budget_keys(tmp_path / "state" / "spend.db", usd=5, period="30d"))
    proxy = await start_proxy(text)
    await openai_client(proxy, api_key=SEARCH_KEY).chat.completions.create(**_ask())  # $9 > $5
    await proxy.server.close()  # shutdown: the last batch written
    again = await start_proxy(text)
    with pytest.raises(openai.RateLimitError) as err:
        await openai_client(again, api_key=SEARCH_KEY).chat.completions.create(**_ask())
    assert err.value.body["code"] == "insufficient_quota"  # type: ignore[index]
    assert "$9.0000" in err.value.message
    assert len(fake.seen) == 1


async def test_a_lifetime_budget_says_it_never_resets(start_proxy, fake_upstream, openai_client, tmp_path: Path):
    fake = await _fake(fake_upstream)
    keys = f"""
keys:
  - name: once
    key: {SEARCH_KEY}
    budget: {{usd: 1}}
"""
    proxy = await start_proxy(config(fake.url, keys))
    client = openai_client(proxy, api_key=SEARCH_KEY)
    await client.chat.completions.create(**_ask())
    with pytest.raises(openai.RateLimitError) as err:
        await client.chat.completions.create(**_ask())
    assert "lifetime" in err.value.message and "does not reset" in err.value.message
    assert "x-llmproxy-budget-reset" not in err.value.response.headers


async def test_stream_spend_is_counted_when_the_client_did_not_ask_for_usage(
        start_proxy, fake_upstream, openai_client):
    fake = await _fake(fake_upstream, Reply(stream=openai_stream(["a", "b", "c"], usage=True)))
    keys = f"""
keys:
  - name: streamer
    key: {SEARCH_KEY}
"""
    proxy = await start_proxy(config(fake.url, keys))
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.v1 + "/chat/completions", json=_ask(stream=True),
                          headers={"Authorization": f"Bearer {SEARCH_KEY}"}) as r:
            raw = await r.read()
    assert fake.seen[0].json["stream_options"] == {"include_usage": True}  # asked upstream
    assert b'"usage":{' not in raw and raw.endswith(b"data: [DONE]\n\n")  # not relayed
    doc = _key(await _admin_keys(proxy), "streamer")
    # 5 prompt + 3 completion tokens at $1 / $2 per token.
    assert doc["spend"]["lifetime"] == {"usd": 11.0, "requests": 1, "tokens": 8, "window_start": None,
                                        "resets_at": None}
    # The SDK asking for usage gets the chunk and is charged the same.
    stream = await openai_client(proxy, api_key=SEARCH_KEY).chat.completions.create(
        **_ask(stream=True, stream_options={"include_usage": True}))
    usages = [c.usage for c in [c async for c in stream] if c.usage is not None]
    assert [u.total_tokens for u in usages] == [8]
    assert _key(await _admin_keys(proxy), "streamer")["spend"]["lifetime"]["usd"] == 22.0


async def test_an_answer_without_usage_is_charged_from_the_estimate_and_counted(
        start_proxy, fake_upstream, openai_client):
    fake = await _fake(fake_upstream, Reply(json=openai_completion(usage=False)))
    keys = f"""
keys:
  - name: est
    key: {SEARCH_KEY}
"""
    proxy = await start_proxy(config(fake.url, keys))
    await openai_client(proxy, api_key=SEARCH_KEY).chat.completions.create(**_ask(max_tokens=10))
    doc = _key(await _admin_keys(proxy), "est")["spend"]["lifetime"]
    # "hello" is 5 characters: 5 // 4 + 1 = 2 prompt tokens; max_tokens 10 completion.
    assert doc["tokens"] == 12 and doc["usd"] == 2 * 1 + 10 * 2
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/metrics") as r:
        text = await r.text()
    assert 'llmproxy_key_usage_estimated_total{key="est"} 1.0' in text
    assert 'llmproxy_key_spend_usd_total{key="est"} 22.0' in text
    assert 'llmproxy_key_requests_total{key="est"} 1.0' in text


async def test_count_tokens_and_refused_requests_cost_nothing(start_proxy, fake_upstream, claude, tmp_path: Path):
    fake = await _fake(fake_upstream)
    proxy = await start_proxy(config(fake.url, _budget_keys(tmp_path / "s.db")))
    c = claude(proxy, SEARCH_KEY)
    await c.messages.count_tokens(model="claude-haiku", messages=[{"role": "user", "content": "x"}])
    doc = _key(await _admin_keys(proxy), "capped")
    assert doc["spend"]["lifetime"]["usd"] == 0.0 and doc["requests"] == 1


async def test_prices_file_prices_deployments_without_price(start_proxy, fake_upstream, openai_client):
    fake = await _fake(fake_upstream)
    prices = Path(__file__).parent / "fixtures" / "litellm_prices.json"
    text = textwrap.dedent(f"""
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: k}}
    models:
      mini: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
    prices_file: {prices}
    keys:
      - name: priced
        key: {SEARCH_KEY}
    """)
    proxy = await start_proxy(text)
    await openai_client(proxy, api_key=SEARCH_KEY).chat.completions.create(**_ask("mini"))
    usd = _key(await _admin_keys(proxy), "priced")["spend"]["lifetime"]["usd"]
    assert usd == pytest.approx((5 * 0.15 + 2 * 0.6) / 1e6)


# --------------------------------------------------------------------------- reload, admin, logs


async def test_a_reload_keeps_spend_and_counters_by_name(start_proxy, fake_upstream, openai_client, tmp_path: Path):
    fake = await _fake(fake_upstream)
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(config(fake.url, _budget_keys(tmp_path / "s.db", usd=100, rpm="rpm: 100")))
    proxy = await start_proxy.from_file(str(cfg))
    client = openai_client(proxy, api_key=SEARCH_KEY)
    await client.chat.completions.create(**_ask())
    cfg.write_text(config(fake.url, _budget_keys(tmp_path / "s.db", usd=12, period="7d", rpm="rpm: 50")))
    async with aiohttp.ClientSession() as s, s.post(proxy.url + "/admin/reload") as r:
        assert r.status == 200, await r.text()
    doc = _key(await _admin_keys(proxy), "capped")
    assert doc["limits"]["rpm"] == 50
    assert doc["budget"]["remaining_usd"] == 3.0  # the $9 spent counts in the new 7d window too
    await client.chat.completions.create(**_ask())
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(**_ask())


async def test_admin_keys_shows_policy_and_spend_and_no_key_material(start_proxy, fake_upstream, openai_client):
    fake = await _fake(fake_upstream)
    proxy = await start_proxy(config(fake.url, KEYS, "admin: {token: admin-token-0123456789}\n"),
                              env={"ENV_KEY": ENV_KEY})
    await openai_client(proxy, api_key=SEARCH_KEY).chat.completions.create(**_ask())
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/admin/keys", headers={"Authorization": f"Bearer {SEARCH_KEY}"}) as r:
            assert r.status == 401  # not an admin key
        async with s.get(proxy.url + "/admin/config", headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as r:
            config_text = await r.text()
            assert r.status == 200
    doc = await _admin_keys(proxy, ADMIN_KEY)  # role: admin opens /admin/* besides admin.token
    raw = orjson.dumps(doc).decode() + config_text
    for material in (SEARCH_KEY, ENV_KEY, ADMIN_KEY, PLAIN_KEY, sha(SEARCH_KEY), sha(ENV_KEY), sha(ADMIN_KEY)):
        assert material not in raw
    search = _key(doc, "search-team")
    assert search["metadata"] == {"team": search["metadata"]["team"]} == {"team": "search"}
    assert search["models"] == ["gpt-4o-mini", "claude-*"]
    assert search["requests"] == 1 and search["tokens"] == 7 and search["spend"]["lifetime"]["usd"] == 9.0
    assert search["budget"] is None and search["spend"]["period"] is None
    plain = _key(doc, f"api-key-{sha(PLAIN_KEY)[:8]}")
    assert plain["models"] is None
    assert _key(doc, "ops")["role"] == "admin"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_the_access_line_names_the_key_never_the_key(start_proxy, fake_upstream, openai_client,
                                                            captured_logs: io.StringIO):
    fake = await _fake(fake_upstream)
    proxy = await start_proxy(config(fake.url, KEYS), env={"ENV_KEY": ENV_KEY})
    setup_logging("info", "json", proxy.app[REDACTOR], stream=captured_logs)
    await openai_client(proxy, api_key=SEARCH_KEY).chat.completions.create(**_ask())
    with pytest.raises(openai.PermissionDeniedError):
        await openai_client(proxy, api_key=SEARCH_KEY).chat.completions.create(**_ask("secret-model"))
    for _ in range(200):
        if captured_logs.getvalue().count("llmproxy.access") >= 2:
            break
        await asyncio.sleep(0.01)  # access lines are written at the end of the loop iteration; bounded
    lines = [orjson.loads(x) for x in captured_logs.getvalue().splitlines() if "llmproxy.access" in x]
    assert [(x["key"], x["status"]) for x in lines] == [("search-team", 200), ("search-team", 403)]
    assert SEARCH_KEY not in captured_logs.getvalue()


async def test_no_keys_configured_means_no_auth_and_no_key_in_the_access_line(
        start_proxy, fake_upstream, openai_client):
    fake = await _fake(fake_upstream)
    proxy = await start_proxy(config(fake.url, ""))
    assert (await openai_client(proxy, api_key="anything").chat.completions.create(**_ask())).choices
    assert proxy.proxy.keys.local.store is None

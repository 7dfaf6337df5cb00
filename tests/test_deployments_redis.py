"""Deployment rpm / tpm / max_concurrency shared on Redis (``state.redis``).

Two or three real proxy apps (``start_proxy``: each its own app, its own
SharedRedis, its own port) on one real redis-server stand for the workers
and pods of a fleet; one fake upstream counts what reaches it; clients are
the openai SDK. Every answer of the fake reports 7 total tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import redis.asyncio as aioredis

from llmproxy.config.tree import parse_config
from llmproxy.router.shared import PREFIX, DeploymentCounters
from llmproxy.router.state import DeploymentState
from llmproxy.state.redis import SHARED_REDIS, SharedRedis

from .conftest import RunningProxy, StartProxy
from .fakes import FakeUpstream, Reply, openai_completion, openai_stream
from .processes import Group, metric
from .redis_server import RedisServer

MakeFake = Callable[[], Awaitable[FakeUpstream]]
LEASES = PREFIX + "{d1}:leases"


def config(fake: FakeUpstream, redis: str | None, limits: str, queue_timeout: float = 0) -> str:
    shared = f"\nstate:\n  redis: {redis}\n" if redis else ""
    return f"""
providers:
  up: {{type: openai, base_url: "{fake.url}/v1", api_key: sk-upstream-secret}}
models:
  m:
    deployments:
      - {{provider: up, model: gpt-4o, id: d1, {limits}, queue_timeout: {queue_timeout}}}
logging: {{level: warning}}
""" + shared


async def until(cond: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    """Wait for ``cond`` (bounded: a hang is a failure that says what it waited for)."""
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def ask(p: RunningProxy, **extra: Any) -> int | str:
    """200, or the error's code."""
    async with openai.AsyncOpenAI(base_url=p.v1, api_key="k", max_retries=0) as client:
        try:
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], **extra)
        except openai.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            return str(body.get("code"))
    return 200


async def deployment(p: RunningProxy) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(p.url + "/admin/deployments") as r:
        (dep,) = orjson.loads(await r.read())["deployments"]
        return dict(dep)


async def metrics(p: RunningProxy) -> str:
    async with aiohttp.ClientSession() as s, s.get(p.url + "/metrics") as r:
        return await r.text()


async def redis_value(url: str, fn: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
    r = aioredis.from_url(url)
    try:
        return await fn(r)
    finally:
        await r.aclose()


async def leases(url: str) -> int:
    return int(await redis_value(url, lambda r: r.zcard(LEASES)))


async def tpm_counted(url: str) -> int:
    async def run(r: aioredis.Redis) -> int:
        keys = [k async for k in r.scan_iter(match=PREFIX + "{d1}:tpm:*")]
        return sum(int(v) for v in await r.mget(keys)) if keys else 0

    return int(await redis_value(url, run))


async def script_calls(url: str) -> int:
    stats = await redis_value(url, lambda r: r.info("commandstats"))
    return sum(int(stats.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha", "cmdstat_eval"))


def settled(*ps: RunningProxy) -> Callable[[], Awaitable[bool]]:
    async def cond() -> bool:
        return all(p.proxy.registry.counters is not None and p.proxy.registry.counters.settling() == 0 for p in ps)

    return cond


async def test_two_proxies_on_one_redis_admit_one_deployment_rpm(
        start_proxy: StartProxy, fake_upstream: MakeFake, redis_url: str) -> None:
    fake = await fake_upstream()
    a = await start_proxy(config(fake, redis_url, "rpm: 3"))
    b = await start_proxy(config(fake, redis_url, "rpm: 3"))
    results = [await ask(a if i % 2 else b) for i in range(10)]
    assert results.count(200) == 3, results  # one limit for both, not 3 each
    assert set(results) == {200, "no_capacity"}
    assert len(fake.seen) == 3
    assert {(await deployment(p))["limits"] for p in (a, b)} == {"shared"}
    # A refusal by the fleet's counters is counted as the rpm limit it is.
    for p in (a, b):
        assert 'kind="rpm"' in "".join(line for line in (await metrics(p)).splitlines()
                                       if line.startswith("llmproxy_rate_limited"))


async def test_max_concurrency_one_across_proxies_waits_or_refuses_then_admits(
        start_proxy: StartProxy, fake_upstream: MakeFake, redis_url: str) -> None:
    fake = await fake_upstream()
    hold = asyncio.Event()
    fake.script(Reply(json=openai_completion(), hold=hold))
    a = await start_proxy(config(fake, redis_url, "max_concurrency: 1", queue_timeout=30))
    b = await start_proxy(config(fake, redis_url, "max_concurrency: 1", queue_timeout=0))
    c = await start_proxy(config(fake, redis_url, "max_concurrency: 1", queue_timeout=30))
    first = asyncio.create_task(ask(a))
    await until(lambda: _true(len(fake.seen) == 1), "the first request at the upstream")
    assert await leases(redis_url) == 1
    # Another process's gate is free, the fleet's slot is not: refused at once...
    assert await ask(b) == "no_capacity"
    assert 'kind="concurrency"' in await metrics(b)
    # ...or, with a queue_timeout, waiting (it asks Redis again and again).
    before = await script_calls(redis_url)
    third = asyncio.create_task(ask(c))
    await until(lambda: _gt(script_calls(redis_url), before + 2), "the waiting request to poll")
    assert len(fake.seen) == 1 and not third.done()
    # A client that gives up while its request waits for the fleet's slot
    # (cancelled between two polls or in the middle of one) leaves nothing held.
    async with aiohttp.ClientSession() as session:
        before = await script_calls(redis_url)
        leaving = asyncio.create_task(session.post(c.v1 + "/chat/completions", json={
            "model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        await until(lambda: _gt(script_calls(redis_url), before + 4), "the leaving request to poll")
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving

    async def only_third_left() -> bool:  # the client requests c is answering
        return metric(await metrics(c), "llmproxy_requests_in_flight") == 1

    await until(only_third_left, "the proxy to see the client leave")
    assert await leases(redis_url) == 1  # still only the first request's
    hold.set()
    assert await first == 200
    assert await third == 200  # let through once the first released its slot
    assert len(fake.seen) == 2
    await until(settled(a, b, c), "the settles")
    assert await leases(redis_url) == 0


async def test_a_fleet_full_deployment_sends_the_request_to_the_next_one(
        start_proxy: StartProxy, fake_upstream: MakeFake, redis_url: str) -> None:
    fake, other = await fake_upstream(), await fake_upstream()
    a = await start_proxy(_two_deployments(fake, other, redis_url))
    b = await start_proxy(_two_deployments(fake, other, redis_url))
    assert [await ask(p) for p in (a, b, a)] == [200, 200, 200]
    assert (len(fake.seen), len(other.seen)) == (1, 2)  # d1's one request a minute went to the fleet's first


def _two_deployments(fake: FakeUpstream, other: FakeUpstream, redis: str) -> str:
    return f"""
providers:
  up: {{type: openai, base_url: "{fake.url}/v1", api_key: sk-upstream-secret}}
  spare: {{type: openai, base_url: "{other.url}/v1", api_key: sk-spare-secret}}
models:
  m:
    deployments:
      - {{provider: up, model: gpt-4o, id: d1, rpm: 1, queue_timeout: 0}}
      - {{provider: spare, model: gpt-4o, id: d2, priority: 1}}
logging: {{level: warning}}
state: {{redis: {redis}}}
"""


async def test_tpm_is_corrected_by_usage_across_proxies(
        start_proxy: StartProxy, fake_upstream: MakeFake, redis_url: str) -> None:
    fake = await fake_upstream()
    # Each request is estimated at ~61 tokens (max_tokens 60) and uses 7:
    # without the correction the second request would not fit in 100.
    a = await start_proxy(config(fake, redis_url, "tpm: 100"))
    b = await start_proxy(config(fake, redis_url, "tpm: 100"))
    for i in range(4):
        assert await ask(a if i % 2 else b, max_tokens=60) == 200
        await until(settled(a, b), "the settle")
        assert await tpm_counted(redis_url) == 7 * (i + 1)
    assert len(fake.seen) == 4


async def test_redis_outage_falls_back_to_local_limits_and_shares_again(
        start_proxy: StartProxy, fake_upstream: MakeFake, redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory()
    fake = await fake_upstream()
    # The local limiters on a clock that stands still: they never leak, however slow the run.
    a = await start_proxy(config(fake, server.url, "rpm: 3"), clock=lambda: 1000.0)
    b = await start_proxy(config(fake, server.url, "rpm: 3"), clock=lambda: 1000.0)
    assert [await ask(p) for p in (a, b, a, b)].count(200) == 3
    server.stop()
    # The first request finds Redis gone mid-request and is admitted on its
    # process's own limiter; each process allows its local limit (its worker
    # share: the whole 3 for a single process) afresh, never more.
    results = [await ask(p) for p in (a, b) * 4]
    assert results.count(200) == 6, results
    assert set(results) == {200, "no_capacity"}
    assert {(await deployment(p))["limits"] for p in (a, b)} == {"local"}
    assert len(fake.seen) == 9
    server.start()  # an empty Redis (no persistence): a fresh window

    async def both_up() -> bool:
        return all(p.app[SHARED_REDIS].up for p in (a, b))

    await until(both_up, "both proxies to reconnect")
    assert {(await deployment(p))["limits"] for p in (a, b)} == {"shared"}
    results = [await ask(p) for p in (a, b) * 3]
    assert results.count(200) == 3, results  # one limit again
    assert len(fake.seen) == 12


async def test_every_lease_is_released_once_including_a_client_that_leaves_mid_stream(
        start_proxy: StartProxy, fake_upstream: MakeFake, redis_url: str) -> None:
    fake = await fake_upstream()
    a = await start_proxy(config(fake, redis_url, "max_concurrency: 2", queue_timeout=30))
    b = await start_proxy(config(fake, redis_url, "max_concurrency: 2", queue_timeout=30))
    stream = Reply(stream=openai_stream(["a", "b", "c"], usage=True))
    fake.responder = lambda seen: stream if orjson.loads(seen.body).get("stream") else Reply(json=openai_completion())

    async def one(p: RunningProxy, i: int) -> None:
        async with openai.AsyncOpenAI(base_url=p.v1, api_key="k", max_retries=0) as client:
            if i % 3:
                await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            else:
                s = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                         stream=True, stream_options={"include_usage": True})
                assert [c async for c in s]

    await asyncio.gather(*(one(a if i % 2 else b, i) for i in range(24)))
    assert len(fake.seen) == 24  # all waited their turn, none refused
    await until(settled(a, b), "the settles")
    assert await leases(redis_url) == 0
    # A client that leaves mid-stream: its slot is released, once.
    resume = asyncio.Event()
    fake.responder = lambda seen: Reply(stream=openai_stream(["a", "b", "c"]), pause_after=2, resume=resume)
    async with aiohttp.ClientSession() as s:
        resp = await s.post(a.v1 + "/chat/completions", json={
            "model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        assert resp.status == 200
        await resp.content.readline()
        assert await leases(redis_url) == 1
        resp.close()
    await fake.disconnected.wait()
    await until(lambda: _true(a.proxy.registry.all()[0].in_flight == 0), "the proxy to see the client leave")
    await until(settled(a), "the settle")
    assert await leases(redis_url) == 0
    assert (await deployment(a))["in_flight"] == 0


async def test_without_redis_deployment_limits_are_local(start_proxy: StartProxy, fake_upstream: MakeFake) -> None:
    fake = await fake_upstream()
    a = await start_proxy(config(fake, None, "rpm: 2"))
    assert a.proxy.registry.counters is None and a.proxy.registry.all()[0].shared is None
    assert [await ask(a) for _ in range(3)] == [200, 200, "no_capacity"]
    assert (await deployment(a))["limits"] == "local"


async def test_a_workers_group_on_redis_enforces_one_deployment_rpm(
        group: Callable[..., Awaitable[tuple[Group, FakeUpstream]]], redis_url: str) -> None:
    # Real `llmproxy serve --workers 2`: without Redis each worker would allow 2.
    g, fake = await group(f"state: {{redis: {redis_url}}}", ", rpm: 4, queue_timeout: 0")
    results = [await g.chat() for _ in range(12)]
    assert [status for status, _ in results].count(200) == 4, results
    assert {status for status, _ in results} == {200, 429}
    assert len({w for _, w in results}) == 2  # both workers answered (and refused)
    assert len(fake.seen) == 4
    status, _, body = await g.get("/admin/deployments")
    assert status == 200
    (dep,) = orjson.loads(body)["deployments"]
    assert dep["limits"] == "shared"
    assert dep["worker_share"]["rpm"] == 2  # what each falls back to without Redis


def test_a_deployment_state_switches_between_its_worker_share_and_the_full_limit() -> None:
    cfg = parse_config("""
providers: {up: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key: k}}
models:
  m: {deployments: [{provider: up, model: x, id: d1, rpm: 10, tpm: 1000, max_concurrency: 4},
                    {provider: up, model: y, id: d2}]}
""", env={})
    limited, free = cfg.deployments()
    counters = DeploymentCounters(SharedRedis("redis://127.0.0.1:9/0"))
    st = DeploymentState(limited, time.monotonic, workers=2)
    assert (st.gate.limit, st.rpm and st.rpm.max_rate, st.tpm and st.tpm.max_rate) == (2, 5, 500)
    assert st.limits_mode() == "local"
    st.share(counters)  # Redis up: the fleet's counters are the limit
    assert st.shared is counters and st.limits_mode() == "shared"
    assert (st.gate.limit, st.rpm and st.rpm.max_rate, st.tpm and st.tpm.max_rate) == (4, 10, 1000)
    st.share(None)  # Redis down: this worker's share again
    assert st.shared is None
    assert (st.gate.limit, st.rpm and st.rpm.max_rate, st.tpm and st.tpm.max_rate) == (2, 5, 500)
    # A deployment with no limit never costs a round trip.
    plain = DeploymentState(free, time.monotonic, workers=2, counters=counters)
    assert plain.shared is None and plain.limits_mode() is None


async def _true(value: bool) -> bool:
    return value


async def _gt(value: Awaitable[int], than: int) -> bool:
    return await value > than

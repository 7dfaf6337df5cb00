"""Per-key limits and budgets across processes: ``state.redis`` and ``--workers``.

Real ``python -m llmproxy serve`` processes (tests/processes.py) on distinct
ports share one real redis-server and one fake upstream; the clients are
the openai SDK. Every answer of the fake reports 5 prompt and 2 completion
tokens, priced at $1 and $2 per token: each request costs $9.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import openai
import orjson
import redis.asyncio as aioredis

from .fakes import FakeUpstream
from .processes import Group, metric, until
from .redis_server import RedisServer

KEY = "sk-team-key-0123456789abcdef"
OTHER = "sk-other-key-0123456789abcdef"
PRICED = ", price: {input_per_mtok: 1000000, output_per_mtok: 2000000}"
MakeGroup = Callable[..., Awaitable[tuple[Group, FakeUpstream]]]


def keys(redis: str | None, *, rpm: int | None = None, budget: float | None = None) -> str:
    limits = (f"\n    rpm: {rpm}" if rpm else "") + (f"\n    budget: {{usd: {budget}}}" if budget else "")
    shared = f"\n  redis: {redis}" if redis else ""
    return f"""
keys:
  - name: team
    key: {KEY}{limits}
  - name: other
    key: {OTHER}
state:
  path: state.db{shared}
"""


def sdk(g: Group, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=g.url + "/v1", api_key=key, max_retries=0)


async def ask(client: openai.AsyncOpenAI) -> int | str:
    """200, or the error's code."""
    try:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        return str(body.get("code"))
    return 200


async def admin_key(g: Group, name: str = "team") -> dict[str, Any]:
    status, _, body = await g.get("/admin/keys")
    assert status == 200, body
    (entry,) = [k for k in orjson.loads(body)["keys"] if k["name"] == name]
    return dict(entry)


async def shared_spend(url: str, name: str = "team") -> float:
    r = aioredis.from_url(url)
    try:
        value = await r.get(f"llmproxy:{{{name}}}:spend:lifetime")
    finally:
        await r.aclose()
    return float(value or 0)


async def two_processes(group: MakeGroup, extra: str) -> tuple[Group, Group, FakeUpstream]:
    a, fake = await group(extra, PRICED, workers=1, name="a")
    b, _ = await group(extra, PRICED, workers=1, name="b", fake=fake)
    return a, b, fake


async def test_two_processes_on_one_redis_enforce_one_rpm_limit(group: MakeGroup, redis_url: str) -> None:
    a, b, fake = await two_processes(group, keys(redis_url, rpm=4))
    ca, cb = sdk(a), sdk(b)
    try:
        results = [await ask(ca if i % 2 else cb) for i in range(10)]
    finally:
        await ca.close()
        await cb.close()
    assert results.count(200) == 4, results  # one limit for both, not 4 each
    assert set(results) == {200, "rate_limit_exceeded"}
    assert len(fake.seen) == 4
    # The key without limits is not held back by the other key's.
    co = sdk(a, OTHER)
    try:
        assert [await ask(co) for _ in range(3)] == [200, 200, 200]
    finally:
        await co.close()


async def test_two_processes_on_one_redis_enforce_one_budget(group: MakeGroup, redis_url: str) -> None:
    a, b, fake = await two_processes(group, keys(redis_url, budget=10))
    ca, cb = sdk(a), sdk(b)
    try:
        assert await ask(ca) == 200  # $9 of $10, spent through a

        async def settled_9() -> bool:
            return await shared_spend(redis_url) == 9.0

        await until(settled_9, "a's spend to reach Redis")  # settled a round trip after the answer
        assert await ask(cb) == 200  # $18 through b: crossed while in flight, answered

        async def settled_18() -> bool:
            return await shared_spend(redis_url) == 18.0

        await until(settled_18, "b's spend to reach Redis")
        assert await ask(ca) == "insufficient_quota"  # a refuses what b spent
        assert await ask(cb) == "insufficient_quota"
    finally:
        await ca.close()
        await cb.close()
    assert len(fake.seen) == 2
    # /admin/keys of either process shows the fleet's spend, not its own.
    for g in (a, b):
        doc = await admin_key(g)
        assert doc["spend"]["lifetime"]["usd"] == 18.0
        assert doc["budget"]["remaining_usd"] == 0.0
        assert doc["requests"] == 1  # requests are this process's own


async def test_redis_stopped_mid_run_both_serve_and_spend_is_reconciled(
        group: MakeGroup, redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory()
    a, b, fake = await two_processes(group, keys(server.url, rpm=100, budget=1000))
    ca, cb = sdk(a), sdk(b)
    try:
        assert [await ask(ca), await ask(cb)] == [200, 200]

        async def before() -> bool:
            return await shared_spend(server.url) == 18.0

        await until(before, "the spend before the outage to reach Redis")  # not buffered, then
        server.stop()  # no persistence: what it held is gone when it comes back
        # Both keep serving, on local counters; each says Redis is down.
        assert [await ask(ca), await ask(cb), await ask(ca)] == [200, 200, 200]
        for g in (a, b):
            status, _, body = await g.get("/readyz")
            assert status == 200 and orjson.loads(body)["redis"] == "down"
            assert metric(await g.metrics(), "llmproxy_redis_up") == 0
            status, _, body = await g.get("/admin/keys")
            assert orjson.loads(body)["shared"] == "unavailable"  # and this process's own figures
        server.start()

        async def reconciled() -> bool:
            # The three outage requests ($27), added once each process reconnected.
            return await shared_spend(server.url) == 27.0

        await until(reconciled, "the spend made during the outage to be reconciled")
        for g in (a, b):
            status, _, body = await g.get("/readyz")
            assert orjson.loads(body)["redis"] == "up"
            status, _, body = await g.get("/admin/keys")
            assert orjson.loads(body)["shared"] == "redis"
        assert await ask(cb) == 200

        async def settled() -> bool:
            return await shared_spend(server.url) == 36.0

        await until(settled, "the next request's spend")
    finally:
        await ca.close()
        await cb.close()
    assert len(fake.seen) == 6


async def test_a_budget_spent_during_an_outage_is_refused_locally(
        group: MakeGroup, redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory()
    (a, _) = await group(keys(server.url, budget=10), PRICED, workers=1, name="a")
    ca = sdk(a)
    try:
        server.stop()
        assert await ask(ca) == 200  # $9, buffered for Redis
        assert await ask(ca) == 200  # $18: crossed while in flight
        assert await ask(ca) == "insufficient_quota"  # the buffered spend counts
    finally:
        await ca.close()


async def test_workers_on_redis_enforce_one_per_key_rpm(group: MakeGroup, redis_url: str) -> None:
    g, fake = await group(keys(redis_url, rpm=4), PRICED)
    results = [await g.chat({"Authorization": f"Bearer {KEY}"}) for _ in range(12)]
    ok = [w for status, w in results if status == 200]
    assert len(ok) == 4, results
    assert {status for status, _ in results} == {200, 429}
    assert len({w for _, w in results}) == 2  # both workers answered (and refused)
    assert len(fake.seen) == 4
    doc = await admin_key(g)
    assert "worker_share" in doc  # the fallback's share, should Redis go away
    assert doc["limits"]["rpm"] == 4


async def test_workers_without_redis_divide_each_keys_limits(group: MakeGroup) -> None:
    extra = keys(None, rpm=4).replace("    rpm: 4", "    rpm: 4\n    tpm: 1000\n    max_parallel: 5")
    g, fake = await group(extra, PRICED)
    doc = await admin_key(g)
    assert doc["limits"] == {"rpm": 4, "tpm": 1000, "max_parallel": 5}
    assert doc["worker_share"] == {"rpm": 2, "tpm": 500, "max_parallel": 2}
    results = [await g.chat({"Authorization": f"Bearer {KEY}"}) for _ in range(12)]
    ok = [w for status, w in results if status == 200]
    assert len(ok) <= 4, results  # never more than the configured limit, whichever worker
    assert {status for status, _ in results} <= {200, 429}
    assert len(fake.seen) == len(ok)


async def test_workers_without_redis_share_one_budget_through_the_state_file(group: MakeGroup) -> None:
    g, fake = await group(keys(None, budget=10), PRICED)
    auth = {"Authorization": f"Bearer {KEY}"}

    async def every_worker_sees(usd: float) -> bool:
        seen = set()
        for _ in range(20):
            _, worker, body = await g.get("/admin/keys")
            (team,) = [k for k in orjson.loads(body)["keys"] if k["name"] == "team"]
            if team["spend"]["lifetime"]["usd"] == usd:
                seen.add(worker)
        return len(seen) == 2

    assert (await g.chat(auth))[0] == 200  # $9 of $10, through one worker
    # Each worker reads every worker's spend back from the file within a second or two.
    await until(lambda: every_worker_sees(9.0), "both workers to see $9", timeout=30)
    assert (await g.chat(auth))[0] == 200  # $18: crossed while in flight
    await until(lambda: every_worker_sees(18.0), "both workers to see $18", timeout=30)
    results = [await g.chat(auth) for _ in range(10)]
    assert {status for status, _ in results} == {429}
    assert len({w for _, w in results}) == 2
    assert len(fake.seen) == 2

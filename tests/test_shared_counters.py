"""Per-key limits and spend on a real redis-server, as a fleet shares them.

Two ``SharedRedis`` clients stand for two proxy processes. Time is the
``now`` argument, so windows and lease expiry are exact, without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from llmproxy.observe.metrics import Metrics
from llmproxy.state.counters import (
    KeyLimits,
    Lease,
    Refused,
    SharedCounters,
    SpendBuffer,
    Spent,
)
from llmproxy.state.redis import UNAVAILABLE, SharedRedis

from .redis_server import RedisServer

T0 = 1_800_000_000.0 + 10.0  # 10 s into a minute
END = T0 + 3600  # the budget period resets in an hour


@pytest.fixture
async def process() -> Any:
    """``await process(url)``: the Redis state of one proxy process."""
    opened: list[SharedRedis] = []

    async def make(url: str, *, lease_ttl: float = 600.0, on_health: Any = None,
                   buffer: SpendBuffer | None = None) -> SharedCounters:
        # A stopped server is refused at once; a generous bound keeps a busy
        # machine from faking an outage.
        redis = SharedRedis(url, timeout=5.0, retry_min=0.02, retry_max=0.1, on_health=on_health)
        await redis.start()
        opened.append(redis)
        return SharedCounters(redis, lease_ttl=lease_ttl, buffer=buffer)

    yield make
    for r in opened:
        await r.close()


async def test_two_processes_enforce_one_rpm(redis_url: str, process: Any) -> None:
    a, b = await process(redis_url), await process(redis_url)
    limits = KeyLimits(rpm=3)
    results = [await (a if i % 2 == 0 else b).admit("team", limits, 0, T0 + i) for i in range(4)]
    assert all(isinstance(r, Lease) for r in results[:3])
    refused = results[3]
    assert isinstance(refused, Refused) and refused.reason == "rpm"
    # 3 requests in this minute (13 s in): the window turns in 47 s, and then
    # the 3 still weigh 3 × (60 - t)/60; one more fits when that is <= 2,
    # 20 s into the next minute: 47 + 20 = 67 s.
    assert refused.retry_after == pytest.approx(67.0, abs=0.01)
    # Nothing was taken by the refusal; another key has its own counters.
    assert isinstance(await b.admit("other", limits, 0, T0 + 4), Lease)
    assert isinstance(await a.admit("team", limits, 0, T0 + 66), Refused)
    assert isinstance(await a.admit("team", limits, 0, T0 + 3 + 67 + 0.01), Lease)


async def test_the_window_slides_instead_of_resetting(redis_url: str, process: Any) -> None:
    a = await process(redis_url)
    limits = KeyLimits(rpm=10)
    for i in range(10):
        assert isinstance(await a.admit("k", limits, 0, T0 + i), Lease)
    # 1 s into the next minute the last minute's 10 still weigh 10 × 59/60:
    # a fixed window would admit 10 more at once, this admits none yet.
    start_of_next = (T0 // 60 + 1) * 60
    assert isinstance(await a.admit("k", limits, 0, start_of_next + 1), Refused)
    # Half way through, 5 weigh: 5 more fit, and only 5.
    got = [await a.admit("k", limits, 0, start_of_next + 30) for _ in range(6)]
    assert [isinstance(g, Lease) for g in got] == [True] * 5 + [False]


async def test_tpm_takes_the_estimate_and_settle_corrects_it(redis_url: str, process: Any) -> None:
    a, b = await process(redis_url), await process(redis_url)
    limits = KeyLimits(tpm=1000)
    first = await a.admit("k", limits, 800, T0)
    assert isinstance(first, Lease) and first.tokens == 800
    refused = await b.admit("k", limits, 300, T0 + 1)
    assert isinstance(refused, Refused) and refused.reason == "tpm" and refused.retry_after
    # The answer used 200 tokens, not 800: 600 come back to the window.
    assert await a.settle("k", first, 200 - 800, 0.0) is True
    assert isinstance(await b.admit("k", limits, 300, T0 + 2), Lease)


async def test_a_request_larger_than_the_tpm_waits_for_an_empty_window(redis_url: str, process: Any) -> None:
    a = await process(redis_url)
    limits = KeyLimits(tpm=100)
    assert isinstance(await a.admit("k", limits, 500, T0), Lease)  # empty window: admitted
    assert isinstance(await a.admit("k", limits, 500, T0 + 1), Refused)


async def test_a_limit_of_zero_refuses_with_a_retry_after(redis_url: str, process: Any) -> None:
    a = await process(redis_url)
    refused = await a.admit("k", KeyLimits(rpm=0), 0, T0)
    assert isinstance(refused, Refused) and refused.reason == "rpm" and refused.retry_after == 110.0


async def test_two_processes_enforce_one_budget(redis_url: str, process: Any) -> None:
    a, b = await process(redis_url), await process(redis_url)
    limits = KeyLimits(budget_usd=1.0, period="1h:500000", period_end=END)
    la, lb = await a.admit("team", limits, 0, T0), await b.admit("team", limits, 0, T0)
    assert isinstance(la, Lease) and isinstance(lb, Lease)
    assert await a.settle("team", la, 0, 0.6) is True
    assert isinstance(await b.admit("team", limits, 0, T0 + 1), Lease)  # 0.6 < 1.0
    assert await b.settle("team", lb, 0, 0.5) is True
    refused = await a.admit("team", limits, 0, T0 + 2)
    assert isinstance(refused, Refused) and refused.reason == "budget"
    assert refused.spent_usd == pytest.approx(1.1) and refused.budget_usd == 1.0
    assert refused.retry_after == pytest.approx(END - (T0 + 2))
    assert await b.spent([("team", "1h:500000"), ("nobody", "1h:500000")]) == {
        "team": Spent(pytest.approx(1.1), pytest.approx(1.1)),  # type: ignore[arg-type]
        "nobody": Spent(0.0, 0.0),
    }
    # The next period starts from nothing; the lifetime goes on.
    nxt = KeyLimits(budget_usd=1.0, period="1h:500001", period_end=END + 3600)
    lease = await a.admit("team", nxt, 0, END + 1)
    assert isinstance(lease, Lease)
    await a.settle("team", lease, 0, 0.25)
    spent = await a.spent([("team", "1h:500001")])
    assert spent == {"team": Spent(pytest.approx(0.25), pytest.approx(1.35))}  # type: ignore[arg-type]


async def test_a_lifetime_budget_never_resets(redis_url: str, process: Any) -> None:
    a = await process(redis_url)
    limits = KeyLimits(budget_usd=0.5)
    lease = await a.admit("k", limits, 0, T0)
    assert isinstance(lease, Lease)
    await a.settle("k", lease, 0, 0.5)
    refused = await a.admit("k", limits, 0, T0 + 10**6)
    assert isinstance(refused, Refused) and refused.reason == "budget" and refused.retry_after is None
    assert await a.spent([("k", "")]) == {"k": Spent(0.5, 0.5)}


async def test_parallel_leases_are_shared_released_and_expire(redis_url: str, process: Any) -> None:
    a = await process(redis_url, lease_ttl=30)
    b = await process(redis_url, lease_ttl=30)
    limits = KeyLimits(max_parallel=2)
    one, two = await a.admit("k", limits, 0, T0), await b.admit("k", limits, 0, T0)
    assert isinstance(one, Lease) and isinstance(two, Lease) and one.id != two.id
    full = await a.admit("k", limits, 0, T0 + 1)
    assert isinstance(full, Refused) and full.reason == "parallel" and full.retry_after == 1.0
    await b.settle("k", two, 0, 0.0)  # released
    three = await b.admit("k", limits, 0, T0 + 2)
    assert isinstance(three, Lease)
    # Process a "crashes" holding `one`: its lease lapses 30 s after it was
    # taken, so the key is not stuck at one slot forever.
    assert isinstance(await a.admit("k", limits, 0, T0 + 29), Refused)
    assert isinstance(await a.admit("k", limits, 0, T0 + 30.5), Lease)


async def test_a_refusal_takes_nothing(redis_url: str, process: Any) -> None:
    a = await process(redis_url)
    limits = KeyLimits(rpm=100, tpm=100, max_parallel=1)
    held = await a.admit("k", limits, 10, T0)
    assert isinstance(held, Lease)
    for _ in range(5):
        assert isinstance(await a.admit("k", limits, 10, T0), Refused)  # parallel
    await a.settle("k", held, 0, 0.0)
    # 1 request and 10 tokens counted, not 6 and 60.
    for _ in range(9):
        lease = await a.admit("k", limits, 10, T0)
        assert isinstance(lease, Lease)
        await a.settle("k", lease, 0, 0.0)
    refused = await a.admit("k", limits, 10, T0)
    assert isinstance(refused, Refused) and refused.reason == "tpm"


async def test_an_outage_buffers_spend_and_reconciles_it_once(redis_factory: Callable[..., RedisServer],
                                                               process: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    server = redis_factory()
    metrics = Metrics()
    a = await process(server.url, on_health=metrics.redis_up)
    observer = await process(server.url)
    limits = KeyLimits(rpm=100, max_parallel=10, budget_usd=10.0, period="30d:1", period_end=END)
    lease = await a.admit("team", limits, 0, T0)
    assert isinstance(lease, Lease)
    assert b"llmproxy_redis_up 1.0" in metrics.render()[0]

    caplog.set_level(logging.INFO, "llmproxy.state")
    server.stop()
    # The request admitted before the outage settles during it: its spend waits.
    assert await a.settle("team", lease, 0, 0.75) is UNAVAILABLE
    assert await a.admit("team", limits, 0, T0 + 1) is UNAVAILABLE  # the caller uses local limits
    # Spend of requests admitted on local limits meanwhile (the keys' ledger feeds it).
    assert a.buffer_spend("team", "30d:1", END, 0.25)
    assert await a.settle("team", None, 0, 1.0, period="30d:1", period_end=END) is UNAVAILABLE
    assert a.buffer.pending_usd("team") == pytest.approx(2.0)
    assert b"llmproxy_redis_up 0.0" in metrics.render()[0]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

    await asyncio.to_thread(server.start)
    async with asyncio.timeout(30):
        while len(a.buffer) or not a.redis.up:
            await asyncio.sleep(0.01)
    assert b"llmproxy_redis_up 1.0" in metrics.render()[0]
    async with asyncio.timeout(30):
        while not observer.redis.up:
            await asyncio.sleep(0.01)
    assert await observer.spent([("team", "30d:1")]) == {
        "team": Spent(pytest.approx(2.0), pytest.approx(2.0)),  # type: ignore[arg-type]
    }
    assert any("reconciled" in r.getMessage() for r in caplog.records)


async def test_a_flush_whose_answer_was_lost_is_not_counted_twice(redis_url: str, process: Any) -> None:
    a = await process(redis_url)
    a.buffer_spend("k", "", None, 0.5)
    sealed = a.buffer.seal()
    assert len(sealed) == 1
    # Redis applied the flush but its answer never arrived: the entry stays
    # sealed with its flush id, and the retry finds the marker.
    assert await a.reconcile() == 1
    a.buffer.sealed.append(sealed[0])
    assert await a.reconcile() == 0
    assert await a.spent([("k", "")]) == {"k": Spent(0.5, 0.5)}
    assert len(a.buffer) == 0


def test_the_spend_buffer_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    buf = SpendBuffer(max_entries=2)
    assert buf.add("a", "p", None, 1.0) and buf.add("a", "p", None, 1.0)  # one entry, merged
    assert buf.add("b", "p", None, 1.0)
    with caplog.at_level(logging.WARNING, "llmproxy.state"):
        assert not buf.add("c", "p", None, 0.5)
        assert not buf.add("d", "p", None, 0.25)
    assert buf.dropped_usd == 0.75 and len(buf) == 2
    assert buf.pending_usd("a") == 2.0
    assert len([r for r in caplog.records if "not reconciled" in r.getMessage()]) == 1
    assert buf.add("a", "p", None, 1.0)  # an existing entry still grows
    assert buf.add("x", "p", None, 0.0)  # nothing to keep


async def test_a_key_name_with_braces_stays_in_its_own_keys(redis_url: str, process: Any) -> None:
    a = await process(redis_url)
    limits = KeyLimits(rpm=1)
    assert isinstance(await a.admit("a}b", limits, 0, T0), Lease)
    assert isinstance(await a.admit("a", limits, 0, T0), Lease)
    assert isinstance(await a.admit("a}b", limits, 0, T0), Refused)

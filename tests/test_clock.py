"""One injectable clock from ``Proxy`` down: breakers, rpm/tpm buckets and
retry budgets all read it, so a fake clock drives them through the real proxy.
Plus the leaky bucket itself on a fake clock."""

from __future__ import annotations

import aiohttp
import pytest

from llmproxy.resilience.limits import TokenLimiter

from .fakes import Reply, openai_completion

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------- the bucket

def test_bucket_bursts_to_its_size_then_refills_continuously():
    clock = FakeClock()
    b = TokenLimiter(60, clock)  # 60 a minute: one a second
    assert all(b.take(1) for _ in range(60))  # the whole minute's worth at once
    assert not b.take(1) and not b.has_capacity(1)
    assert b.headroom() == 0
    assert b.seconds_until(1) == pytest.approx(1.0)
    assert b.seconds_until(5) == pytest.approx(5.0)
    clock.advance(0.5)
    assert b.seconds_until(1) == pytest.approx(0.5)
    assert not b.take(1)
    clock.advance(0.5)
    assert b.seconds_until(1) == 0 and b.take(1) and not b.take(1)
    clock.advance(10)
    assert b.headroom() == pytest.approx(10)
    clock.advance(3600)  # drains to empty, never below
    assert b.headroom() == 60 and b.seconds_until(60) == 0


def test_bucket_stands_still_with_its_clock():
    clock = FakeClock()
    b = TokenLimiter(6, clock)
    assert b.take(6)
    for _ in range(3):
        assert not b.take(1)  # no real time passes for this bucket
    clock.now -= 100  # a clock set back drains nothing (and adds nothing)
    assert b.headroom() == 0
    clock.now += 100 + 10  # 10 s at 0.1/s
    assert b.headroom() == pytest.approx(1.0)


def test_bucket_adjust_corrects_an_estimate_and_oversize_counts_as_full():
    clock = FakeClock()
    b = TokenLimiter(1000, clock)
    assert b.take(600)
    b.adjust(7 - 600)  # the real usage was 7
    assert b.headroom() == pytest.approx(993)
    b.adjust(-10_000)  # never below empty
    assert b.headroom() == 1000
    assert b.take(5000)  # larger than the bucket: passes when empty, as a full bucket
    assert b.headroom() == 0 and not b.take(1)
    assert b.seconds_until(5000) == pytest.approx(60.0)  # a whole minute to drain the lot
    b.adjust(400)  # more than estimated: over the top, waits longer
    assert b.seconds_until(1) == pytest.approx(24.06)


# --------------------------------------------------------------------------- through the proxy

async def test_fake_clock_refills_rpm_through_the_proxy(start_proxy):
    clock = FakeClock()
    proxy = await start_proxy("""
        providers: {m: {type: mock}}
        models:
          gpt-4o:
            deployments: [{provider: m, model: a, rpm: 2, queue_timeout: 0}]
        """, clock=clock)
    assert proxy.proxy.clock is clock
    async with aiohttp.ClientSession() as s:
        async def status() -> int:
            async with s.post(proxy.v1 + "/chat/completions", json=CHAT) as r:
                return r.status

        assert [await status() for _ in range(3)] == [200, 200, 429]
        assert await status() == 429  # real time passing does not refill it
        clock.advance(30)  # 2 a minute: one back
        assert [await status() for _ in range(2)] == [200, 429]
        clock.advance(60)
        assert [await status() for _ in range(3)] == [200, 200, 429]


async def test_fake_clock_ends_a_breaker_cooldown_through_the_proxy(start_proxy, fake_upstream):
    up = await fake_upstream()
    up.script(Reply(status=500, json={"error": {"message": "down"}}), Reply(json=openai_completion("back")))
    clock = FakeClock()
    proxy = await start_proxy(f"""
        providers:
          up: {{type: openai, base_url: "{up.url}/v1", api_key: k}}
        defaults:
          breaker: {{failures: 1, cooldown: 30, when_all_open: fail_fast}}
        models:
          gpt-4o:
            retry: {{retries: 0}}
            deployments: [{{provider: up, model: m}}]
        """, clock=clock)
    async with aiohttp.ClientSession() as s:
        async def status() -> int:
            async with s.post(proxy.v1 + "/chat/completions", json=CHAT) as r:
                return r.status

        assert await status() == 500
        assert await status() == 503  # open
        clock.advance(29.9)
        assert await status() == 503
        assert len(up.seen) == 1
        clock.advance(0.1)  # the cooldown is over on the proxy's clock: a probe goes through
        assert await status() == 200
    assert len(up.seen) == 2

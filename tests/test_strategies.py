"""Strategies, the hash ring, the breaker, the gate and the retry budget (no server)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from llmproxy.config.tree import BreakerConfig, parse_config
from llmproxy.resilience.breaker import CircuitBreaker
from llmproxy.resilience.limits import ConcurrencyGate, RetryBudget
from llmproxy.router import ModelGroup, RouteContext, Router, StateRegistry


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_router(strategy: str, deployments: list[str], extra: str = "", seed: int = 1,
                clock: FakeClock | None = None) -> Router:
    deps = "\n".join(f"      - {d}" for d in deployments)
    config = parse_config(f"""
providers: {{m: {{type: mock}}}}
models:
  x:
    strategy: {strategy}
    {extra}
    deployments:
{deps}
""")
    return Router(config, StateRegistry(clock or FakeClock()), rng=random.Random(seed))


def weighted(weights: list[float]) -> list[str]:
    return [f"{{provider: m, model: d{i}, weight: {w}}}" for i, w in enumerate(weights)]


def group(r: Router) -> ModelGroup:
    g = r.group("x")
    assert g is not None
    return g


def picks(r: Router, n: int, ctx: RouteContext = RouteContext()) -> list[str]:
    g = group(r)
    return [g.pick(g.candidates(1), ctx).config.model for _ in range(n)]


# --------------------------------------------------------------------------- strategies


def test_smooth_weighted_is_smooth_and_exact():
    r = make_router("weighted", weighted([5, 1, 1]))
    assert picks(r, 7) == ["d0", "d0", "d1", "d0", "d2", "d0", "d0"]
    assert Counter(picks(r, 700)) == {"d0": 500, "d1": 100, "d2": 100}


def test_equal_weights_and_round_robin_rotate():
    assert picks(make_router("weighted", weighted([1, 1, 1])), 6) == ["d0", "d1", "d2"] * 2
    assert picks(make_router("round_robin", weighted([9, 1])), 4) == ["d0", "d1", "d0", "d1"]


def test_weighted_random_follows_weights_within_tolerance():
    counts = Counter(picks(make_router("random", weighted([3, 1]), seed=42), 20_000))
    assert abs(counts["d0"] / 20_000 - 0.75) < 0.02


def test_least_connections_prefers_idle_and_shares_ties():
    r = make_router("least_connections", weighted([1, 1, 1]))
    g = group(r)
    g.members[0].state.in_flight = 3
    g.members[1].state.in_flight = 1
    g.members[2].state.in_flight = 1
    assert Counter(picks(r, 100)) == {"d1": 50, "d2": 50}


def test_least_latency_tries_unknown_first_then_the_fastest():
    r = make_router("least_latency", weighted([1, 1, 1]))
    g = group(r)
    g.members[0].state.observe_latency(0.5)
    # d1 and d2 have never been measured: they go first, in turn.
    assert picks(r, 2) == ["d1", "d2"]
    g.members[1].state.observe_latency(0.2)
    g.members[2].state.observe_latency(0.9)
    assert picks(r, 3) == ["d1"] * 3
    for _ in range(10):  # d1 gets slow: the EWMA moves and so does traffic
        g.members[1].state.observe_latency(2.0)
    assert picks(r, 1) == ["d0"]


def test_cost_picks_the_cheapest_for_this_request():
    r = make_router("cost", [
        "{provider: m, model: pricey, price: {input_per_mtok: 10, output_per_mtok: 30}}",
        "{provider: m, model: cheap-out, price: {input_per_mtok: 5, output_per_mtok: 1}}",
        "{provider: m, model: cheap-in, price: {input_per_mtok: 0.5, output_per_mtok: 8}}",
        "{provider: m, model: unpriced}",
    ])
    # Long prompt, short answer: input price dominates.
    assert picks(r, 1, RouteContext(prompt_tokens=100_000, completion_tokens=10)) == ["cheap-in"]
    # Short prompt, long answer: output price dominates.
    assert picks(r, 1, RouteContext(prompt_tokens=10, completion_tokens=100_000)) == ["cheap-out"]


def test_sticky_keeps_a_session_until_its_deployment_is_unusable():
    clock = FakeClock()
    r = make_router("sticky", weighted([1, 1, 1]), clock=clock)
    g = group(r)
    first = {f"s{i}": picks(r, 1, RouteContext(session_key=f"s{i}"))[0] for i in range(30)}
    assert set(first.values()) == {"d0", "d1", "d2"}  # sessions spread out
    for _ in range(3):
        assert {k: picks(r, 1, RouteContext(session_key=k))[0] for k in first} == first
    # d1's breaker opens: only d1's sessions move, and they stay moved.
    for _ in range(5):
        g.members[1].state.breaker.failure()
    moved = {k: picks(r, 1, RouteContext(session_key=k))[0] for k in first}
    for k, dep in first.items():
        if dep == "d1":
            assert moved[k] != "d1"
        else:
            assert moved[k] == dep
    clock.advance(60)  # d1 comes back (half-open); moved sessions don't bounce back
    assert {k: picks(r, 1, RouteContext(session_key=k))[0] for k in first} == moved


def test_consistent_hash_is_stable_and_remaps_about_one_nth():
    keys = [f"user-{i}" for i in range(4000)]
    five = make_router("consistent_hash", weighted([1] * 5))
    before = {k: picks(five, 1, RouteContext(session_key=k))[0] for k in keys}
    assert before == {k: picks(five, 1, RouteContext(session_key=k))[0] for k in keys}
    share = Counter(before.values())
    assert all(600 < n < 1000 for n in share.values()), share  # ~800 each
    # Remove d4: only its keys move.
    four = make_router("consistent_hash", weighted([1] * 4))
    after = {k: picks(four, 1, RouteContext(session_key=k))[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(before[k] == "d4" for k in moved)
    assert 0.12 < len(moved) / len(keys) < 0.28  # about 1/5
    # Add a sixth: about 1/6 move, all of them to the new one.
    six = make_router("consistent_hash", weighted([1] * 6))
    grown = {k: picks(six, 1, RouteContext(session_key=k))[0] for k in keys}
    moved = [k for k in keys if before[k] != grown[k]]
    assert all(grown[k] == "d5" for k in moved)
    assert 0.10 < len(moved) / len(keys) < 0.24


def test_consistent_hash_skips_an_unusable_deployment_for_its_keys_only():
    r = make_router("consistent_hash", weighted([1, 1, 1]))
    keys = [f"k{i}" for i in range(300)]
    before = {k: picks(r, 1, RouteContext(session_key=k))[0] for k in keys}
    for _ in range(5):
        group(r).members[0].state.breaker.failure()
    after = {k: picks(r, 1, RouteContext(session_key=k))[0] for k in keys}
    assert all(after[k] == before[k] for k in keys if before[k] != "d0")
    assert all(after[k] != "d0" for k in keys)


def test_priority_tiers_use_backups_only_when_primaries_are_unusable():
    r = make_router("weighted", [
        "{provider: m, model: primary-a}",
        "{provider: m, model: primary-b}",
        "{provider: m, model: backup, priority: 1}",
    ])
    assert set(picks(r, 10)) == {"primary-a", "primary-b"}
    g = group(r)
    for m in g.members[:1]:
        for _ in range(5):
            m.state.breaker.failure()
    assert set(picks(r, 10)) == {"primary-b"}
    for _ in range(5):
        g.members[1].state.breaker.failure()
    assert set(picks(r, 10)) == {"backup"}


# --------------------------------------------------------------------------- breaker


def breaker(clock: FakeClock, **kw: float) -> CircuitBreaker:
    base = dict(failures=3, failure_ratio=0.5, min_requests=10, window=30, cooldown=10, half_open_probes=2)
    base.update(kw)
    return CircuitBreaker(BreakerConfig(**base), clock)  # type: ignore[arg-type]


def test_breaker_opens_after_consecutive_failures_and_recovers_through_half_open():
    clock = FakeClock()
    b = breaker(clock)
    assert b.allow()
    b.failure(); b.failure()
    b.success()  # resets the streak
    b.failure(); b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow() and not b.available()
    assert b.retry_in() == 10
    clock.advance(9.9)
    assert not b.allow()
    clock.advance(0.1)
    assert b.state == "half_open"
    assert b.allow() and b.allow()  # two probes
    assert not b.allow()  # a third must wait
    b.neutral()  # a probe that ended with a client error frees its slot
    assert b.allow()
    b.success()
    assert b.state == "closed"


def test_breaker_half_open_failure_reopens_for_a_full_cooldown():
    clock = FakeClock()
    b = breaker(clock, failures=1)
    b.failure()
    clock.advance(10)
    assert b.allow()
    b.failure()
    assert b.state == "open"
    clock.advance(9)
    assert b.state == "open"
    clock.advance(1)
    assert b.state == "half_open"


def test_breaker_failure_ratio_over_the_window():
    clock = FakeClock()
    b = breaker(clock, failures=100)
    for i in range(9):  # alternate: never 3 in a row, ratio 4/9 below the minimum count
        (b.failure if i % 2 else b.success)()
        clock.advance(1)
    assert b.state == "closed"
    b.failure()  # 10 outcomes, 5 failures: 50%
    assert b.state == "open"


def test_breaker_window_forgets_old_outcomes():
    clock = FakeClock()
    b = breaker(clock, failures=100, failure_ratio=0.9)
    for _ in range(9):
        b.failure()
    clock.advance(31)
    b.failure()  # ten failures, but nine are outside the window now
    assert b.state == "closed"
    for _ in range(8):
        b.failure()
    b.failure()  # ten failures inside the window: 100%
    assert b.state == "open"


# --------------------------------------------------------------------------- gate & budget


async def test_gate_bounds_concurrency_and_hands_slots_in_order():
    gate = ConcurrencyGate(2)
    assert gate.try_acquire() and gate.try_acquire()
    assert not gate.try_acquire()
    assert not await gate.acquire(0)
    waiter = asyncio.ensure_future(gate.acquire(5))
    await asyncio.sleep(0)
    assert not gate.free()
    gate.release()  # handed straight to the waiter
    assert await waiter
    assert gate.held == 2
    gate.release(); gate.release()
    assert gate.held == 0


async def test_gate_wait_times_out_and_cancellation_leaks_nothing():
    gate = ConcurrencyGate(1)
    assert gate.try_acquire()
    assert not await gate.acquire(0.01)
    task = asyncio.ensure_future(gate.acquire(5))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.release()
    assert gate.held == 0 and gate.free()


def test_retry_budget_caps_retries_per_window():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, minimum=3, window=10, clock=clock)
    for _ in range(10):
        budget.request()
    assert [budget.try_retry() for _ in range(4)] == [True, True, True, False]
    for _ in range(40):
        budget.request()  # 50 requests: 20% is 10 retries
    assert sum(budget.try_retry() for _ in range(20)) == 7
    clock.advance(11)  # a new window
    assert budget.try_retry()


def test_state_survives_a_rebind_with_the_same_id():
    registry = StateRegistry(FakeClock())
    config = parse_config("""
providers: {m: {type: mock}}
models: {x: {deployments: [{provider: m, model: a}]}}
""")
    first = Router(config, registry).states["m/a"]
    first.breaker.failure()
    again = Router(config, registry).states["m/a"]
    assert again is first

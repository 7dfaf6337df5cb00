"""The walk one request takes: retries within its model group, then fallbacks.

``Plan.next()`` hands out ``Lease``s: a deployment with every slot the
attempt needs already taken (concurrency gate, rpm and tpm capacity, a
breaker probe when half-open). Invariants:
- a deployment whose breaker is open is never leased;
- every lease is released exactly once (``Lease.release`` is idempotent and
  the caller calls it in ``finally``), returning every slot it took;
- any attempt after the first draws on the group's retry budget;
- when nothing is usable, the plan waits for the first deployment to come
  back (a free slot, the end of a Retry-After cool-down, rate headroom), up
  to the deployments' ``queue_timeout``, then moves on or gives up;
- a request that finds every deployment of its model and fallbacks out only
  because breakers are open (no attempt made, nothing full, limited or
  cooling) gets one attempt on the deployment whose breaker opened first,
  unless that deployment says ``when_all_open: fail_fast`` (as Envoy's panic
  threshold: a model with one deployment is not black-holed for a cooldown
  by two bad answers in a row, and the first success closes its breaker).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import (
    NoCapacity,
    ProxyError,
    ServiceUnavailable,
    UpstreamError,
    UpstreamStatusError,
)
from . import Member, ModelGroup, Router
from .strategies import RouteContext


def counts_against_health(exc: UpstreamError) -> bool:
    """Connect errors, timeouts, garbage, 5xx and 429 — never a client's 4xx."""
    if isinstance(exc, UpstreamStatusError):
        return exc.status == 429 or exc.status >= 500
    return True


class Lease:
    __slots__ = ("member", "tokens", "bypass", "_outcome", "_released")

    def __init__(self, member: Member, tokens: float, bypass: bool = False) -> None:
        self.member = member
        self.tokens = tokens
        self.bypass = bypass  # sent past an open breaker (reports through breaker.bypassed)
        self._outcome: str | None = None
        self._released = False

    @property
    def id(self) -> str:
        return self.member.id

    def success(self, latency: float, usage: dict[str, Any] | None = None) -> None:
        if self._outcome is not None:
            return
        self._outcome = "success"
        st = self.member.state
        if self.bypass:
            st.breaker.bypassed(True)
        else:
            st.breaker.success()
        st.observe_latency(latency)
        if st.tpm is not None and usage:
            actual = usage.get("total_tokens")
            if isinstance(actual, (int, float)):
                st.tpm.adjust(actual - self.tokens)

    def failure(self, exc: UpstreamError) -> None:
        if self._outcome is not None:
            return
        st = self.member.state
        st.note_error(exc.message)
        if counts_against_health(exc):
            self._outcome = "failure"
            if self.bypass:
                st.breaker.bypassed(False)
            else:
                st.breaker.failure()
        else:
            self._outcome = "neutral"
            if not self.bypass:
                st.breaker.neutral()
        retry_after = getattr(exc, "retry_after", None)
        if retry_after and isinstance(exc, UpstreamStatusError) and exc.status in (429, 503):
            st.cool(retry_after)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        st = self.member.state
        if self._outcome is None and not self.bypass:  # cancelled or ended without a verdict
            st.breaker.neutral()
        st.in_flight -= 1
        st.gate.release()


class Plan:
    __slots__ = ("router", "clock", "ctx", "tokens", "groups", "_rng", "_sleep", "_gi", "_in_group",
                 "_tried", "attempts", "retries", "fallbacks", "last_error", "_no_capacity",
                 "_all_open", "_budget_exhausted", "_bypass_group", "_excluded")

    def __init__(
        self,
        router: Router,
        group: ModelGroup,
        ctx: RouteContext,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        exclude: frozenset[str] = frozenset(),
    ) -> None:
        """``exclude``: deployment ids this request cannot use (e.g. a Responses
        follow-up whose earlier turn only a native upstream knows)."""
        self.router = router
        self.clock = router.clock
        self.ctx = ctx
        self.tokens = float(ctx.prompt_tokens + ctx.completion_tokens)
        self.groups = [group]
        if group.config.fallbacks:
            for name in group.config.fallbacks:
                fb = router.group(name)
                if fb is not None:
                    self.groups.append(fb)
        self._rng = rng or router.rng
        self._sleep = sleep
        self._gi = 0
        self._in_group = 0
        self._tried: set[str] = set()
        self.attempts = 0
        self.retries = 0
        self.fallbacks = 0
        self.last_error: ProxyError | None = None
        self._no_capacity = False
        self._all_open = False
        self._budget_exhausted = False
        self._bypass_group: ModelGroup | None = None
        self._excluded = exclude
        group.budget.request()

    @property
    def group(self) -> ModelGroup:
        if self._bypass_group is not None:
            return self._bypass_group
        return self.groups[min(self._gi, len(self.groups) - 1)]

    def failed(self, exc: ProxyError) -> None:
        self.last_error = exc

    async def next(self) -> Lease | None:
        while self._gi < len(self.groups):
            group = self.groups[self._gi]
            if self._in_group > group.config.retry.retries:
                self._advance()
                continue
            lease = await self._lease_in(group)
            if lease is None:
                self._advance()
                continue
            if self.attempts > 0 and not group.budget.try_retry():
                lease.release()
                self._budget_exhausted = True
                return None
            if self.attempts > 0 and self._in_group > 0:
                self.retries += 1
            self._in_group += 1
            self.attempts += 1
            return lease
        return self._past_open_breakers()

    def _advance(self) -> None:
        self._gi += 1
        self._in_group = 0
        self._tried = set()
        if self._gi < len(self.groups):
            self.fallbacks += 1

    def error(self) -> ProxyError:
        """What the client gets when the walk ends without an answer."""
        if self.last_error is not None:
            return self.last_error
        name = self.groups[0].name
        if self._no_capacity:
            return NoCapacity(
                f"every deployment of model {name!r} is at its concurrency or rate limit; retry later"
            )
        return ServiceUnavailable(
            f"no deployment of model {name!r} is available right now (circuit breakers open or cooling down)"
        )

    def limits_hit(self) -> list[tuple[str, str]]:
        """(deployment id, "concurrency" | "rpm" | "tpm") for each limit that was
        binding when the walk gave up for lack of capacity (for metrics)."""
        if not self._no_capacity or self.last_error is not None:
            return []
        hit: list[tuple[str, str]] = []
        for group in self.groups:
            for m in group.members:
                st = m.state
                label = m.config.label  # metrics: a wildcard's pattern id
                if not st.gate.free():
                    hit.append((label, "concurrency"))
                if st.rpm is not None and not st.rpm.has_capacity(1):
                    hit.append((label, "rpm"))
                if st.tpm is not None and not st.tpm.has_capacity(min(self.tokens, st.tpm.max_rate)):
                    hit.append((label, "tpm"))
        return hit

    # -- leasing

    async def _lease_in(self, group: ModelGroup) -> Lease | None:
        deadline: float | None = None
        while True:
            excluded = self._excluded
            candidates = group.candidates(self.tokens, self._tried | excluded if excluded else self._tried)
            retrying_same = False
            if not candidates and self._tried:
                candidates = group.candidates(self.tokens, excluded)
                retrying_same = True
            if candidates:
                member = group.pick(candidates, self.ctx)
                if retrying_same:
                    await self._backoff(group)
                lease = self._take(member, gate_held=False)
                if lease is not None:
                    self._tried.add(member.id)
                    return lease
                continue  # the state moved under us; look again
            # Nothing usable now: wait for whatever comes back first.
            waitable = [m for m in group.members if m.state.healthy() and m.id not in excluded]
            if not waitable:
                self._all_open = True
                return None
            now = self.clock()
            if deadline is None:
                deadline = now + max(m.config.queue_timeout for m in waitable)
            remaining = deadline - now
            if remaining <= 0:
                self._no_capacity = True
                return None
            gated = [
                m for m in waitable
                if not m.state.gate.free() and m.state.cooling_for() == 0
                and m.state.rate_wait(self.tokens) == 0
            ]
            if gated:
                member = group.pick(gated, self.ctx)
                if await member.state.gate.acquire(min(remaining, member.config.queue_timeout)):
                    lease = self._take(member, gate_held=True)
                    if lease is not None:
                        self._tried.add(member.id)
                        return lease
                continue
            wait = min(max(m.state.cooling_for(), m.state.rate_wait(self.tokens)) for m in waitable)
            if wait > remaining:
                self._no_capacity = True
                return None
            await self._sleep(max(wait, 0.005))

    def _take(self, member: Member, *, gate_held: bool, bypass: bool = False) -> Lease | None:
        st = member.state
        if not gate_held and not st.gate.try_acquire():
            return None
        took_rpm = False
        if st.rpm is not None:
            if not st.rpm.take(1):
                st.gate.release()
                return None
            took_rpm = True
        if st.tpm is not None and not st.tpm.take(self.tokens):
            if took_rpm and st.rpm is not None:
                st.rpm.adjust(-1)
            st.gate.release()
            return None
        if not bypass and not st.breaker.allow():
            if took_rpm and st.rpm is not None:
                st.rpm.adjust(-1)
            if st.tpm is not None:
                st.tpm.adjust(-self.tokens)
            st.gate.release()
            return None
        st.in_flight += 1
        st.requests += 1
        return Lease(member, self.tokens, bypass)

    def _past_open_breakers(self) -> Lease | None:
        """The one attempt a request gets when nothing but open breakers
        stood in its way: the deployment whose breaker opened first."""
        if not self._all_open or self._no_capacity or self.attempts or self._bypass_group is not None:
            return None
        best: tuple[float, ModelGroup, Member] | None = None
        for group in self.groups:
            for m in group.members:
                st = m.state
                if (
                    m.id not in self._excluded
                    and m.config.breaker.when_all_open == "route_oldest"
                    and not st.breaker.available()
                    and st.cooling_for() == 0
                    and (best is None or st.breaker.opened_at < best[0])
                ):
                    best = (st.breaker.opened_at, group, m)
        if best is None:
            return None
        _, group, member = best
        lease = self._take(member, gate_held=False, bypass=True)
        if lease is None:
            return None  # full or rate-limited: those limits still hold
        self._bypass_group = group
        self.attempts += 1
        return lease

    async def _backoff(self, group: ModelGroup) -> None:
        r = group.config.retry
        delay = min(r.max_backoff, r.backoff * (2 ** max(self._in_group - 1, 0)))
        if delay > 0:
            await self._sleep(delay * self._rng.uniform(0.5, 1.0))

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
- with ``state.redis`` up, a deployment with limits is also admitted by the
  fleet's counters (``router/shared.py``) after the local take; a refusal
  gives every local slot back and counts that deployment as full for this
  plan until the refusal's retry time, which the wait below honours too.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import (
    NoCapacity,
    ProxyError,
    ServiceUnavailable,
    UpstreamError,
    UpstreamStatusError,
)
from ..state.counters import Lease as SharedLease
from ..state.counters import Refused
from . import Member, ModelGroup, Router
from .strategies import RouteContext

if TYPE_CHECKING:
    from .shared import DeploymentCounters

# How soon to ask the fleet again after a "parallel" refusal. The keys'
# script says 1 s, what a client should wait for its own key's slot; a
# deployment's slot frees the moment any request of the fleet ends, which
# this process cannot see, so it polls, jittered so that waiters in many
# processes do not ask in lockstep (bounded by queue_timeout all the same).
PARALLEL_POLL = (0.05, 0.1)
_KINDS = {"parallel": "concurrency", "rpm": "rpm", "tpm": "tpm"}


def counts_against_health(exc: UpstreamError) -> bool:
    """Connect errors, timeouts, garbage, 5xx and 429 — never a client's 4xx."""
    if isinstance(exc, UpstreamStatusError):
        return exc.status == 429 or exc.status >= 500
    return True


class Lease:
    __slots__ = ("member", "tokens", "bypass", "shared", "_used", "_outcome", "_released")

    def __init__(self, member: Member, tokens: float, bypass: bool = False) -> None:
        self.member = member
        self.tokens = tokens
        self.bypass = bypass  # sent past an open breaker (reports through breaker.bypassed)
        # The fleet's lease (state.redis) and the counters to settle it with.
        self.shared: tuple[DeploymentCounters, SharedLease] | None = None
        self._used: int | None = None  # the answer's total tokens, for the shared tpm correction
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
        if usage and (st.tpm is not None or self.shared is not None):
            actual = usage.get("total_tokens")
            if isinstance(actual, (int, float)):
                if st.tpm is not None:
                    st.tpm.adjust(actual - self.tokens)
                self._used = int(actual)

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
        if self.shared is not None:
            counters, lease = self.shared
            counters.settle(lease, 0 if self._used is None else self._used - lease.tokens)


class Plan:
    __slots__ = ("router", "clock", "ctx", "tokens", "groups", "_rng", "_sleep", "_gi", "_in_group",
                 "_tried", "attempts", "retries", "fallbacks", "last_error", "_no_capacity",
                 "_all_open", "_budget_exhausted", "_bypass_group", "_excluded", "_refused")

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
        # Deployments the fleet's counters refused: id -> (plan clock time to
        # ask again, metrics label, limit kind); None until the first.
        self._refused: dict[str, tuple[float, str, str]] | None = None
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
        return await self._past_open_breakers()

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
        if self._refused:
            for _, label, kind in self._refused.values():
                if (label, kind) not in hit:
                    hit.append((label, kind))
        return hit

    # -- leasing

    async def _lease_in(self, group: ModelGroup) -> Lease | None:
        deadline: float | None = None
        while True:
            excluded = self._excluded
            blocked = excluded if not self._refused else excluded | self._still_refused()
            candidates = group.candidates(self.tokens, self._tried | blocked if blocked else self._tried)
            retrying_same = False
            if not candidates and self._tried:
                candidates = group.candidates(self.tokens, blocked)
                retrying_same = True
            if candidates:
                member = group.pick(candidates, self.ctx)
                if retrying_same:
                    await self._backoff(group)
                lease = self._take(member, gate_held=False)
                if lease is not None:
                    if member.state.shared is not None and not await self._admit_shared(lease):
                        continue
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
                and m.state.rate_wait(self.tokens) == 0 and m.id not in blocked
            ]
            if gated:
                member = group.pick(gated, self.ctx)
                if await member.state.gate.acquire(min(remaining, member.config.queue_timeout)):
                    lease = self._take(member, gate_held=True)
                    if lease is not None:
                        if member.state.shared is not None and not await self._admit_shared(lease):
                            continue
                        self._tried.add(member.id)
                        return lease
                continue
            wait = min(max(m.state.cooling_for(), m.state.rate_wait(self.tokens), self._refused_for(m.id, now))
                       for m in waitable)
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

    async def _past_open_breakers(self) -> Lease | None:
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
        if member.state.shared is not None and not await self._admit_shared(lease):
            self._no_capacity = self._refused is not None and member.id in self._refused
            return None
        self._bypass_group = group
        self.attempts += 1
        return lease

    # -- the fleet's counters (state.redis)

    async def _admit_shared(self, lease: Lease) -> bool:
        """Admit a local ``lease`` on the fleet's counters: True if it may
        go (``lease.shared`` holds the fleet's lease, or Redis answered with
        an error and the request runs on this worker's limiters); False if it
        was given back, refused (noted in ``_refused``) or because Redis went
        down meanwhile and the deployment is on its local share now (the
        caller takes again, under that share: never unlimited)."""
        member = lease.member
        st = member.state
        counters = st.shared
        assert counters is not None
        try:
            got = await counters.admit(st.id, member.config, self.tokens)
        except BaseException:  # cancelled (the client left) while asking
            self._give_back(lease)
            raise
        if isinstance(got, SharedLease):
            lease.shared = (counters, got)
            return True
        if isinstance(got, Refused):
            self._give_back(lease)
            retry = got.retry_after or 0.0
            if got.reason == "parallel":
                retry = self._rng.uniform(*PARALLEL_POLL)
            if self._refused is None:
                self._refused = {}
            self._refused[member.id] = (self.clock() + retry, member.config.label, _KINDS.get(got.reason, got.reason))
            return False
        # Unavailable. A lost connection turned Redis down and every state
        # to its local share (the health listener ran already): take again.
        if st.shared is None:
            self._give_back(lease)
            return False
        return True  # Redis answered with an error: this worker's (full-value) limiters admitted it

    def _give_back(self, lease: Lease) -> None:
        """Undo a local take whose request will not be sent."""
        st = lease.member.state
        if st.rpm is not None:
            st.rpm.adjust(-1)
        if st.tpm is not None:
            st.tpm.adjust(-self.tokens)
        st.requests -= 1
        lease.release()

    def _still_refused(self) -> frozenset[str]:
        assert self._refused is not None
        now = self.clock()
        return frozenset(i for i, (until, _, _) in self._refused.items() if until > now)

    def _refused_for(self, member_id: str, now: float) -> float:
        if not self._refused:
            return 0.0
        seen = self._refused.get(member_id)
        return 0.0 if seen is None else max(seen[0] - now, 0.0)

    async def _backoff(self, group: ModelGroup) -> None:
        r = group.config.retry
        delay = min(r.max_backoff, r.backoff * (2 ** max(self._in_group - 1, 0)))
        if delay > 0:
            await self._sleep(delay * self._rng.uniform(0.5, 1.0))

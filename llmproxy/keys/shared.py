"""Per-key limits and spend on Redis (``state.redis``): the keys' shared seam.

``SharedKeys`` is both the ``KeyCounters`` and the ``SpendLedger`` of a
``KeyService`` whose config sets ``state.redis`` (``KeyService.share``,
called once when the app is built). Every process and pod on one Redis
enforces one rpm / tpm / max_parallel and one budget per key:

- **admission**: one round trip (``SharedCounters.admit``: budget,
  parallel lease, rpm, tpm in one script); a key with no limit and no
  budget makes none;
- **settle**: one round trip after the request (lease released, tpm
  corrected, spend added), run as a background task because a request is
  finished synchronously (``Ticket.finish``); a request that cost nothing
  and held no lease makes none. The tasks are bounded by the requests in
  flight (each command times out after ``SharedRedis.timeout``).

**Outages** (``SharedRedis.up`` false, or a command that failed): the
request is admitted on this process's ``LocalCounters`` (its worker share
in a ``--workers`` group) and its spend goes to the ``SpendBuffer``, which
``SharedCounters.reconcile`` adds to Redis, once, when it is back. The
budget check meanwhile uses the last spend Redis reported plus what was
buffered since, and never less than this process's local ledger.

**The local ledger** (``LocalLedger``, and the embedded sqlite store
behind it) is still written: it is this process's own record (requests,
tokens and spend it served, what /metrics counts so that a scrape summed
over processes counts each request once), and the floor of the budget
check during an outage. Budgets and /admin/keys read the shared spend.

Invariants: the view of shared spend (``_view``) holds one entry per
configured key (dropped by ``forget``); what is read from it is a lower
bound of the true spend (spend only grows within a period), so the local
pre-check never refuses what Redis would admit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from ..state.counters import KeyLimits, Lease, Refused, SharedCounters, Spent
from ..state.redis import Unavailable
from .counters import LocalCounters, Refusal
from .ledger import LocalLedger, Spend, window_start
from .policy import KeyPolicy


class _Local:
    """The hold of a request admitted on local counters (Redis was down)."""

    __slots__ = ()


LOCAL: Final = _Local()

_REASONS = {"parallel": "max_parallel", "rpm": "rpm", "tpm": "tpm", "budget": "budget"}


def period_of(policy: KeyPolicy, now: float) -> tuple[str, float | None]:
    """The budget period open now, as the shared counters name it, and its end."""
    if policy.period == 0:
        return "", None
    start = window_start(policy.period, now)
    return f"{policy.period}:{start}", float(start + policy.period)


class SharedKeys:
    def __init__(self, shared: SharedCounters, local: LocalCounters, ledger: LocalLedger,
                 wall: Callable[[], float] = time.time) -> None:
        self.shared = shared
        self.local = local
        self.ledger = ledger
        self.wall = wall
        # name -> (period id, the period's spend Redis last reported)
        self._view: dict[str, tuple[str, float]] = {}
        self._settling: set[asyncio.Task[object]] = set()

    # -- KeyCounters

    async def admit(self, policy: KeyPolicy, tokens: int) -> Refusal | object:
        if not policy.limited and policy.budget_usd is None:
            return None  # nothing to count before: spend is settled after
        if self.shared.redis.up:
            now = self.wall()
            period, end = period_of(policy, now)
            limits = KeyLimits(policy.rpm, policy.tpm, policy.max_parallel, policy.budget_usd, period, end)
            got = await self.shared.admit(policy.name, limits, tokens, now)
            if isinstance(got, Lease):
                if got.spent_usd is not None:
                    self._view[policy.name] = (period, got.spent_usd)
                return got
            if isinstance(got, Refused):
                if got.reason == "budget" and got.spent_usd is not None:
                    self._view[policy.name] = (period, got.spent_usd)
                return Refusal(_REASONS[got.reason], 1.0 if got.retry_after is None else got.retry_after,
                               got.spent_usd)
        # Redis is down (or failed this call): this process's counters.
        refusal = await self.local.admit(policy, tokens)
        return LOCAL if refusal is None else refusal

    def release(self, policy: KeyPolicy, hold: object, estimated: int, used: int | None, usd: float) -> None:
        lease: Lease | None = None
        if hold is LOCAL:
            self.local.release(policy, hold, estimated, used, usd)
        elif isinstance(hold, Lease):
            lease = hold
        if lease is None and usd <= 0:
            return
        delta = 0 if lease is None or used is None else used - lease.tokens
        period, end = period_of(policy, self.wall())
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(
            self.shared.settle(policy.name, lease, delta, usd, period=period, period_end=end))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def in_flight(self, name: str) -> int:
        """This process's requests in flight (the fleet's are leases in Redis)."""
        return self.local.in_flight(name)

    def forget(self, keep: set[str]) -> None:
        """A reload removed every key not in ``keep`` (called as the counters
        and as the ledger: doing it twice changes nothing)."""
        self.local.forget(keep)
        self.ledger.forget(keep)
        for name in [n for n in self._view if n not in keep]:
            del self._view[name]

    # -- SpendLedger

    def _shared_usd(self, name: str, period: int) -> float:
        seen = self._view.get(name)
        usd = 0.0
        if seen is not None:
            pid = "" if period == 0 else f"{period}:{window_start(period, self.wall())}"
            if seen[0] == pid:
                usd = seen[1]
        if not self.shared.redis.up:  # spend Redis has not seen yet counts too
            usd += self.shared.buffer.pending_usd(name)
        return usd

    def period_usd(self, name: str, period: int) -> float:
        return max(self.ledger.period_usd(name, period), self._shared_usd(name, period))

    def spent(self, name: str, period: int) -> Spend:
        mine = self.ledger.spent(name, period)
        usd = self._shared_usd(name, period)
        if usd <= mine.usd:
            return mine
        return Spend(usd, mine.requests, mine.tokens, mine.window_start, mine.resets_at)

    def add(self, name: str, usd: float, tokens: int) -> None:
        self.ledger.add(name, usd, tokens)

    async def flush(self) -> None:
        await self.ledger.flush()

    # -- /admin/keys, shutdown

    async def shared_spend(self, policies: list[KeyPolicy]) -> dict[str, Spent] | Unavailable:
        """Every key's period and lifetime spend as Redis has it (one pipeline)."""
        now = self.wall()
        got = await self.shared.spent((p.name, period_of(p, now)[0]) for p in policies)
        if not isinstance(got, Unavailable):
            for p in policies:
                if p.name in got:
                    spent = got[p.name]
                    self._view[p.name] = (period_of(p, now)[0], spent.period_usd if p.period else spent.lifetime_usd)
        return got

    async def drain(self) -> None:
        """Shutdown: the settles under way finished (each bounded by the Redis timeout)."""
        await asyncio.gather(*self._settling, return_exceptions=True)

"""Per-key limits and spend shared by a fleet, on Redis (``state.redis``).

Each request costs one round trip before it runs (``admit``) and one after
(``settle``), each a Lua script, so concurrent processes see one set of
counters and nothing is read-modified-written across the network.

- **rpm / tpm**: sliding minute windows, approximated the way Cloudflare and
  nginx's limit_req describe it: a counter per fixed minute, and the count
  that applies at time t is ``current + previous × (share of the previous
  minute still inside the last 60 s)``. Two integers per key and minute
  instead of a log of every request, and no burst of 2× the limit at a
  minute boundary as plain fixed windows allow. Window keys expire after
  two minutes. A request larger than the whole tpm is admitted only into an
  empty window (never refused forever).
- **max_parallel**: a lease per admitted request, a member of a sorted set
  scored by its expiry (``lease_ttl``, default 600 s). ``settle`` releases
  it; a process that crashed never does, and its leases lapse at their
  expiry instead of holding slots forever.
- **budget**: spend per key and period (``INCRBYFLOAT``; the period key
  expires a day after the period ends) and over the key's lifetime. A key
  whose period spend has reached its budget is refused; the request that
  crosses it is not (its cost is known only afterwards).
- **clock**: windows, leases and periods are on the ``now`` the caller
  passes (unix seconds): the processes of a fleet need NTP-synchronised
  clocks, as any shared rate limit does; a skew of s seconds shifts a
  window boundary by s.

Refusals say why (``rpm`` | ``tpm`` | ``parallel`` | ``budget``) and when to
retry; nothing is taken from any counter by a refused request.
A key with none of the four limits needs no ``admit`` (``settle`` with no
lease records its spend), so it costs one round trip, not two.

**Outages**: every call returns ``UNAVAILABLE`` while Redis is down (the
caller falls back on its local limits). Spend that could not be settled is
kept in a ``SpendBuffer`` (also fed by the keys' local ledger through
``buffer_spend``) and added to Redis when it is back, once: each flushed
entry carries an id that a marker key makes idempotent, so a flush whose
answer was lost in a second outage is not counted twice when retried.

Keys: ``<prefix>{<name>}:...``; the braces are a Redis Cluster hash tag,
so every key of one name (one script's keys) lives in one slot.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Literal

from .redis import UNAVAILABLE, SharedRedis, Unavailable

log = logging.getLogger("llmproxy.state")

WINDOW = 60.0  # seconds: rpm and tpm are per minute
DEFAULT_LEASE_TTL = 600.0
DEFAULT_MAX_PENDING = 10_000
PERIOD_GRACE = 86_400.0  # a finished period's spend stays readable this long
MARKER_TTL = 86_400  # seconds a flush id is remembered

Reason = Literal["rpm", "tpm", "parallel", "budget"]

_ADMIT = """
local now, win = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, maxp = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cost, budget = tonumber(ARGV[6]), ARGV[7]
local elapsed = now % win
local weight = (win - elapsed) / win

-- milliseconds until cur + prev*weight + cost <= limit
local function wait(limit, cost, cur, prev)
  if cost > limit then  -- a limit of 0: nothing fits, say "a minute"
    return math.ceil(2 * win - elapsed)
  end
  if cur + cost <= limit then
    return math.max(1, math.ceil((win - elapsed) - win * (limit - cur - cost) / prev))
  end
  return math.ceil((win - elapsed) + math.max(0, win * (1 - (limit - cost) / cur)))
end

local spent = nil
if budget ~= '' then
  spent = tonumber(redis.call('GET', KEYS[6]) or '0')
  if spent >= tonumber(budget) then
    return {0, 'budget', '0', tostring(spent)}
  end
end
if maxp >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
  if redis.call('ZCARD', KEYS[5]) >= maxp then
    return {0, 'parallel', '1000', ''}
  end
end
if rpm >= 0 then
  local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
  if cur + prev * weight + 1 > rpm then
    return {0, 'rpm', tostring(wait(rpm, 1, cur, prev)), ''}
  end
end
if tpm >= 0 then
  local cur = tonumber(redis.call('GET', KEYS[3]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[4]) or '0')
  local need = math.min(cost, tpm)
  if cur + prev * weight + need > tpm then
    return {0, 'tpm', tostring(wait(tpm, need, cur, prev)), ''}
  end
end
if rpm >= 0 then
  redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], 2 * win)
end
if tpm >= 0 and cost > 0 then
  redis.call('INCRBY', KEYS[3], cost)
  redis.call('PEXPIRE', KEYS[3], 2 * win)
end
if maxp >= 0 then
  local ttl = tonumber(ARGV[9])
  redis.call('ZADD', KEYS[5], now + ttl, ARGV[8])
  redis.call('PEXPIRE', KEYS[5], ttl)
end
if spent then
  return {1, tostring(spent)}
end
return {1}
"""

_SETTLE = """
if ARGV[1] ~= '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
local delta = tonumber(ARGV[2])
if delta ~= 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('INCRBY', KEYS[2], delta) < 0 then
    redis.call('SET', KEYS[2], '0', 'KEEPTTL')
  end
end
if tonumber(ARGV[3]) > 0 then
  if KEYS[3] ~= KEYS[4] then
    redis.call('INCRBYFLOAT', KEYS[3], ARGV[3])
    if ARGV[4] ~= '' then redis.call('PEXPIREAT', KEYS[3], ARGV[4]) end
  end
  redis.call('INCRBYFLOAT', KEYS[4], ARGV[3])
end
return 1
"""

# KEYS: the flush marker, the period's spend, the lifetime spend.
_RECONCILE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  return 0
end
if KEYS[2] ~= KEYS[3] then
  redis.call('INCRBYFLOAT', KEYS[2], ARGV[1])
  if ARGV[2] ~= '' then redis.call('PEXPIREAT', KEYS[2], ARGV[2]) end
end
redis.call('INCRBYFLOAT', KEYS[3], ARGV[1])
return 1
"""


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """One key's policy as the counters need it (None: no such limit).

    ``period`` names the budget's current period (e.g. ``"30d:680"``; the
    keys' config decides how periods are cut), ``period_end`` is when it
    resets (unix seconds); ``period=""`` is a lifetime budget.
    """

    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None
    period: str = ""
    period_end: float | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """An admitted request: hand it back to ``settle``."""

    name: str
    id: str  # the parallel lease ("" when the key has no max_parallel)
    window: int  # the minute whose tpm counter holds the estimate
    tokens: int  # the estimate taken
    period: str
    period_end: float | None
    spent_usd: float | None = None  # the period's spend before this request (keys with a budget)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Reason
    retry_after: float | None  # seconds; None: a lifetime budget never resets
    spent_usd: float | None = None  # for "budget"
    budget_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Spent:
    period_usd: float
    lifetime_usd: float


@dataclass(slots=True)
class _Pending:
    name: str
    period: str
    period_end: float | None
    usd: float
    flush_id: str = ""  # set when sealed for a flush; reused on retry


@dataclass(slots=True)
class SpendBuffer:
    """Spend Redis has not seen yet, per (key name, period); bounded.

    ``add`` accumulates into an open entry; ``seal`` gives open entries a
    flush id and moves them to the sealed list, where they stay until Redis
    confirmed them (``done``). Entries are per key and period (keys come
    from the config), so ``max_entries`` is reached only by a config with
    that many keys over that many periods in one outage; past it, spend is
    dropped with a WARNING and counted in ``dropped_usd``.
    """

    max_entries: int = DEFAULT_MAX_PENDING
    open: dict[tuple[str, str], _Pending] = field(default_factory=dict)
    sealed: list[_Pending] = field(default_factory=list)
    dropped_usd: float = 0.0
    _ids: Any = field(default_factory=count)
    _prefix: str = field(default_factory=lambda: os.urandom(8).hex())

    def __len__(self) -> int:
        return len(self.open) + len(self.sealed)

    def add(self, name: str, period: str, period_end: float | None, usd: float) -> bool:
        if usd <= 0:
            return True
        entry = self.open.get((name, period))
        if entry is None:
            if len(self) >= self.max_entries:
                if self.dropped_usd == 0.0:
                    log.warning("state.redis: %d spend entries wait for Redis already; further spend "
                                "is not reconciled (local limits still count it)", len(self))
                self.dropped_usd += usd
                return False
            entry = self.open[(name, period)] = _Pending(name, period, period_end, 0.0)
        entry.usd += usd
        return True

    def seal(self) -> list[_Pending]:
        for entry in self.open.values():
            entry.flush_id = f"{self._prefix}-{next(self._ids)}"
            self.sealed.append(entry)
        self.open.clear()
        return list(self.sealed)

    def done(self, entry: _Pending) -> None:
        self.sealed.remove(entry)

    def pending_usd(self, name: str) -> float:
        """Spend of ``name`` that Redis does not know of yet."""
        return sum(e.usd for e in (*self.open.values(), *self.sealed) if e.name == name)


class SharedCounters:
    def __init__(self, redis: SharedRedis, *, lease_ttl: float = DEFAULT_LEASE_TTL,
                 prefix: str = "llmproxy:", buffer: SpendBuffer | None = None) -> None:
        self.redis = redis
        self.lease_ttl = lease_ttl
        self.prefix = prefix
        self.buffer = buffer if buffer is not None else SpendBuffer()
        self._admit = redis.script(_ADMIT)
        self._settle = redis.script(_SETTLE)
        self._reconcile = redis.script(_RECONCILE)
        # Lease ids: unique across processes (random prefix) and cheap.
        self._lease_prefix = os.urandom(6).hex()
        self._leases = count(1)
        redis.on_up(self.reconcile)

    def _key(self, name: str, *parts: object) -> str:
        return f"{self.prefix}{{{name}}}:" + ":".join(map(str, parts))

    def _spend_keys(self, name: str, period: str) -> tuple[str, str]:
        lifetime = self._key(name, "spend", "lifetime")
        return (self._key(name, "spend", "p", period) if period else lifetime), lifetime

    # -- the hot path: one round trip each

    async def admit(self, name: str, limits: KeyLimits, est_tokens: int, now: float) -> Lease | Refused | Unavailable:
        """Take a request slot, ``est_tokens`` and a parallel lease, or say why not."""
        window = int(now // WINDOW)
        lease_id = f"{self._lease_prefix}{next(self._leases):x}" if limits.max_parallel is not None else ""
        period_key, _ = self._spend_keys(name, limits.period)
        keys = (
            self._key(name, "rpm", window), self._key(name, "rpm", window - 1),
            self._key(name, "tpm", window), self._key(name, "tpm", window - 1),
            self._key(name, "leases"), period_key,
        )
        args = (
            int(now * 1000), int(WINDOW * 1000),
            _limit(limits.rpm), _limit(limits.tpm), _limit(limits.max_parallel),
            max(0, est_tokens), "" if limits.budget_usd is None else _usd(limits.budget_usd),
            lease_id, int(self.lease_ttl * 1000),
        )
        reply = await self._admit(keys, args)
        if isinstance(reply, Unavailable):
            return reply
        if int(reply[0]) == 1:
            return Lease(name, lease_id, window, max(0, est_tokens) if limits.tpm is not None else 0,
                         limits.period, limits.period_end, float(_text(reply[1])) if len(reply) > 1 else None)
        reason = _text(reply[1])
        if reason == "budget":
            end = limits.period_end
            return Refused("budget", None if end is None else max(0.0, end - now),
                           float(_text(reply[3])), limits.budget_usd)
        return Refused(reason, int(reply[2]) / 1000)  # type: ignore[arg-type]

    async def settle(self, name: str, lease: Lease | None, token_delta: int, usd: float, *,
                     period: str = "", period_end: float | None = None) -> bool | Unavailable:
        """Release ``lease``, correct the tpm window by ``actual - estimated``
        tokens and add ``usd`` to the period's and the lifetime spend.

        Without a lease (a request admitted on local limits during an
        outage) only the spend is added, to ``period``. Spend that cannot
        reach Redis is buffered and reconciled when it is back.
        """
        if lease is not None:
            period, period_end = lease.period, lease.period_end
        period_key, lifetime_key = self._spend_keys(name, period)
        delta = token_delta if lease is not None and lease.tokens else 0
        keys = (
            self._key(name, "leases"),
            self._key(name, "tpm", lease.window if lease is not None else 0),
            period_key, lifetime_key,
        )
        usd = max(0.0, usd)
        reply = await self._settle(keys, (lease.id if lease is not None else "", delta, _usd(usd),
                                          _expire_at_ms(period_end)))
        if isinstance(reply, Unavailable):
            self.buffer.add(name, period, period_end, usd)
            return reply
        return True

    # -- spend

    def buffer_spend(self, name: str, period: str, period_end: float | None, usd: float) -> bool:
        """Spend recorded while Redis was down (the keys' local ledger feeds
        it); added to Redis by the next ``reconcile``. False if dropped."""
        return self.buffer.add(name, period, period_end, usd)

    async def reconcile(self) -> int:
        """Add buffered spend to Redis (run on every recovery); entries added.

        Stops at the first failure: what is left stays buffered, with its
        flush id, for the next recovery."""
        added = 0
        for entry in self.buffer.seal():
            period_key, lifetime_key = self._spend_keys(entry.name, entry.period)
            reply = await self._reconcile(
                (self._key(entry.name, "flush", entry.flush_id), period_key, lifetime_key),
                (_usd(entry.usd), _expire_at_ms(entry.period_end), MARKER_TTL),
            )
            if isinstance(reply, Unavailable):
                break
            self.buffer.done(entry)
            added += int(reply)
        if added:
            log.info("state.redis: spend of %d key period(s) buffered during the outage is reconciled", added)
        return added

    async def spent(self, names: Iterable[tuple[str, str]]) -> dict[str, Spent] | Unavailable:
        """Spend per key name, for (name, current period) pairs (/admin/keys)."""
        pairs = list(names)
        if not pairs:
            return {}
        keys = [k for name, period in pairs for k in self._spend_keys(name, period)]

        async def run(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)  # keys of many names: many cluster slots
            for k in keys:
                pipe.get(k)
            return list(await pipe.execute())

        values = await self.redis.call(run)
        if isinstance(values, Unavailable):
            return UNAVAILABLE
        out: dict[str, Spent] = {}
        for i, (name, _) in enumerate(pairs):
            period, lifetime = (float(v) if v is not None else 0.0 for v in values[2 * i:2 * i + 2])
            out[name] = Spent(period, lifetime)
        return out


def _limit(value: int | None) -> int:
    return -1 if value is None else max(0, int(value))


def _usd(value: float) -> str:
    # Fixed notation: Lua's tonumber and INCRBYFLOAT both read it; 1e-12 USD resolution.
    return format(max(0.0, float(value)), ".12f")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _expire_at_ms(period_end: float | None) -> str:
    if period_end is None or not math.isfinite(period_end):
        return ""
    return str(int((period_end + PERIOD_GRACE) * 1000))

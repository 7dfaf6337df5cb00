"""Spend per key: the ``SpendLedger`` interface and the in-process ledger.

A key's spend is counted in every budget window at once (lifetime, 1h, 1d,
7d, 30d: fixed windows aligned on the Unix epoch, no calendar), so a reload
that changes a key's ``budget.period`` reads the new period's spend exactly.
``LocalLedger`` holds the open windows in memory (what the request path
reads) and hands the increments to the embedded store (``state.sqlite``) in
batches at most ``FLUSH_INTERVAL`` seconds apart, off the event loop; a
shared ledger (Redis) implements the same interface.

Invariants:
- ``add`` never blocks and never does I/O: it updates memory and marks the
  batch dirty; the flusher writes it within ``FLUSH_INTERVAL`` seconds, so a
  SIGKILL loses at most that much spend (plus a write in progress);
- ``flush`` hands each increment to the store exactly once; a failed write
  keeps its rows for the next flush (logged once per failure streak);
- memory is bounded by the configured keys × 5 windows (windows roll over in
  place; a key's pending amounts are one triple, the same for each window),
  plus the rows of a failed write while the store stays unwritable;
- the request path looks for a window's end once per call (one comparison
  against the earliest end), not once per window;
- ``shared_file`` (a ``--workers N`` group without ``state.redis``: every
  worker writes its own increments to the same file): after each flush the
  open windows are read back from the file, so a worker's view of a key's
  spend is the whole instance's, at most ``FLUSH_INTERVAL`` behind each
  other worker's; its own unwritten increments stay on top.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..config.tree import BUDGET_PERIODS
from ..state.sqlite import Row, SpendStore

log = logging.getLogger("llmproxy.keys")

PERIODS: tuple[int, ...] = (0, *BUDGET_PERIODS.values())  # 0: lifetime
FLUSH_INTERVAL = 1.0


def window_start(period: int, now: float) -> int:
    return 0 if period == 0 else int(now // period) * period


@dataclass(frozen=True, slots=True)
class Spend:
    usd: float
    requests: int
    tokens: int
    window_start: int  # unix seconds; 0 for lifetime
    resets_at: int | None  # unix seconds; None: never (lifetime)


class SpendLedger(Protocol):
    """What the request path and /admin/keys need of a ledger. A shared one
    (Redis) implements it over ``LocalLedger``, which stays the fallback and
    the owner of the embedded store."""

    def spent(self, name: str, period: int) -> Spend:
        """``name``'s spend in the ``period`` window open now (0: lifetime)."""
        ...

    def period_usd(self, name: str, period: int) -> float:
        """``spent(...).usd``, on the request path (the budget check)."""
        ...

    def add(self, name: str, usd: float, tokens: int) -> None:
        """One finished request of ``name``: its cost and tokens (never blocks)."""
        ...

    def forget(self, keep: set[str]) -> None:
        """A reload removed every key not in ``keep``."""
        ...

    async def flush(self) -> None:
        """Persist what is pending (reload, shutdown)."""
        ...


class _Window:
    __slots__ = ("period", "requests", "start", "tokens", "usd")

    def __init__(self, period: int, start: int) -> None:
        self.period = period
        self.start = start
        self.usd = 0.0
        self.requests = 0
        self.tokens = 0


class _Totals:
    """One key's open windows. Every request adds the same amounts to all of
    them, so what is not yet written is one triple per key (``pending``),
    turned into one row per window when flushed."""

    __slots__ = ("by_period", "name", "pending", "valid_until", "windows")

    def __init__(self, name: str, now: float) -> None:
        self.name = name
        self.windows = [_Window(p, window_start(p, now)) for p in PERIODS]
        self.by_period = {w.period: w for w in self.windows}
        self.valid_until = self._next_end()
        self.pending: list[float] | None = None  # [usd, requests, tokens] not yet written

    def _next_end(self) -> float:
        return min((w.start + w.period for w in self.windows if w.period), default=float("inf"))

    def rows(self) -> list[Row]:
        """The pending amounts as one row per open window (and no longer pending)."""
        inc, self.pending = self.pending, None
        if inc is None:
            return []
        return [(self.name, w.period, w.start, inc[0], int(inc[1]), int(inc[2])) for w in self.windows]

    def roll(self, now: float) -> list[Row]:
        """Windows that ended start again empty; returns what was pending for the old ones."""
        rows = self.rows()
        for w in self.windows:
            start = window_start(w.period, now)
            if w.start != start:
                w.start, w.usd, w.requests, w.tokens = start, 0.0, 0, 0
        self.valid_until = self._next_end()
        return rows


class LocalLedger:
    """Spend in memory, persisted to an optional ``SpendStore`` (``SpendLedger``)."""

    def __init__(self, wall: Callable[[], float] = time.time, shared_file: bool = False) -> None:
        self.wall = wall
        self.shared_file = shared_file
        self.store: SpendStore | None = None
        self.store_problem: str | None = None  # why the store is not in use (shown by /admin/keys)
        self._totals: dict[str, _Totals] = {}
        self._dirty_keys: set[_Totals] = set()
        self._rolled: list[Row] = []  # pending rows of windows that ended (or keys removed) before a flush
        self._retry: list[Row] = []  # rows of a failed write, for the next flush
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._failing = False

    # -- the request path (memory only)

    def _open(self, name: str, now: float) -> _Totals:
        t = self._totals.get(name)
        if t is None:
            t = self._totals[name] = _Totals(name, now)
        elif now >= t.valid_until:  # a window ended: it starts again empty
            self._rolled.extend(t.roll(now))
        return t

    def spent(self, name: str, period: int) -> Spend:
        win = self._open(name, self.wall()).by_period[period]
        return Spend(win.usd, win.requests, win.tokens, win.start, None if period == 0 else win.start + period)

    def period_usd(self, name: str, period: int) -> float:
        """``spent(...).usd`` without building a ``Spend`` (the admission check)."""
        return self._open(name, self.wall()).by_period[period].usd

    def add(self, name: str, usd: float, tokens: int) -> None:
        t = self._open(name, self.wall())
        for win in t.windows:
            win.usd += usd
            win.requests += 1
            win.tokens += tokens
        if self.store is not None:
            inc = t.pending
            if inc is None:
                t.pending = [usd, 1, tokens]
                self._dirty_keys.add(t)
                self._dirty.set()
            else:
                inc[0] += usd
                inc[1] += 1
                inc[2] += tokens

    def forget(self, keep: set[str]) -> None:
        """Drop the memory of keys a reload removed (their stored rows stay,
        and what they had pending is still written)."""
        for name in [n for n in self._totals if n not in keep]:
            t = self._totals.pop(name)
            self._rolled.extend(t.rows())
            self._dirty_keys.discard(t)

    # -- the store (every call off the event loop)

    async def open(self, store: SpendStore) -> bool:
        """Open ``store`` and read the open windows back; False (and a WARNING) if it cannot be used."""
        now = self.wall()
        try:
            await asyncio.to_thread(store.open, now)
            rows = await asyncio.to_thread(store.load, {p: window_start(p, now) for p in PERIODS})
        except (OSError, sqlite3.Error) as exc:
            await asyncio.to_thread(store.close)
            self.store_problem = f"cannot use {store.path}: {exc}"
            log.warning("state.path: %s; key spend is kept in memory only and lost at restart",
                        self.store_problem)
            return False
        for name, period, start, usd, requests, tokens in rows:
            win = self._open(name, now).by_period.get(period)
            if win is not None and win.start == start:
                win.usd += usd
                win.requests += requests
                win.tokens += tokens
        self.store = store
        self.store_problem = None
        return True

    async def run(self) -> None:
        """The flusher: a dirty batch is written ``FLUSH_INTERVAL`` seconds
        after its first increment (with ``shared_file``: every interval, and
        the other workers' spend read back)."""
        while True:
            if not self.shared_file:
                await self._dirty.wait()
            await asyncio.sleep(FLUSH_INTERVAL)
            await self.flush()
            if self.shared_file:
                await self.refresh()

    async def refresh(self) -> None:
        """Set the open windows to what the file holds (every writer's
        spend) plus this process's increments not written yet."""
        async with self._lock:
            store = self.store
            if store is None or self._retry or self._rolled:
                return  # rows not in the file yet: the next flush writes them first
            now = self.wall()
            try:
                rows = await asyncio.to_thread(store.load, {p: window_start(p, now) for p in PERIODS})
            except (OSError, sqlite3.Error):
                return  # the file's spend is read again in a second; memory keeps counting
            stored = {(name, period, start): (usd, requests, tokens)
                      for name, period, start, usd, requests, tokens in rows}
            # Keys this process has not served yet get their totals at their first request.
            for t in self._totals.values():
                inc = t.pending or (0.0, 0, 0)
                for w in t.windows:
                    usd, requests, tokens = stored.get((t.name, w.period, w.start), (0.0, 0, 0))
                    w.usd, w.requests, w.tokens = usd + inc[0], requests + int(inc[1]), tokens + int(inc[2])

    async def flush(self) -> None:
        async with self._lock:
            self._dirty.clear()
            store = self.store
            if store is None:
                return
            rows, self._rolled, self._retry = self._rolled + self._retry, [], []
            for t in self._dirty_keys:
                rows.extend(t.rows())
            self._dirty_keys.clear()
            if not rows:
                return
            try:
                await asyncio.to_thread(store.write, rows)
            except (OSError, sqlite3.Error) as exc:
                self._retry = rows  # for the next flush (rows add up: their order does not matter)
                self._dirty.set()
                if not self._failing:
                    log.warning("state.path: writing key spend to %s failed: %s; retrying", store.path, exc)
                self._failing = True
                return
            if self._failing:
                log.warning("state.path: writing key spend to %s works again", store.path)
                self._failing = False

    async def close(self) -> None:
        """The last flush, then the store closed (shutdown)."""
        await self.flush()
        store, self.store = self.store, None
        if store is not None:
            await asyncio.to_thread(store.close)

"""The spend ledger on a fake wall clock with a real SQLite file: epoch-aligned
windows roll over, what was pending for an ended window is still written to
that window, a failed write is retried, and a restart reads the open windows."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from llmproxy.keys.ledger import LocalLedger, window_start
from llmproxy.state.sqlite import SpendStore

DAY = 86400


class Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _rows(db: Path) -> list[tuple[str, int, int, float, int, int]]:
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute("SELECT name, period, window_start, usd, requests, tokens FROM key_spend"))
    finally:
        con.close()


def test_windows_are_epoch_aligned():
    assert window_start(DAY, 3 * DAY + 5) == 3 * DAY
    assert window_start(3600, 7199.9) == 3600
    assert window_start(0, 12345) == 0


async def test_rollover_keeps_the_old_windows_pending_and_a_restart_reads_the_open_ones(tmp_path: Path):
    db = tmp_path / "s.db"
    wall = Wall(10 * DAY + 100)
    ledger = LocalLedger(wall)
    assert await ledger.open(SpendStore(db))
    ledger.add("k", 1.5, 10)
    wall.now = 11 * DAY + 1  # the 1d and 1h windows ended; nothing was flushed yet
    assert ledger.period_usd("k", DAY) == 0.0 and ledger.period_usd("k", 0) == 1.5
    ledger.add("k", 2.0, 5)
    await ledger.close()
    rows = await asyncio.to_thread(_rows, db)
    assert ("k", DAY, 10 * DAY, 1.5, 1, 10) in rows and ("k", DAY, 11 * DAY, 2.0, 1, 5) in rows
    assert ("k", 0, 0, 3.5, 2, 15) in rows
    again = LocalLedger(wall)
    assert await again.open(SpendStore(db))
    assert again.spent("k", DAY).usd == 2.0 and again.spent("k", 0).requests == 2
    assert again.spent("k", DAY).resets_at == 12 * DAY
    await again.close()


async def test_a_failed_write_is_retried_and_nothing_is_counted_twice(tmp_path: Path):
    db = tmp_path / "s.db"
    ledger = LocalLedger(Wall(5 * DAY))
    store = SpendStore(db)
    assert await ledger.open(store)
    ledger.add("k", 1.0, 1)
    real = store.write

    def broken(rows: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    store.write = broken  # type: ignore[method-assign]  # a disk that fails once
    await ledger.flush()
    ledger.add("k", 1.0, 1)
    store.write = real  # type: ignore[method-assign]
    await ledger.flush()
    await ledger.flush()
    await ledger.close()
    assert ("k", 0, 0, 2.0, 2, 2) in await asyncio.to_thread(_rows, db)


async def test_forgotten_keys_still_write_what_they_had_pending(tmp_path: Path):
    db = tmp_path / "s.db"
    ledger = LocalLedger(Wall(DAY))
    assert await ledger.open(SpendStore(db))
    ledger.add("gone", 4.0, 4)
    ledger.forget({"other"})
    await ledger.close()
    assert ("gone", 0, 0, 4.0, 1, 4) in await asyncio.to_thread(_rows, db)


async def test_workers_sharing_one_file_read_each_others_spend_back(tmp_path: Path):
    # --workers N without Redis: each worker writes its own increments to the
    # same file and refreshes its windows from it; its unwritten ones stay on top.
    db, wall = tmp_path / "s.db", Wall(10 * DAY + 5)
    a, b = LocalLedger(wall, shared_file=True), LocalLedger(wall, shared_file=True)
    assert await a.open(SpendStore(db)) and await b.open(SpendStore(db))
    try:
        a.add("team", 5.0, 100)
        b.add("team", 1.0, 10)
        await a.flush()
        await b.refresh()  # b's own $1 is not in the file yet
        assert b.period_usd("team", DAY) == 6.0 and b.spent("team", 0).requests == 2
        await b.flush()
        await a.refresh()
        life = a.spent("team", 0)
        assert (life.usd, life.requests, life.tokens) == (6.0, 2, 110)
        await a.refresh()  # reading again counts nothing twice
        assert a.period_usd("team", DAY) == 6.0
    finally:
        await a.close()
        await b.close()

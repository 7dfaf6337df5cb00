"""The embedded store of key spend: one SQLite file, WAL, written in batches.

Every method blocks (it is ``sqlite3``): the ledger calls them through
``asyncio.to_thread`` and never two at once, so one connection serves every
worker thread (``check_same_thread=False``). One row per (key name, window
length, window start): the lifetime row has window length 0 and start 0,
and every budget period has its own epoch-aligned windows (``keys.ledger``).
A write adds to the rows (``usd = usd + excluded.usd``), so a batch that is
written twice double-counts and a lost batch under-counts: the ledger hands
each batch over once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

Row = tuple[str, int, int, float, int, int]  # name, period, window_start, usd, requests, tokens

# Windows that ended this long ago are deleted when the store opens: a 1h
# budget makes 8,760 rows a year per key, and nothing reads an old window.
KEEP_SECONDS = 400 * 86400

_SCHEMA = """
CREATE TABLE IF NOT EXISTS key_spend (
    name TEXT NOT NULL,
    period INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    usd REAL NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, period, window_start)
)
"""


class SpendStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def open(self, now: float) -> None:
        """Create (or open) the file; raises OSError / sqlite3.Error when it cannot."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False, isolation_level=None)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL mode (got {mode})")
            # NORMAL under WAL: a commit survives a crash of the process (the
            # SIGKILL case); only a power loss can drop the last commits.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.execute("DELETE FROM key_spend WHERE period > 0 AND window_start + period < ?",
                       (int(now) - KEEP_SECONDS,))
        except BaseException:
            db.close()
            raise
        self._db = db

    def load(self, windows: Mapping[int, int]) -> list[Row]:
        """The rows of the windows open now (``period → window_start``), lifetime included."""
        assert self._db is not None
        out: list[Row] = []
        for period, start in windows.items():
            out.extend(self._db.execute(
                "SELECT name, period, window_start, usd, requests, tokens FROM key_spend "
                "WHERE period = ? AND window_start = ?", (period, start)))
        return out

    def write(self, rows: Iterable[Row]) -> None:
        """Add each row's amounts to what is stored, in one transaction."""
        db = self._db
        assert db is not None
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO key_spend (name, period, window_start, usd, requests, tokens) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, period, window_start) DO UPDATE SET "
                "usd = usd + excluded.usd, requests = requests + excluded.requests, "
                "tokens = tokens + excluded.tokens",
                rows,
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

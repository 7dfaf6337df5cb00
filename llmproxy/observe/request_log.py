"""The request log: a bounded ring of the latest requests, and its live tail.

Fed from ``Observation.finish`` (the one place a request is recorded), read by
``GET /admin/requests``, ``GET /admin/requests/stream`` and the /ui page.

Invariants:
- at most ``admin.request_log`` entries (the oldest go first); 0 turns the
  log off and it then costs the request path nothing;
- every string that came from outside (an error message, a body) passes the
  redactor before it is stored: what is stored is what may be served;
  bodies only with ``admin.request_log_bodies``, cut at ``MAX_BODY_CHARS``;
- a live-tail subscriber has a bounded queue: one that cannot keep up is
  dropped (told so, then closed), never waited for; at most
  ``MAX_SUBSCRIBERS`` tails at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

MAX_BODY_CHARS = 4096
MAX_ERROR_CHARS = 1000
SUBSCRIBER_QUEUE = 256
MAX_SUBSCRIBERS = 16

Entry = dict[str, Any]


class Subscriber:
    """One live tail: entries queued for it, or None once it was dropped or closed."""

    __slots__ = ("queue", "dropped")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Entry | None] = asyncio.Queue(SUBSCRIBER_QUEUE + 1)
        self.dropped = False


class RequestLog:
    def __init__(self, size: int, bodies: bool = False, redact: Callable[[str], str] = lambda s: s) -> None:
        self.entries: deque[Entry] = deque(maxlen=max(size, 1))
        self.size = size
        self.bodies = bodies
        self.redact = redact
        self.subscribers: set[Subscriber] = set()

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def configure(self, size: int, bodies: bool) -> None:
        """A reload's new bounds; entries past a smaller bound go, the newest stay."""
        if size != self.size:
            self.entries = deque(self.entries, maxlen=max(size, 1))
            self.size = size
        self.bodies = bodies
        if size == 0:
            self.entries.clear()

    def add(self, entry: Entry) -> None:
        error = entry.get("error")
        if error:
            entry["error"] = self.redact(error[:MAX_ERROR_CHARS])
        self.entries.append(entry)
        for sub in tuple(self.subscribers):
            try:
                sub.queue.put_nowait(entry)
            except asyncio.QueueFull:
                self._drop(sub)

    def body(self, raw: bytes) -> str:
        """A request body as it may be kept: decoded, truncated, redacted."""
        text = raw[:MAX_BODY_CHARS].decode("utf-8", "replace")
        if len(raw) > MAX_BODY_CHARS:
            text += f"... ({len(raw) - MAX_BODY_CHARS} more bytes)"
        return self.redact(text)

    def query(self, *, model: str | None = None, status: Callable[[int], bool] | None = None,
              key: str | None = None, since: float | None = None, limit: int = 100) -> list[Entry]:
        """The newest ``limit`` entries matching every filter given, newest first."""
        out: list[Entry] = []
        for entry in reversed(self.entries):
            if since is not None and entry["time"] < since:
                break  # entries are in time order
            if matches(entry, model, status, key):
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def subscribe(self) -> Subscriber | None:
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            return None
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def _drop(self, sub: Subscriber) -> None:
        # Its queue is full: empty it so the end marker fits; the tail says why it ended.
        self.subscribers.discard(sub)
        sub.dropped = True
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    def close(self) -> None:
        """End every live tail (the app is shutting down: open streams must not hold the drain)."""
        for sub in tuple(self.subscribers):
            self.subscribers.discard(sub)
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                self._drop(sub)


def matches(entry: Entry, model: str | None, status: Callable[[int], bool] | None, key: str | None) -> bool:
    return ((model is None or entry["model"] == model)
            and (status is None or status(entry["status"]))
            and (key is None or entry["key"] == key))


def status_filter(text: str) -> Callable[[int], bool] | None:
    """``200``, ``5xx``, or ``error`` (any status >= 400); None when ``text`` is none of them."""
    text = text.strip().lower()
    if text == "error":
        return lambda s: s >= 400
    if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
        low = int(text[0]) * 100
        return lambda s: low <= s < low + 100
    if text.isdigit() and len(text) == 3:
        wanted = int(text)
        return lambda s: s == wanted
    return None



REQUEST_LOG = web.AppKey("llmproxy.request_log", RequestLog)

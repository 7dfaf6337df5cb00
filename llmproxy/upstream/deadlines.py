"""Timeouts on the relay path: first byte, idle between chunks, total.

One ``Deadline`` per request, all swept by one ``Deadlines`` timer, so
relaying a chunk costs one clock read rather than a timer per read. A
deadline that runs out cancels the task that owns it; the code that catches
that ``CancelledError`` asks ``timed_out()`` whether it was ours
(``with deadline:``, the one mapping in ``errors.py``, does at every site).
"""

from __future__ import annotations

import asyncio

from ..config.tree import Timeouts
from ..errors import UpstreamTimeout
from .errors import UpstreamErrors


class Deadlines:
    """One sweeping timer for every in-flight ``Deadline``.

    A timer per request (armed, re-armed, cancelled) is a measurable share of
    a proxied request's CPU; instead live deadlines sit in a set that one
    timer sweeps every ``resolution`` seconds while the set is not empty. A
    timeout therefore fires up to ``resolution`` late, which is noise next to
    timeouts measured in seconds.
    """

    def __init__(self, resolution: float = 0.05) -> None:
        self.resolution = resolution
        self._active: set[Deadline] = set()
        self._handle: asyncio.TimerHandle | None = None

    def start(self, timeouts: Timeouts) -> Deadline:
        deadline = Deadline(self, timeouts)
        self._active.add(deadline)
        if self._handle is None:
            self._handle = deadline.loop.call_later(self.resolution, self._sweep, deadline.loop)
        return deadline

    def discard(self, deadline: Deadline) -> None:
        self._active.discard(deadline)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for deadline in [d for d in self._active if now >= d.due()]:
            self._active.discard(deadline)
            deadline.fire(now)
        self._handle = loop.call_later(self.resolution, self._sweep, loop) if self._active else None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._active.clear()


class Deadline(UpstreamErrors):
    """Cancels the owning task when the first byte, an idle gap or the total runs out.

    Also the error mapping around every await it guards: ``with deadline:``
    turns its own cancellation into ``UpstreamTimeout`` (``errors.py``).
    """

    __slots__ = ("loop", "_keeper", "_task", "_timeouts", "_end", "_last", "_first", "fired")

    def __init__(self, keeper: Deadlines, timeouts: Timeouts) -> None:
        self.loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._keeper = keeper
        self._task = task
        self._timeouts = timeouts
        now = self.loop.time()
        self._end = now + timeouts.total
        self._last = now
        self._first = True  # waiting for the first byte
        self.fired: str | None = None

    def due(self) -> float:
        gap = self._timeouts.first_byte if self._first else self._timeouts.idle
        return min(self._last + gap, self._end)

    def fire(self, now: float) -> None:
        if now >= self._end:
            self.fired = f"no complete answer within {self._timeouts.total:g}s (total timeout)"
        elif self._first:
            self.fired = f"no first byte within {self._timeouts.first_byte:g}s"
        else:
            self.fired = f"no data for {self._timeouts.idle:g}s (idle timeout)"
        self._task.cancel()

    def touch(self) -> None:
        """Data arrived: the idle clock restarts."""
        self._last = self.loop.time()
        self._first = False

    def cancel(self) -> None:
        self._keeper.discard(self)

    def timed_out(self) -> UpstreamTimeout | None:
        """Call from ``except CancelledError``: our cancellation, or someone else's?"""
        if self.fired is None:
            return None
        fired, self.fired = self.fired, None  # report (and uncancel) once
        if self._task.uncancel() > 0:
            return None
        return UpstreamTimeout(f"upstream timed out: {fired}")

"""Concurrency gate, rpm/tpm limiters and the retry budget of a deployment.

The gate is a counting semaphore whose limit can change on reload without
swapping the object that in-flight requests hold. Rate limits are a leaky
bucket of our own on the deployment's injected clock (the breaker's), so a
fake clock drives both; the plan never waits inside a limiter (it asks
``seconds_until`` and sleeps itself), and ``adjust`` corrects a token estimate
once the real usage is known, neither of which a library bucket offers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class ConcurrencyGate:
    __slots__ = ("limit", "held", "_waiters")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def free(self) -> bool:
        """A slot can be taken now without jumping the queue."""
        return self.limit is None or (self.held < self.limit and not self._waiters)

    def try_acquire(self) -> bool:
        if self.free():
            self.held += 1
            return True
        return False

    async def acquire(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a slot; False if none came."""
        if self.try_acquire():
            return True
        if timeout <= 0:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                return True  # the slot arrived as the timer fired: we hold it
            fut.cancel()
            return False
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot we will never use
            fut.cancel()
            raise
        finally:
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass
        return True

    def release(self) -> None:
        # Hand the slot straight to the first live waiter, else free it. A
        # lowered limit (reload) is honoured by not handing over above it.
        while self._waiters and (self.limit is None or self.held <= self.limit):
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.held -= 1


class TokenLimiter:
    """A leaky bucket of ``max_rate`` units per minute: a burst of up to
    ``max_rate`` units fits at once, and the level drains continuously at
    ``max_rate / 60`` units per second (so it never resets at a minute mark)."""

    __slots__ = ("max_rate", "_per_second", "_clock", "_level", "_checked")

    def __init__(self, per_minute: float, clock: Callable[[], float]) -> None:
        self.max_rate = float(per_minute)
        self._per_second = self.max_rate / 60.0
        self._clock = clock
        self._level = 0.0
        self._checked = clock()

    def _leak(self) -> None:
        now = self._clock()
        elapsed = now - self._checked
        if elapsed > 0:  # a clock that stands still (or a fake one set back) drains nothing
            self._level = max(self._level - elapsed * self._per_second, 0.0)
            self._checked = now

    def has_capacity(self, amount: float = 1.0) -> bool:
        self._leak()
        return self._level + amount <= self.max_rate

    def headroom(self) -> float:
        self._leak()
        return max(self.max_rate - self._level, 0.0)

    def take(self, amount: float) -> bool:
        """Take ``amount`` now if it fits (never waits). More than the whole
        bucket counts as a full bucket, so one large request can still pass."""
        amount = min(amount, self.max_rate)
        if not self.has_capacity(amount):
            return False
        self._level += amount
        return True

    def adjust(self, delta: float) -> None:
        """Add (or give back, if negative) units after the fact."""
        self._leak()
        self._level = max(self._level + delta, 0.0)

    def seconds_until(self, amount: float) -> float:
        """Seconds until ``take(amount)`` would succeed (0 = now)."""
        self._leak()
        excess = self._level + min(amount, self.max_rate) - self.max_rate
        return max(excess / self._per_second, 0.0)


class RetryBudget:
    """Retries allowed per window: max(budget_min, ratio × requests), as Envoy's
    retry budget, so a failing upstream can't multiply the load on it.

    Counts live in ten rotating buckets, so memory stays constant whatever
    the request rate.
    """

    BUCKETS = 10
    __slots__ = ("ratio", "minimum", "_width", "_clock", "_epoch", "_requests", "_retries")

    def __init__(self, ratio: float, minimum: int, window: float, clock: Callable[[], float]) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self._width = window / self.BUCKETS
        self._clock = clock
        self._epoch = int(clock() / self._width)
        self._requests = [0] * self.BUCKETS
        self._retries = [0] * self.BUCKETS

    def _slot(self) -> int:
        epoch = int(self._clock() / self._width)
        if epoch != self._epoch:
            for e in range(max(self._epoch + 1, epoch - self.BUCKETS + 1), epoch + 1):
                self._requests[e % self.BUCKETS] = 0
                self._retries[e % self.BUCKETS] = 0
            self._epoch = epoch
        return epoch % self.BUCKETS

    def request(self) -> None:
        self._requests[self._slot()] += 1

    def try_retry(self) -> bool:
        slot = self._slot()
        allowed = max(self.minimum, int(self.ratio * sum(self._requests)))
        if sum(self._retries) >= allowed:
            return False
        self._retries[slot] += 1
        return True

"""A circuit breaker per deployment, on an injectable clock.

    closed ──(N consecutive failures, or failure ratio ≥ r over the window
              once it holds min_requests outcomes)──▶ open
    open ──(cooldown elapsed)──▶ half_open
    half_open ──(a probe succeeds)──▶ closed
    half_open ──(a probe fails)──▶ open (cooldown starts again)

Invariants: while open, ``allow()`` is False, so no request reaches the
deployment; while half-open at most ``half_open_probes`` requests are in
flight; every ``allow()`` that returned True is matched by exactly one of
``success()``, ``failure()`` or ``neutral()`` (a client error or a cancelled
request says nothing about the deployment's health, but frees the probe).
What counts as a failure is the caller's decision (forward.py: connect
errors, timeouts, 5xx, 429, garbage; never a client's 4xx).

A request the planner sends while ``allow()`` says no (``when_all_open:
route_oldest``, router/plan.py) took no probe, so it reports through
``bypassed()`` instead: a success closes the breaker, anything else leaves it
as it was.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ..config.tree import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    __slots__ = ("_cfg", "_clock", "_state", "_consecutive", "_outcomes", "_opened_at", "_probes",
                 "opened_count")

    def __init__(self, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self._cfg = config
        self._clock = clock
        self._state = CLOSED
        self._consecutive = 0
        # (time, failed) of recent outcomes, trimmed to the window.
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._opened_at = 0.0
        self._probes = 0
        self.opened_count = 0

    def reconfigure(self, config: BreakerConfig) -> None:
        self._cfg = config

    @property
    def state(self) -> str:
        if self._state == OPEN and self._clock() - self._opened_at >= self._cfg.cooldown:
            self._state = HALF_OPEN
            self._probes = 0
        return self._state

    @property
    def closed(self) -> bool:
        """The common case, checked without reading the clock."""
        return self._state is CLOSED

    def available(self) -> bool:
        """Would ``allow()`` say yes? (No side effects beyond the open→half-open clock.)"""
        if self._state is CLOSED:
            return True
        state = self.state
        return state == CLOSED or (state == HALF_OPEN and self._probes < self._cfg.half_open_probes)

    def allow(self) -> bool:
        if self._state is CLOSED:
            return True
        state = self.state
        if state == HALF_OPEN and self._probes < self._cfg.half_open_probes:
            self._probes += 1
            return True
        return False

    @property
    def opened_at(self) -> float:
        """Clock time the breaker last opened (meaningful while not closed)."""
        return self._opened_at

    def retry_in(self) -> float:
        """Seconds until an open breaker starts probing (0 when not open)."""
        if self.state != OPEN:
            return 0.0
        return max(self._opened_at + self._cfg.cooldown - self._clock(), 0.0)

    def success(self) -> None:
        if self._state == HALF_OPEN:
            self._probes = max(self._probes - 1, 0)
            self._close()
            return
        self._consecutive = 0
        self._record(False)

    def failure(self) -> None:
        if self._state == HALF_OPEN:
            self._probes = max(self._probes - 1, 0)
            self._open()
            return
        if self._state == OPEN:
            return  # a request let through before the breaker opened
        self._consecutive += 1
        self._record(True)
        if self._consecutive >= self._cfg.failures or self._ratio_tripped():
            self._open()

    def neutral(self) -> None:
        if self._state == HALF_OPEN:
            self._probes = max(self._probes - 1, 0)

    def bypassed(self, succeeded: bool) -> None:
        """The outcome of a request let through without ``allow()``: a success
        proves the deployment answers again; a failure changes nothing (the
        cooldown keeps running, so the breaker keeps its place in line)."""
        if succeeded:
            self._close()

    def _record(self, failed: bool) -> None:
        now = self._clock()
        outcomes = self._outcomes
        outcomes.append((now, failed))
        horizon = now - self._cfg.window
        while outcomes and outcomes[0][0] < horizon:
            outcomes.popleft()
        # Bound memory at high request rates: old outcomes beyond what the
        # ratio needs carry no extra information.
        while len(outcomes) > max(self._cfg.min_requests * 50, 1000):
            outcomes.popleft()

    def _ratio_tripped(self) -> bool:
        n = len(self._outcomes)
        if n < self._cfg.min_requests:
            return False
        failed = sum(1 for _, f in self._outcomes if f)
        return failed / n >= self._cfg.failure_ratio

    def _open(self) -> None:
        self._state = OPEN
        self._opened_at = self._clock()
        self._probes = 0
        self.opened_count += 1

    def _close(self) -> None:
        self._state = CLOSED
        self._consecutive = 0
        # A probe still in flight reports into the closed state, which counts no probes.
        self._probes = 0
        self._outcomes.clear()

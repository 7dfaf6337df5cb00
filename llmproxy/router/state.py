"""Per-deployment runtime state: the one place that holds it (DESIGN rule 2).

State is keyed by the deployment's stable id, so a config reload that keeps
a deployment keeps its breaker, latency average, limiter levels and counters;
the registry hands out the same object for the same id. Deployments that a
reload removes are forgotten by the registry; requests still holding their
state finish on it undisturbed, and it is garbage once they are done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..config.tree import DeploymentConfig
from ..resilience.breaker import CircuitBreaker
from ..resilience.limits import ConcurrencyGate, TokenLimiter

if TYPE_CHECKING:
    from .shared import DeploymentCounters

EWMA_ALPHA = 0.3


class HealthStatus:
    """The active health check's results for one deployment (server/health_checks.py)."""

    __slots__ = ("ok", "checked_at", "latency", "error", "consecutive_failures", "probes", "failures")

    def __init__(self) -> None:
        self.ok: bool | None = None  # the last probe's verdict
        self.checked_at: float | None = None  # wall time
        self.latency: float | None = None  # seconds
        self.error: str | None = None
        self.consecutive_failures = 0
        self.probes = 0
        self.failures = 0

    def record(self, ok: bool, latency: float, error: str | None, at: float) -> None:
        self.ok, self.latency, self.error, self.checked_at = ok, latency, error, at
        self.probes += 1
        if ok:
            self.consecutive_failures = 0
        else:
            self.failures += 1
            self.consecutive_failures += 1


def share_of(limit: int | None, workers: int) -> int | None:
    """One worker's part of a limit the config sets for the whole instance
    (``--workers N`` without shared counters): rounded down, so N workers
    never allow more than the limit, and at least 1."""
    if limit is None or workers <= 1:
        return limit
    return max(1, limit // workers)


class DeploymentState:
    """Invariant on limits: with ``shared`` None (no Redis, Redis down, or
    no limit configured) the gate and the rpm/tpm limiters enforce this
    worker's share; with ``shared`` set, Redis enforces the limit and they
    hold the full configured values, a pre-check that never refuses what
    the fleet has room for."""

    __slots__ = ("id", "config", "clock", "workers", "in_flight", "requests", "failures", "last_error",
                 "last_error_at", "breaker", "gate", "rpm", "tpm", "ewma", "cool_until", "health",
                 "shared", "_counters")

    def __init__(self, config: DeploymentConfig, clock: Callable[[], float], workers: int = 1,
                 counters: DeploymentCounters | None = None) -> None:
        self.id = config.id
        self.config = config
        self.clock = clock
        self.workers = workers
        # The shared counters while Redis is up (whether or not this deployment has limits) ...
        self._counters = counters
        # ... and what the plan admits against: set only if it also has a limit.
        self.shared = counters if counters is not None and _limited(config) else None
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.breaker = CircuitBreaker(config.breaker, clock)
        self.gate = ConcurrencyGate(share_of(config.max_concurrency, self._divisor()))
        self.rpm: TokenLimiter | None = None
        self.tpm: TokenLimiter | None = None
        self._limiters(config)
        self.ewma: float | None = None  # seconds: latency, or time to first token for streams
        self.cool_until = 0.0
        self.health: HealthStatus | None = None  # set by the first active health probe

    def reconfigure(self, config: DeploymentConfig) -> None:
        old = self.config
        self.config = config
        self.breaker.reconfigure(config.breaker)
        before = self._divisor()
        self.shared = self._counters if self._counters is not None and _limited(config) else None
        self.gate.limit = share_of(config.max_concurrency, self._divisor())
        if self._divisor() != before:
            self._limiters(config)
        elif (config.rpm, config.tpm) != (old.rpm, old.tpm):
            self._limiters(config, old)
        if self.cool_until:
            # A lowered cap applies to a cooling already under way.
            self.cool_until = min(self.cool_until, self.clock() + config.breaker.max_retry_after)

    def share(self, counters: DeploymentCounters | None) -> None:
        """Switch to the shared counters (Redis came up) or back to this
        worker's share (``None``: Redis went down). Requests in flight keep
        what they hold. The rate limiters start afresh, as the keys' local
        counters do: in shared mode they are only a pre-check, and carrying
        their level into the other mode would hold this worker to traffic
        the fleet's counters already answered for (or, back on a restarted
        Redis, refuse what its empty windows admit)."""
        if counters is self._counters:
            return
        self._counters = counters
        self.shared = counters if counters is not None and _limited(self.config) else None
        self.gate.limit = share_of(self.config.max_concurrency, self._divisor())
        self._limiters(self.config)

    def limits_mode(self) -> str | None:
        """``shared`` (the fleet's counters), ``local`` (this process), or None (no limit)."""
        if not _limited(self.config):
            return None
        return "shared" if self.shared is not None else "local"

    def _divisor(self) -> int:
        # Shared: the whole limit is Redis's to enforce; local: this worker's part.
        return 1 if self.shared is not None else self.workers

    def _limiters(self, config: DeploymentConfig, old: DeploymentConfig | None = None) -> None:
        divisor = self._divisor()
        rpm, tpm = share_of(config.rpm, divisor), share_of(config.tpm, divisor)
        if old is None or config.rpm != old.rpm:
            self.rpm = TokenLimiter(rpm, self.clock) if rpm else None
        if old is None or config.tpm != old.tpm:
            self.tpm = TokenLimiter(tpm, self.clock) if tpm else None

    # -- what the planner asks

    def healthy(self) -> bool:
        """Breaker lets traffic through (or will probe now)."""
        return self.breaker.available()

    def ready(self) -> bool:
        """Not benched: the breaker lets traffic through and no Retry-After
        cooling is running (a full gate or rate limit is busy, not broken)."""
        return self.breaker.available() and (not self.cool_until or self.cool_until <= self.clock())

    def probe_failed(self) -> bool:
        """The latest active health probe failed (False when none is running or none finished yet)."""
        return self.health is not None and self.health.ok is False and self.config.health_check.active(
            self.config.provider.type)

    def back_in(self) -> float:
        """Seconds until ``ready()`` could turn true (0 if it is)."""
        return max(self.breaker.retry_in(), self.cooling_for())

    def cooling_for(self) -> float:
        return max(self.cool_until - self.clock(), 0.0)

    def rate_wait(self, tokens: float) -> float:
        """Seconds until the rpm/tpm limiters could take this request (0 = now)."""
        wait = 0.0
        if self.rpm is not None:
            wait = self.rpm.seconds_until(1)
        if self.tpm is not None:
            wait = max(wait, self.tpm.seconds_until(tokens))
        return wait

    def usable(self, tokens: float = 1.0) -> bool:
        # Ordered cheapest first; the clock is read only when something is cooling.
        return (
            self.breaker.available()
            and (not self.cool_until or self.cool_until <= self.clock())
            and self.gate.free()
            and (self.rpm is None or self.rpm.has_capacity(1))
            and (self.tpm is None or self.tpm.has_capacity(min(tokens, self.tpm.max_rate)))
        )

    # -- what a finished attempt reports

    def observe_latency(self, seconds: float) -> None:
        self.ewma = seconds if self.ewma is None else EWMA_ALPHA * seconds + (1 - EWMA_ALPHA) * self.ewma

    def cool(self, seconds: float) -> None:
        """Honour an upstream's Retry-After, up to ``breaker.max_retry_after``."""
        seconds = min(seconds, self.config.breaker.max_retry_after)
        self.cool_until = max(self.cool_until, self.clock() + seconds)

    def note_error(self, message: str) -> None:
        self.failures += 1
        self.last_error = message
        self.last_error_at = self.clock()


def _limited(config: DeploymentConfig) -> bool:
    return config.rpm is not None or config.tpm is not None or config.max_concurrency is not None


class StateRegistry:
    def __init__(self, clock: Callable[[], float], workers: int = 1) -> None:
        self.clock = clock
        self.workers = workers  # limits are divided among this many processes
        # Set once when the app has state.redis (``use``); ``_active`` is it
        # while Redis is up, None while down (every state follows ``share``).
        self.counters: DeploymentCounters | None = None
        self._active: DeploymentCounters | None = None
        self._states: dict[str, DeploymentState] = {}
        # Wildcard models' concrete deployments: pattern deployment id →
        # concrete id → state, at most ``cap`` per pattern (``concrete``).
        self._concrete: dict[str, dict[str, DeploymentState]] = {}

    def bind(self, deployments: Iterable[DeploymentConfig]) -> dict[str, DeploymentState]:
        """States for a (new) config: kept for known ids, created for new ones."""
        fresh: dict[str, DeploymentState] = {}
        for dep in deployments:
            state = self._states.get(dep.id)
            if state is None:
                state = DeploymentState(dep, self.clock, self.workers, self._active)
            else:
                state.reconfigure(dep)
            fresh[dep.id] = state
        self._states = fresh
        # A concrete deployment lives as long as the wildcard deployment it came from.
        self._concrete = {pid: states for pid, states in self._concrete.items() if pid in fresh}
        return fresh

    def concrete(self, dep: DeploymentConfig, cap: int, shared: DeploymentState) -> DeploymentState:
        """The state of a wildcard's concrete deployment (``dep.pattern_id`` set).

        The first ``cap`` concrete ids of a pattern get their own state (kept
        across reloads like any other); later ones share ``shared``, the
        pattern deployment's, so clients inventing names cannot grow state.
        """
        assert dep.pattern_id is not None
        states = self._concrete.setdefault(dep.pattern_id, {})
        state = states.get(dep.id)
        if state is None:
            if len(states) >= cap:
                return shared
            state = states[dep.id] = DeploymentState(dep, self.clock, self.workers, self._active)
        elif state.config != dep:
            state.reconfigure(dep)
        return state

    def use(self, counters: DeploymentCounters) -> None:
        """The shared counters of ``state.redis`` (once, when the app is
        built); every state follows Redis's health from then on."""
        self.counters = counters
        counters.redis.watch_health(self.redis_health)
        self.redis_health(counters.redis.up)

    def redis_health(self, up: bool) -> None:
        active = self.counters if up else None
        if active is self._active:
            return
        self._active = active
        for state in self._every():
            state.share(active)

    def _every(self) -> Iterable[DeploymentState]:
        yield from self._states.values()
        for states in self._concrete.values():
            yield from states.values()

    def concrete_count(self) -> int:
        return sum(len(states) for states in self._concrete.values())

    def all(self) -> list[DeploymentState]:
        return list(self._states.values())

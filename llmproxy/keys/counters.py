"""Per-key rpm / tpm / max_parallel: the interface and the in-process counters.

``KeyCounters`` is the seam a shared implementation (Redis: one atomic
script per call) plugs into; ``LocalCounters`` keeps them in this process on
the proxy's injected clock, reusing the deployments' ``TokenLimiter``.

Invariants:
- ``admit`` takes every slot the request needs (one rpm unit, its token
  estimate, one parallel slot) or none of them, and says which limit
  refused and for how long;
- every admitted request is ``release``d exactly once (the ticket's
  ``finish``), which frees its parallel slot and corrects the tpm estimate
  with the tokens really used;
- state is keyed by key name, so a reload keeps it; a changed limit takes
  effect at once (rates start from an empty bucket, in-flight counts carry);
- in a ``--workers N`` group without shared counters each worker enforces
  its share of every limit (``router.state.share_of``: rounded down, at
  least 1), so N workers never admit more than the configured limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..resilience.limits import TokenLimiter
from ..router.state import share_of
from .policy import KeyPolicy


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: str  # rpm, tpm, max_parallel, or budget (shared counters check the budget too)
    retry_after: float  # seconds
    spent_usd: float | None = None  # budget: the period's spend the refusal saw


class KeyCounters(Protocol):
    async def admit(self, policy: KeyPolicy, tokens: int) -> Refusal | object:
        """Take one request of ``tokens`` (estimated) for ``policy``'s key,
        or refuse. Anything but a ``Refusal`` is the request's hold (None
        included), handed back to ``release``."""
        ...

    def release(self, policy: KeyPolicy, hold: object, estimated: int, used: int | None, usd: float) -> None:
        """The request ended (never blocks): ``used`` is its real token
        count (None: unknown, keep the estimate), ``usd`` its cost."""
        ...

    def in_flight(self, name: str) -> int:
        ...


class _Slots:
    __slots__ = ("in_flight", "max_parallel", "policy", "rpm", "tpm")

    def __init__(self) -> None:
        self.policy: KeyPolicy | None = None  # the one the limiters were last set for
        self.rpm: TokenLimiter | None = None
        self.tpm: TokenLimiter | None = None
        self.max_parallel: int | None = None  # this worker's share
        self.in_flight = 0


class LocalCounters:
    """This process's counters (``KeyCounters``)."""

    # A caller refused for max_parallel is told to come back in a second: no
    # finishing time is known for the requests it has in flight.
    PARALLEL_RETRY_AFTER = 1.0

    def __init__(self, clock: Callable[[], float], workers: int = 1) -> None:
        self._clock = clock
        self.workers = workers  # limits are divided among this many processes
        self._slots: dict[str, _Slots] = {}

    def _for(self, policy: KeyPolicy) -> _Slots:
        s = self._slots.get(policy.name)
        if s is None:
            s = self._slots[policy.name] = _Slots()
        rpm, tpm = share_of(policy.rpm, self.workers), share_of(policy.tpm, self.workers)
        if rpm is None:
            s.rpm = None
        elif s.rpm is None or s.rpm.max_rate != rpm:
            s.rpm = TokenLimiter(rpm, self._clock)
        if tpm is None:
            s.tpm = None
        elif s.tpm is None or s.tpm.max_rate != tpm:
            s.tpm = TokenLimiter(tpm, self._clock)
        s.max_parallel = share_of(policy.max_parallel, self.workers)
        s.policy = policy
        return s

    def share(self, policy: KeyPolicy) -> dict[str, int | None]:
        """The limits this process enforces for ``policy`` (/admin/keys)."""
        w = self.workers
        return {"rpm": share_of(policy.rpm, w), "tpm": share_of(policy.tpm, w),
                "max_parallel": share_of(policy.max_parallel, w)}

    def forget(self, keep: set[str]) -> None:
        """Drop the counters of keys a reload removed (once nothing of theirs is in flight)."""
        for name in [n for n, s in self._slots.items() if n not in keep and s.in_flight <= 0]:
            del self._slots[name]

    async def admit(self, policy: KeyPolicy, tokens: int) -> Refusal | None:
        s = self._slots.get(policy.name)
        if s is None or s.policy is not policy:  # first request, or the first since a reload
            s = self._for(policy)
        if s.max_parallel is not None and s.in_flight >= s.max_parallel:
            return Refusal("max_parallel", self.PARALLEL_RETRY_AFTER)
        rpm, tpm = s.rpm, s.tpm
        if rpm is not None and not rpm.take(1):
            return Refusal("rpm", rpm.seconds_until(1))
        if tpm is not None and not tpm.take(tokens):
            if rpm is not None:
                rpm.adjust(-1)  # all or nothing: the request was not admitted
            return Refusal("tpm", tpm.seconds_until(tokens))
        s.in_flight += 1
        return None

    def release(self, policy: KeyPolicy, hold: object, estimated: int, used: int | None, usd: float) -> None:
        s = self._slots.get(policy.name)
        if s is None:
            return
        s.in_flight -= 1
        if used is not None and s.tpm is not None:
            s.tpm.adjust(used - min(estimated, s.tpm.max_rate))

    def in_flight(self, name: str) -> int:
        s = self._slots.get(name)
        return 0 if s is None else s.in_flight

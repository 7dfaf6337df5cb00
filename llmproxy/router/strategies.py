"""Strategies: each picks one member among the usable candidates.

A strategy object lives as long as its model group's config and may keep
small state (a cursor, current weights, a session map). ``pick`` is only
called with a non-empty list, already filtered to usable deployments of one
priority tier.

Each strategy is one class: it declares its YAML ``name`` and what the plan
must compute per request for it (``needs_session``: the session key;
``needs_tokens``: a token estimate), and ``@register`` puts it in
``REGISTRY``, the one table that ``make_strategy`` and the config's list of
valid names (``config.STRATEGIES``) are derived from.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

from .hashring import HashRing, session_digest, session_point

if TYPE_CHECKING:
    from .group import Member


@dataclass(frozen=True, slots=True)
class RouteContext:
    session_key: str | None = None
    prompt_tokens: int = 0  # estimated before the call
    completion_tokens: int = 0  # estimated: max_tokens, else a default


class Strategy:
    name: ClassVar[str] = ""  # the YAML name; empty for helpers that are not registered
    needs_session: ClassVar[bool] = False
    needs_tokens: ClassVar[bool] = False
    __slots__ = ()

    @classmethod
    def create(cls, members: Sequence[Member], rng: random.Random) -> Strategy:
        """A fresh instance for one model group (override to take what it needs)."""
        return cls()

    def pick(self, candidates: Sequence[Member], ctx: RouteContext) -> Member:
        raise NotImplementedError


REGISTRY: dict[str, type[Strategy]] = {}
_S = TypeVar("_S", bound=type[Strategy])


def register(cls: _S) -> _S:
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"strategy {cls.__qualname__}: name {cls.name!r} is empty or taken")
    REGISTRY[cls.name] = cls
    return cls


@register
class RoundRobin(Strategy):
    name = "round_robin"
    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Member], ctx: RouteContext) -> Member:
        i = self._next % len(candidates)
        self._next = i + 1
        return candidates[i]


@register
class SmoothWeighted(Strategy):
    """nginx's smooth weighted round robin: weights 5,1,1 give a a b a c a a,
    never five a's in a row. Works over any subset of the members, so an
    unusable one simply drops out of the rotation."""

    name = "weighted"
    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, candidates: Sequence[Member], ctx: RouteContext) -> Member:
        if len(candidates) == 1:
            return candidates[0]
        current = self._current
        total = 0.0
        best: Member | None = None
        best_weight = 0.0
        for m in candidates:
            weight = m.config.weight
            cw = current.get(m.id, 0.0) + weight
            current[m.id] = cw
            total += weight
            if best is None or cw > best_weight:
                best, best_weight = m, cw
        assert best is not None
        current[best.id] = best_weight - total
        return best


@register
class WeightedRandom(Strategy):
    name = "random"
    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    @classmethod
    def create(cls, members: Sequence[Member], rng: random.Random) -> Strategy:
        return cls(rng)

    def pick(self, candidates: Sequence[Member], ctx: RouteContext) -> Member:
        if len(candidates) == 1:
            return candidates[0]
        return self._rng.choices(candidates, weights=[m.config.weight for m in candidates])[0]


@register
class LeastConnections(Strategy):
    """Fewest requests in flight; ties rotate so equal deployments share evenly."""

    name = "least_connections"
    __slots__ = ("_turn",)

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, candidates: Sequence[Member], ctx: RouteContext) -> Member:
        low = min(m.state.in_flight for m in candidates)
        tied = [m for m in candidates if m.state.in_flight == low]
        self._turn += 1
        return tied[self._turn % len(tied)]


@register
class LeastLatency(Strategy):
    """Lowest EWMA latency (time to first token for streams). Deployments with
    no observation yet are tried first, so a new one gets measured."""

    name = "least_latency"
    __slots__ = ("_unknown",)

    def __init__(self) -> None:
        self._unknown = RoundRobin()

    def pick(self, candidates: Sequence[Member], ctx: RouteContext) -> Member:
        unknown = [m for m in candidates if m.state.ewma is None]
        if unknown:
            return self._unknown.pick(unknown, ctx)
        return min(candidates, key=lambda m: m.state.ewma or 0.0)


@register
class Cheapest(Strategy):
    """Lowest estimated cost for this request from each deployment's ``price``;
    deployments without a price come last; ties share by weight."""

    name = "cost"
    needs_tokens = True
    __slots__ = ("_ties",)

    def __init__(self) -> None:
        self._ties = SmoothWeighted()

    @staticmethod
    def estimate(m: Member, ctx: RouteContext) -> float:
        price = m.config.price
        if price is None:
            return float("inf")
        return price.cost(ctx.prompt_tokens, ctx.completion_tokens)

    def pick(self, candidates: Sequence[Member], ctx: RouteContext) -> Member:
        costs = [self.estimate(m, ctx) for m in candidates]
        low = min(costs)
        tied = [m for m, c in zip(candidates, costs) if c == low]
        return self._ties.pick(tied, ctx)


@register
class Sticky(Strategy):
    """The same session key goes to the same deployment while it stays usable;
    a key whose deployment became unusable moves (and stays moved). Keys
    without a session go by weight. The session map is a bounded LRU of
    fixed-size digests (never the client's string), so its memory is bounded
    whatever keys clients send."""

    name = "sticky"
    needs_session = True
    __slots__ = ("_sessions", "_fallback", "_max")

    def __init__(self, max_sessions: int = 100_000) -> None:
        self._sessions: OrderedDict[bytes, str] = OrderedDict()
        self._fallback = SmoothWeighted()
        self._max = max_sessions

    def pick(self, candidates: Sequence[Member], ctx: RouteContext) -> Member:
        if ctx.session_key is None:
            return self._fallback.pick(candidates, ctx)
        key = session_digest(ctx.session_key)
        bound = self._sessions.get(key)
        if bound is not None:
            for m in candidates:
                if m.id == bound:
                    self._sessions.move_to_end(key)
                    return m
        m = self._fallback.pick(candidates, ctx)
        self._sessions[key] = m.id
        self._sessions.move_to_end(key)
        if len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return m


@register
class ConsistentHash(Strategy):
    """Session key → the first usable deployment clockwise on a hash ring."""

    name = "consistent_hash"
    needs_session = True
    __slots__ = ("_ring", "_fallback")

    def __init__(self, members: Sequence[Member]) -> None:
        self._ring: HashRing[Member] = HashRing(members, key=lambda m: m.id, weight=lambda m: m.config.weight)
        self._fallback = SmoothWeighted()

    @classmethod
    def create(cls, members: Sequence[Member], rng: random.Random) -> Strategy:
        return cls(members)

    def pick(self, candidates: Sequence[Member], ctx: RouteContext) -> Member:
        if ctx.session_key is None:
            return self._fallback.pick(candidates, ctx)
        ids = {m.id for m in candidates}
        point = session_point(session_digest(ctx.session_key))
        found = self._ring.lookup_point(point, lambda m: m.id in ids)
        if found is None:
            return self._fallback.pick(candidates, ctx)
        # The ring holds the group's members; hand back the candidate object.
        return next(m for m in candidates if m.id == found.id)


def make_strategy(name: str, members: Sequence[Member], rng: random.Random) -> Strategy:
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}") from None
    return cls.create(members, rng)


# What the config validator accepts (re-exported as ``config.STRATEGIES``).
STRATEGY_NAMES = frozenset(REGISTRY)

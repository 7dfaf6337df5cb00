"""Where a request goes: model name → model group → an ordered walk of deployments.

A ``Router`` is built per config (immutable routing) over the shared
``StateRegistry`` (mutable per-deployment health). A ``Member`` pairs the
deployment config as *this model* names it (weight, priority) with the
deployment's shared state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

from ..config import Config, DeploymentConfig, ModelConfig
from ..resilience.limits import RetryBudget
from .state import DeploymentState, StateRegistry
from .strategies import RouteContext, Strategy, make_strategy


class Member:
    __slots__ = ("config", "state", "id")

    def __init__(self, config: DeploymentConfig, state: DeploymentState) -> None:
        self.config = config
        self.state = state
        self.id = config.id

    def __repr__(self) -> str:
        return f"Member({self.id!r})"


class ModelGroup:
    __slots__ = ("config", "members", "tiers", "strategy", "budget", "needs_tokens", "needs_session")

    def __init__(self, config: ModelConfig, states: Mapping[str, DeploymentState],
                 clock: Callable[[], float], rng: random.Random) -> None:
        self.config = config
        self.members = [Member(d, states[d.id]) for d in config.deployments]
        priorities = sorted({m.config.priority for m in self.members})
        self.tiers: list[list[Member]] = [
            [m for m in self.members if m.config.priority == p] for p in priorities
        ]
        self.strategy: Strategy = make_strategy(config.strategy, self.members, rng)
        r = config.retry
        self.budget = RetryBudget(r.budget_ratio, r.budget_min, r.budget_window, clock)
        # Per-request work the plan needs only for some configs (Router fills
        # in fallbacks' needs too).
        self.needs_tokens = config.strategy == "cost" or any(m.config.tpm for m in self.members)
        self.needs_session = config.strategy in ("sticky", "consistent_hash")

    @property
    def name(self) -> str:
        return self.config.name

    def candidates(self, tokens: float, exclude: set[str] | frozenset[str] = frozenset()) -> list[Member]:
        """Usable members of the best tier that has any (priority: lower first)."""
        for tier in self.tiers:
            usable = [m for m in tier if m.id not in exclude and m.state.usable(tokens)]
            if usable:
                return usable
        return []

    def pick(self, candidates: Sequence[Member], ctx: RouteContext) -> Member:
        return self.strategy.pick(candidates, ctx)


class Router:
    def __init__(self, config: Config, registry: StateRegistry, rng: random.Random | None = None) -> None:
        self.clock = registry.clock
        self.rng = rng or random.Random()
        self.states = registry.bind(config.deployments())
        self.groups = {
            name: ModelGroup(m, self.states, self.clock, self.rng) for name, m in config.models.items()
        }
        for group in self.groups.values():
            for fb in group.config.fallbacks:
                if fb in self.groups and self.groups[fb].needs_tokens:
                    group.needs_tokens = True

    def group(self, name: str) -> ModelGroup | None:
        return self.groups.get(name)

    def usable(self) -> bool:
        """At least one deployment whose breaker lets traffic through and that
        is not cooling after a Retry-After (what /readyz reports)."""
        return any(s.ready() for s in self.states.values())

    def back_in(self) -> float:
        """Seconds until the first benched deployment could be usable again."""
        return min((s.back_in() for s in self.states.values()), default=0.0)


__all__ = ["DeploymentState", "Member", "ModelGroup", "RouteContext", "Router", "StateRegistry"]

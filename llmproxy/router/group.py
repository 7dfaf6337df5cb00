"""A model group: the deployments one model name routes to, in priority tiers.

A ``Member`` pairs the deployment config as *this model* names it (weight,
priority) with the deployment's shared state. What the plan must compute per
request for the group (``needs_session``, ``needs_tokens``) comes from the
strategy class's declaration, plus the members' own tpm limits.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

from ..config.tree import DeploymentConfig, ModelConfig
from ..resilience.limits import RetryBudget
from .state import DeploymentState
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
        self.needs_tokens = self.strategy.needs_tokens or any(m.config.tpm for m in self.members)
        self.needs_session = self.strategy.needs_session

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

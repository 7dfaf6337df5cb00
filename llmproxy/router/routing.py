"""The routing table of one config: model name → model group.

A ``Router`` is built per config (immutable routing) over the shared
``StateRegistry`` (mutable per-deployment health), on the registry's clock.
"""

from __future__ import annotations

import random

from ..config.tree import Config
from .group import ModelGroup
from .state import StateRegistry


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
        """At least one deployment whose breaker lets traffic through, that
        is not cooling after a Retry-After and whose latest active health
        probe (where one runs) passed (what /readyz reports)."""
        return any(s.ready() and not s.probe_failed() for s in self.states.values())

    def back_in(self) -> float:
        """Seconds until the first benched deployment could be usable again."""
        return min((s.back_in() for s in self.states.values()), default=0.0)

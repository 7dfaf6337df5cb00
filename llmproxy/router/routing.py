"""The routing table of one config: model name → model group.

A ``Router`` is built per config (immutable routing) over the shared
``StateRegistry`` (mutable per-deployment health), on the registry's clock.
A name resolves as ``config/names.py`` says: exact model, alias, then the
wildcard with the longest prefix. A wildcard's group for one name is built
on its first request and kept, for at most the wildcard model's
``wildcard_names`` names; past that, a name's group is built per request
(about 16 µs, on the wildcard deployment's shared state) rather than kept,
so memory stays bounded whatever names clients send.
"""

from __future__ import annotations

import random

from ..config.names import match_wildcard, wildcard_prefix, wildcard_table
from ..config.tree import Config
from .group import ModelGroup
from .state import StateRegistry
from .wildcard import concrete_group


class Router:
    def __init__(self, config: Config, registry: StateRegistry, rng: random.Random | None = None) -> None:
        self.clock = registry.clock
        self.rng = rng or random.Random()
        self.registry = registry
        self.states = registry.bind(config.deployments())
        self.aliases = config.aliases
        every = {name: ModelGroup(m, self.states, self.clock, self.rng) for name, m in config.models.items()}
        for group in every.values():
            for fb in group.config.fallbacks:
                if fb in every and every[fb].needs_tokens:
                    group.needs_tokens = True
        # Exact names; wildcard patterns are not names a client can ask for.
        self.groups = {n: g for n, g in every.items() if wildcard_prefix(n) is None}
        self.patterns = {n: g for n, g in every.items() if wildcard_prefix(n) is not None}
        self.wildcards = wildcard_table(config.models)
        # Kept groups, per pattern: a flood of names on one wildcard ("*")
        # cannot evict or crowd out the names of another.
        self._concrete: dict[str, ModelGroup] = {}
        self._kept: dict[str, int] = dict.fromkeys(self.patterns, 0)

    def group(self, name: str) -> ModelGroup | None:
        """The group ``name`` routes to: exact model, alias, then wildcard."""
        group = self.groups.get(name)
        if group is not None:
            return group
        target = self.aliases.get(name)
        if target is not None:
            name = target
            group = self.groups.get(name)
            if group is not None:
                return group
        return self.wildcard(name) if self.wildcards else None

    def wildcard(self, name: str) -> ModelGroup | None:
        group = self._concrete.get(name)
        if group is not None:
            return group
        matched = match_wildcard(self.wildcards, name)
        if matched is None:
            return None
        pattern, part = matched
        template = self.patterns[pattern]
        group = concrete_group(template, part, self.registry, self.states, self.clock, self.rng)
        if self._kept[pattern] < template.config.wildcard_names:
            self._kept[pattern] += 1
            self._concrete[name] = group
        return group

    def resolves(self, name: str) -> bool:
        """Whether ``name`` routes somewhere (without building anything)."""
        name = self.aliases.get(name, name)
        return name in self.groups or match_wildcard(self.wildcards, name) is not None

    def usable(self) -> bool:
        """At least one deployment whose breaker lets traffic through, that
        is not cooling after a Retry-After and whose latest active health
        probe (where one runs) passed (what /readyz reports)."""
        return any(s.ready() and not s.probe_failed() for s in self.states.values())

    def back_in(self) -> float:
        """Seconds until the first benched deployment could be usable again."""
        return min((s.back_in() for s in self.states.values()), default=0.0)

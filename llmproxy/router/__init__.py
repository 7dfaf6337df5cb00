"""Where a request goes: model name → model group → ordered deployments."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..config import Config, ModelConfig
from .state import DeploymentState, StateRegistry
from .strategies import Strategy, make_strategy


class ModelGroup:
    __slots__ = ("config", "states", "strategy")

    def __init__(self, config: ModelConfig, states: Mapping[str, DeploymentState]) -> None:
        self.config = config
        self.states = [states[d.id] for d in config.deployments]
        self.strategy: Strategy = make_strategy(config.strategy)

    def attempts(self) -> Iterator[DeploymentState]:
        """Deployments in the order to try them: the strategy's pick first,
        then a fresh pick among those not yet tried, each at most once."""
        remaining = [s for s in self.states if s.usable()]
        while remaining:
            state = self.strategy.pick(remaining)
            yield state
            remaining = [s for s in remaining if s is not state and s.usable()]


class Router:
    def __init__(self, config: Config, registry: StateRegistry) -> None:
        self.states = registry.bind(config.deployments())
        self.groups = {name: ModelGroup(m, self.states) for name, m in config.models.items()}

    def group(self, name: str) -> ModelGroup | None:
        return self.groups.get(name)

    def usable(self) -> bool:
        return any(s.usable() for s in self.states.values())


__all__ = ["DeploymentState", "ModelGroup", "Router", "StateRegistry"]

"""Per-deployment runtime state: the one place that holds it (DESIGN rule 2).

State is keyed by the deployment's stable id, so a config reload that keeps
a deployment keeps its counters; the registry hands out the same object for
the same id for as long as any config or in-flight request still uses it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..config import DeploymentConfig


class DeploymentState:
    __slots__ = ("id", "config", "in_flight", "requests", "failures", "last_error")

    def __init__(self, config: DeploymentConfig) -> None:
        self.id = config.id
        self.config = config
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.last_error: str | None = None

    def usable(self) -> bool:
        return True

    def acquire(self) -> None:
        self.in_flight += 1
        self.requests += 1

    def release(self, error: str | None = None) -> None:
        self.in_flight -= 1
        if error is not None:
            self.failures += 1
            self.last_error = error


class StateRegistry:
    def __init__(self) -> None:
        self._states: dict[str, DeploymentState] = {}

    def bind(self, deployments: Iterable[DeploymentConfig]) -> dict[str, DeploymentState]:
        """States for a (new) config: kept for known ids, created for new ones.

        Ids no longer named are forgotten here; requests still holding their
        state object finish on it undisturbed.
        """
        fresh: dict[str, DeploymentState] = {}
        for dep in deployments:
            state = self._states.get(dep.id)
            if state is None:
                state = DeploymentState(dep)
            state.config = dep
            fresh[dep.id] = state
        self._states = fresh
        return fresh

    def all(self) -> list[DeploymentState]:
        return list(self._states.values())

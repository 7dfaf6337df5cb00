"""Strategies: each picks one deployment among the usable candidates.

A strategy object lives as long as its model group's config and may keep
small state (a cursor, current weights). ``pick`` is only called with a
non-empty list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .state import DeploymentState


class Strategy(Protocol):
    def pick(self, candidates: Sequence[DeploymentState]) -> DeploymentState: ...


class RoundRobin:
    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[DeploymentState]) -> DeploymentState:
        i = self._next % len(candidates)
        self._next = i + 1
        return candidates[i]


class SmoothWeighted:
    """nginx's smooth weighted round robin: weights 5,1,1 give a a b a c a a,
    never five a's in a row. Works over any subset of the deployments, so an
    unusable one simply drops out of the rotation."""

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, candidates: Sequence[DeploymentState]) -> DeploymentState:
        if len(candidates) == 1:
            return candidates[0]
        current = self._current
        total = 0.0
        best: DeploymentState | None = None
        best_weight = 0.0
        for state in candidates:
            weight = state.config.weight
            cw = current.get(state.id, 0.0) + weight
            current[state.id] = cw
            total += weight
            if best is None or cw > best_weight:
                best, best_weight = state, cw
        assert best is not None
        current[best.id] = best_weight - total
        return best


def make_strategy(name: str) -> Strategy:
    if name == "round_robin":
        return RoundRobin()
    if name == "weighted":
        return SmoothWeighted()
    raise ValueError(f"unknown strategy {name!r}")

"""A wildcard model's group for one requested name (``"openai/*"`` → ``openai/gpt-4.1-nano``).

The concrete group is the pattern's group with each deployment's ``*``
replaced by what the wildcard matched: ``model: "*"`` becomes
``gpt-4.1-nano``, the id ``openai/*`` becomes ``openai/gpt-4.1-nano`` (an
id without ``*`` gets ``/gpt-4.1-nano`` appended). The group keeps the
pattern's name, so metrics and error messages name the config's model, and
each concrete deployment carries its pattern's id (``pattern_id``) for
metrics labels. Breaker and limit state is per concrete id, bounded by the
model's ``wildcard_names`` (``StateRegistry.concrete``); the pattern's
retry budget is shared by all its names.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from ..config.tree import DeploymentConfig
from .group import ModelGroup
from .state import DeploymentState, StateRegistry


def concrete_deployment(dep: DeploymentConfig, part: str) -> DeploymentConfig:
    dep_id = dep.id.replace("*", part) if "*" in dep.id else f"{dep.id}/{part}"
    return dataclasses.replace(dep, model=dep.model.replace("*", part), id=dep_id, pattern_id=dep.id)


def concrete_group(pattern: ModelGroup, part: str, registry: StateRegistry,
                   shared: dict[str, DeploymentState], clock: Callable[[], float],
                   rng: random.Random) -> ModelGroup:
    """``pattern``'s group for the name its ``*`` matched as ``part``.

    ``shared`` holds the pattern deployments' states (the router's), which
    concrete ids past the cap share.
    """
    config = pattern.config
    deps = tuple(concrete_deployment(d, part) for d in config.deployments)
    states = {
        d.id: registry.concrete(d, config.wildcard_names, shared[d.pattern_id or d.id]) for d in deps
    }
    group = ModelGroup(dataclasses.replace(config, deployments=deps), states, clock, rng)
    group.budget = pattern.budget
    group.needs_tokens = pattern.needs_tokens
    return group

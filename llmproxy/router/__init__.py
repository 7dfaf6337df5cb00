"""Where a request goes: model name → model group → an ordered walk of deployments.

``routing`` holds the per-config table (``Router``), ``group`` the model groups
and their members, ``strategies`` the registered pick strategies, ``state`` the
per-deployment state that survives reloads, ``plan`` the walk of one request.

The names below resolve on first use (PEP 562): ``config`` imports
``router.strategies`` for the valid strategy names while the other router
modules import ``config``'s dataclasses, so importing this package must not
import them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .group import Member, ModelGroup
    from .routing import Router
    from .state import DeploymentState, StateRegistry
    from .strategies import RouteContext

_HOME = {"Member": "group", "ModelGroup": "group", "Router": "routing", "DeploymentState": "state",
         "StateRegistry": "state", "RouteContext": "strategies"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = ["DeploymentState", "Member", "ModelGroup", "RouteContext", "Router", "StateRegistry"]

"""Where a request goes: model name → model group → an ordered walk of deployments.

``routing`` holds the per-config table (``Router``), ``group`` the model groups
and their members, ``strategies`` the registered pick strategies, ``state`` the
per-deployment state that survives reloads, ``plan`` the walk of one request.
"""

from .group import Member, ModelGroup
from .routing import Router
from .state import DeploymentState, StateRegistry
from .strategies import RouteContext

__all__ = ["DeploymentState", "Member", "ModelGroup", "RouteContext", "Router", "StateRegistry"]

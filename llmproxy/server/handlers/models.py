"""GET /v1/models and /v1/models/{id}: the public names from the config,
only those the caller's key may use (``keys[].models``).

The list holds every model and alias (a wildcard pattern is no name a
client can send, so it is not listed); ``/v1/models/{id}`` answers for every
name that routes, a name a wildcard matches included.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...errors import ModelNotFound
from ...keys.caller import CALLER
from ..runtime import PROXY, Runtime
from .common import json_response


def _model(runtime: Runtime, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(runtime.loaded_at), "owned_by": "llmproxy"}


def _visible(request: web.Request, runtime: Runtime, name: str) -> bool:
    caller = request.get(CALLER)
    if caller is None or caller.policy is None:
        return True
    group = runtime.router.group(name)
    return group is not None and caller.policy.allows(group.name, name)


async def list_models(request: web.Request) -> web.Response:
    runtime = request.app[PROXY].runtime
    router = runtime.router
    names = [*router.groups, *router.aliases]
    return json_response({"object": "list", "data": [
        _model(runtime, name) for name in names if _visible(request, runtime, name)
    ]})


async def get_model(request: web.Request) -> web.Response:
    runtime = request.app[PROXY].runtime
    name = request.match_info["model"]
    # A model the key may not use is as absent as one that does not exist:
    # its name is not the key's to learn.
    if not runtime.router.resolves(name) or not _visible(request, runtime, name):
        raise ModelNotFound(f"model {name!r} does not exist on this proxy", param="model")
    return json_response(_model(runtime, name))

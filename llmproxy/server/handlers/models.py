"""GET /v1/models and /v1/models/{id}: the public names from the config,
only those the caller's key may use (``keys[].models``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...errors import ModelNotFound
from ...keys.caller import CALLER
from ..runtime import PROXY, Runtime
from .common import json_response


def _model(runtime: Runtime, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(runtime.loaded_at), "owned_by": "llmproxy"}


def _visible(request: web.Request, name: str) -> bool:
    caller = request.get(CALLER)
    return caller is None or caller.policy is None or caller.policy.allows(name)


async def list_models(request: web.Request) -> web.Response:
    runtime = request.app[PROXY].runtime
    return json_response({"object": "list", "data": [
        _model(runtime, name) for name in runtime.config.models if _visible(request, name)
    ]})


async def get_model(request: web.Request) -> web.Response:
    runtime = request.app[PROXY].runtime
    name = request.match_info["model"]
    # A model the key may not use is as absent as one that does not exist:
    # its name is not the key's to learn.
    if name not in runtime.config.models or not _visible(request, name):
        raise ModelNotFound(f"model {name!r} does not exist on this proxy", param="model")
    return json_response(_model(runtime, name))

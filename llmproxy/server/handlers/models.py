"""GET /v1/models and /v1/models/{id}: the public names from the config."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...errors import ModelNotFound
from ..runtime import PROXY, Runtime
from .common import json_response


def _model(runtime: Runtime, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(runtime.loaded_at), "owned_by": "llmproxy"}


async def list_models(request: web.Request) -> web.Response:
    runtime = request.app[PROXY].runtime
    return json_response(
        {"object": "list", "data": [_model(runtime, name) for name in runtime.config.models]}
    )


async def get_model(request: web.Request) -> web.Response:
    runtime = request.app[PROXY].runtime
    name = request.match_info["model"]
    if name not in runtime.config.models:
        raise ModelNotFound(f"model {name!r} does not exist on this proxy", param="model")
    return json_response(_model(runtime, name))

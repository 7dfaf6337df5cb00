"""POST /v1/completions (legacy), for OpenAI-compatible deployments."""

from __future__ import annotations

from aiohttp import web

from ...errors import InvalidRequest
from ...keys.service import TICKET
from ...observe.logs import REDACTOR
from ...observe.observation import OBSERVATION
from ...request.attempt import Call
from ...request.completions import COMPLETIONS
from ...request.forward import forward_stream, forward_unary
from ..runtime import PROXY
from .common import call_context, read_json, resolve_model
from .routing import make_plan


async def completions(request: web.Request) -> web.StreamResponse:
    proxy = request.app[PROXY]
    runtime = proxy.runtime
    body = await read_json(request, runtime.config.server.max_body_size)
    group = await resolve_model(request, runtime, body)
    if body.get("prompt") is None:
        raise InvalidRequest("'prompt' is required", param="prompt")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    obs = request[OBSERVATION]
    obs.resolved(group.name, stream=stream)
    plan = make_plan(request, runtime.router, group, body)
    call = Call(proxy.upstream, plan, body, call_context(request, body), obs, request.app.get(REDACTOR), ticket=request.get(TICKET),
                ingress=COMPLETIONS)
    if stream:
        return await forward_stream(request, call)
    return await forward_unary(call, "chat")

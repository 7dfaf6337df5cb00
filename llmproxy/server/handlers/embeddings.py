"""POST /v1/embeddings."""

from __future__ import annotations

from aiohttp import web

from ...cache.keying import EMBEDDINGS
from ...errors import InvalidRequest
from ...keys.service import TICKET
from ...observe.logs import REDACTOR
from ...observe.observation import OBSERVATION
from ...request.attempt import Call
from ...request.cached import ticket_for
from ...request.forward import forward_unary
from ..runtime import PROXY
from .common import call_context, read_json, resolve_model
from .routing import make_plan


async def embeddings(request: web.Request) -> web.StreamResponse:
    proxy = request.app[PROXY]
    runtime = proxy.runtime
    body = await read_json(request, runtime.config.server.max_body_size)
    group = await resolve_model(request, runtime, body)
    value = body.get("input")
    if value is None or value == "" or value == []:
        raise InvalidRequest("'input' is required: a string, an array of strings or token arrays",
                             param="input")
    if not isinstance(value, (str, list)):
        raise InvalidRequest("'input' must be a string or an array", param="input")
    obs = request[OBSERVATION]
    obs.resolved(group.name)
    plan = make_plan(request, runtime.router, group, body)
    call = Call(proxy.upstream, plan, body, call_context(request, body), obs, request.app.get(REDACTOR),
                ticket=request.get(TICKET), cache=ticket_for(request, runtime.config, EMBEDDINGS, group.name, body))
    return await forward_unary(call, "embeddings")

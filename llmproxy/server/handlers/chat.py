"""POST /v1/chat/completions, streaming and not."""

from __future__ import annotations

from aiohttp import web

from ...cache.keying import CHAT
from ...errors import InvalidRequest
from ...keys.service import TICKET
from ...observe.logs import REDACTOR
from ...observe.observation import OBSERVATION
from ...request.attempt import Call
from ...request.cached import ticket_for
from ...request.forward import forward_stream, forward_unary
from ..runtime import PROXY
from .common import call_context, read_json, resolve_model
from .routing import make_plan


async def chat_completions(request: web.Request) -> web.StreamResponse:
    proxy = request.app[PROXY]
    runtime = proxy.runtime  # this request finishes on this config, whatever reloads
    body = await read_json(request, runtime.config.server.max_body_size)
    group = await resolve_model(request, runtime, body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required and must be a non-empty array", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise InvalidRequest("'stream_options' must be an object", param="stream_options")
    obs = request[OBSERVATION]
    obs.resolved(group.name, stream=stream)
    ctx = call_context(request, body)
    plan = make_plan(request, runtime.router, group, body)
    call = Call(proxy.upstream, plan, body, ctx, obs, request.app.get(REDACTOR), ticket=request.get(TICKET),
                cache=ticket_for(request, runtime.config, CHAT, group.name, body))
    if stream:
        return await forward_stream(request, call)
    return await forward_unary(call, "chat")

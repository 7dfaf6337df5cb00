"""POST /v1/messages and /v1/messages/count_tokens (the Anthropic Messages API).

Routed like chat completions, through the same plan and forward path
(request/messages.py says what each attempt sends). ``anthropic-version`` is
accepted and not used: the provider config's version is sent upstream.
The client's ``anthropic-beta`` goes to anthropic deployments whose
``beta:`` lists it (providers/anthropic.py ``beta_header``); translated
routes need no beta header, and any beta field in the body is refused by
name there.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...cache.keying import MESSAGES
from ...errors import InvalidRequest
from ...keys.service import TICKET
from ...observe.logs import REDACTOR
from ...observe.observation import OBSERVATION
from ...request.attempt import Call
from ...request.cached import ticket_for
from ...request.forward import forward_stream, forward_unary
from ...request.messages import (
    CountTokensIngress,
    MessagesIngress,
    count_locally,
    translate,
)
from ...router import ModelGroup
from ..runtime import PROXY, Runtime
from .common import call_context, read_json, resolve_model
from .routing import make_plan


def _check(body: dict[str, Any], *, count_only: bool) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required and must be a non-empty array", param="messages")
    if not count_only:
        mt = body.get("max_tokens")
        if type(mt) is not int or mt < 1:
            raise InvalidRequest("'max_tokens' is required and must be an integer >= 1", param="max_tokens")


def _reaches_anthropic(runtime: Runtime, group: ModelGroup) -> bool:
    """Whether any deployment of the model or its fallbacks is ``type: anthropic``."""
    # The group itself first: a wildcard's group is named by its pattern, which is no routable name.
    groups = [group, *(runtime.router.group(name) for name in group.config.fallbacks)]
    return any(g is not None and any(m.config.provider.type == "anthropic" for m in g.members) for g in groups)


async def messages(request: web.Request) -> web.StreamResponse:
    proxy = request.app[PROXY]
    runtime = proxy.runtime  # this request finishes on this config, whatever reloads
    body = await read_json(request, runtime.config.server.max_body_size)
    group = await resolve_model(request, runtime, body)
    _check(body, count_only=False)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    if not group.config.fallbacks and all(m.config.provider.type == "anthropic" for m in group.members):
        # Every attempt relays the client's body as it is: no chat form to
        # build (the plan estimates from the Messages body as it is).
        internal, refused = None, None
    else:
        internal, refused = translate(body)
        if refused is not None and not _reaches_anthropic(runtime, group):
            raise refused
    routed = internal if internal is not None else body
    obs = request[OBSERVATION]
    obs.resolved(group.name, stream=stream)
    plan = make_plan(request, runtime.router, group, routed)
    ingress = MessagesIngress(body, refused, request.headers.get("anthropic-beta"))
    call = Call(proxy.upstream, plan, routed, call_context(request, routed), obs, request.app.get(REDACTOR),
                ticket=request.get(TICKET), ingress=ingress,
                cache=ticket_for(request, runtime.config, MESSAGES, group.name, body))
    if stream:
        return await forward_stream(request, call)
    return await forward_unary(call, "chat")


async def count_tokens(request: web.Request) -> web.StreamResponse:
    proxy = request.app[PROXY]
    runtime = proxy.runtime
    body = await read_json(request, runtime.config.server.max_body_size)
    group = await resolve_model(request, runtime, body)
    ticket = request.get(TICKET)
    if ticket is not None:
        ticket.free()  # counting tokens is free at Anthropic, and costs nothing here
    _check(body, count_only=True)
    internal, refused = translate(body, count_only=True)
    obs = request[OBSERVATION]
    obs.resolved(group.name)
    if not _reaches_anthropic(runtime, group):
        # Nothing to send: no deployment can count, so nothing is leased either.
        return json_response_bytes(count_locally(internal, refused))
    routed = internal if internal is not None else body
    plan = make_plan(request, runtime.router, group, routed)
    ingress = CountTokensIngress(body, internal, refused, request.headers.get("anthropic-beta"))
    call = Call(proxy.upstream, plan, routed, call_context(request, routed), obs, request.app.get(REDACTOR), ticket=request.get(TICKET),
                ingress=ingress)
    return await forward_unary(call, "chat")


def json_response_bytes(data: bytes) -> web.Response:
    return web.Response(body=data, content_type="application/json")




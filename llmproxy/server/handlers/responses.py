"""POST /v1/responses (OpenAI Responses API), GET and DELETE /v1/responses/{id}.

The request goes through the same plan/attempt/forward path as chat
completions; ``ResponsesWriter`` is its ``Ingress`` (request/ingress.py), chosen per
attempt: ``type: openai`` deployments (``responses: native``, the default)
get the client's body with only ``model`` rewritten and their answer relayed
byte for byte; every other deployment gets the chat body
(``ingress.responses.to_chat``) through its adapter, and its answer is
written back as a Response. Stored responses (``store``, default true) are
kept for translated deployments only: a native upstream keeps its own, and a
follow-up's ``previous_response_id`` goes to it unchanged.

In a model whose deployments are of both kinds, a follow-up continues where
its earlier turn was answered: an id this proxy stored is sent to a native
deployment as the earlier turns' items in ``input`` (an upstream cannot
look up our ids), and an id it does not know is taken to be a native
upstream's, so only native deployments are tried.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from ...cache.keying import RESPONSES
from ...config.tree import DeploymentConfig
from ...errors import InvalidRequest, ProxyError
from ...ingress import responses as ingress
from ...ingress.responses_stream import ResponsesStream
from ...keys.service import TICKET
from ...observe.logs import REDACTOR
from ...observe.observation import OBSERVATION
from ...providers import openai as openai_provider
from ...providers.base import Adapter, CallContext, StreamTranslator, UpstreamRequest
from ...request.attempt import Attempt, Call
from ...request.cached import ticket_for
from ...request.forward import forward_stream, forward_unary
from ...request.ingress import Chained
from ...sse import encode_data
from ..response_store import RESPONSE_STORE, NotKept, ResponseStore, Stored
from ..runtime import PROXY, REQUEST_ID
from .common import json_response, read_json, resolve_model
from .routing import make_plan

log = logging.getLogger("llmproxy.responses")


class ResponsesWriter:
    """One Responses request's answer writer (see the module docstring)."""

    __slots__ = (
        "body",
        "chat",
        "context",
        "created",
        "_echo",
        "ids",
        "items",
        "_native_body",
        "saving",
        "store",
        "untranslatable",
    )

    def __init__(self, body: Mapping[str, Any], chat: dict[str, Any], ids: ingress.Ids, created: int,
                 items: list[dict[str, Any]], context: list[dict[str, Any]], store: ResponseStore | None
                 ) -> None:
        self.body = body
        self.chat = chat
        self._echo: ingress.Echo | None = None  # built on the first translated attempt
        self.ids = ids
        self.created = created
        self.items = items
        self.context = context  # the earlier turns' items this request continues
        self.store = store  # None: store is false
        self.saving: asyncio.Task[None] | None = None  # a Redis put under way (``saved``)
        self.untranslatable: InvalidRequest | None = None  # why the body has no chat form
        self._native_body: Mapping[str, Any] | None = None

    @property
    def echo(self) -> ingress.Echo:
        """The request fields a translated Response repeats; a native relay needs none."""
        if self._echo is None:
            self._echo = ingress.echo_of(self.body)
        return self._echo

    async def request(self, call: Call, attempt: Attempt, adapter: Adapter, *,
                      stream: bool) -> UpstreamRequest | None:
        dep = attempt.dep
        if openai_provider.native_responses(dep):
            return openai_provider.responses_request(dep, self.native_body, stream=stream)
        if self.untranslatable is not None:
            raise self.untranslatable
        return await call.chat_request(attempt, adapter, stream=stream)

    @property
    def native_body(self) -> Mapping[str, Any]:
        """The body a native upstream gets: the client's, unless it continues a
        response this proxy stored, whose turns then travel as input items."""
        if not self.context:
            return self.body
        if self._native_body is None:
            body = {k: v for k, v in self.body.items() if k != "previous_response_id"}
            earlier = [{k: v for k, v in item.items() if k != "id"} for item in self.context]
            current = self.body.get("input")
            if isinstance(current, str):
                current = [{"role": "user", "content": current}]
            body["input"] = earlier + (current if isinstance(current, list) else [])
            self._native_body = body
        return self._native_body

    def local(self, dep: DeploymentConfig, ctx: CallContext) -> bytes:
        raise AssertionError("a Responses request is always sent")

    def answer(self, adapter: Adapter, dep: DeploymentConfig, data: bytes,
               ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        if openai_provider.native_responses(dep):
            return openai_provider.responses_answer(data)
        out, usage = adapter.chat_response(dep, data, ctx)
        doc = ingress.response_from_chat(out, self.echo, self.ids, self.created)
        self.keep(doc)
        return orjson.dumps(doc), usage

    def stream(self, adapter: Adapter, dep: DeploymentConfig, ctx: CallContext) -> StreamTranslator:
        limit = dep.provider.limits.max_event_size
        if openai_provider.native_responses(dep):
            return openai_provider.ResponsesRelay(limit)
        return _Stacked(adapter.chat_stream(dep, ctx), ResponsesStream(self.echo, self.ids, self.created, limit),
                        self)

    def error_event(self, translator: StreamTranslator, exc: ProxyError) -> bytes:
        if isinstance(translator, _Stacked):
            return translator.outer.failed(exc)
        # A native stream: its ids are the upstream's, so the spec's error event (§4.6).
        doc = {"type": "error", "code": exc.code or "server_error", "message": exc.message, "param": exc.param}
        return b"event: error\n" + encode_data(orjson.dumps(doc))

    def keep(self, response: dict[str, Any]) -> None:
        """Store the finished ``response``: called as it is made, before the
        bytes that carry it are written, so a follow-up the client sends on
        reading them (to any process sharing the store) finds it."""
        store = self.store
        if store is not None and response.get("status") != "failed":
            self.store = None  # once
            context = self.context + self.items + response["output"]
            self.saving = store.save(Stored(response, context))

    async def saved(self) -> None:
        """Until the put ``keep`` began has finished (shielded: a departing
        client does not cancel it); a unary answer is sent only after it."""
        if self.saving is None:
            return
        try:
            await asyncio.shield(self.saving)
        except Exception:  # a bug of ours in storing must not cost the client its answer
            log.exception("responses: storing a response failed")


class _Stacked(Chained):
    """The adapter's chat stream, then the Responses events it makes; the
    finished Response is stored (``ResponsesWriter.keep``) in the call that
    makes its terminal event, before that event is relayed."""

    __slots__ = ("writer",)
    outer: ResponsesStream

    def __init__(self, inner: StreamTranslator, outer: ResponsesStream, writer: ResponsesWriter) -> None:
        super().__init__(inner, outer)
        self.writer = writer

    def feed(self, data: bytes) -> bytes:
        out = super().feed(data)
        if self.outer.response is not None:
            self.writer.keep(self.outer.response)
        return out

    def finish(self) -> bytes:
        out = super().finish()
        if self.outer.response is not None:
            self.writer.keep(self.outer.response)
        return out


async def create_response(request: web.Request) -> web.StreamResponse:
    proxy = request.app[PROXY]
    runtime = proxy.runtime
    config = runtime.config
    body = await read_json(request, config.server.max_body_size)
    group = await resolve_model(request, runtime, body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    opts = body.get("stream_options")
    if opts is not None and (not isinstance(opts, dict) or set(opts) - {"include_obfuscation"}):
        # Obfuscation pads deltas against a side channel; not padding is allowed (§4.1).
        raise InvalidRequest("'stream_options' may only hold include_obfuscation", param="stream_options")
    store = request.app[RESPONSE_STORE]
    context: list[dict[str, Any]] = []
    previous = body.get("previous_response_id")
    exclude: frozenset[str] = frozenset()
    if previous is not None and not _all_native(group.config.deployments):
        if not isinstance(previous, str):
            raise InvalidRequest("'previous_response_id' must be a string", param="previous_response_id")
        found = await store.get(previous)
        if isinstance(found, NotKept):
            raise InvalidRequest(f"Previous response with id '{previous}' was not stored: {found.why}.",
                                 param="previous_response_id", code="previous_response_not_found")
        if found is not None:
            context = found.context
        elif any(openai_provider.native_responses(d) for d in group.config.deployments):
            exclude = frozenset(d.id for d in config.deployments() if not openai_provider.native_responses(d))
        else:
            raise InvalidRequest(f"Previous response with id '{previous}' not found.",
                                 param="previous_response_id", code="previous_response_not_found")
    untranslatable: InvalidRequest | None = None
    items: list[dict[str, Any]] = []
    native = _all_native(group.config.deployments)
    if native and not group.config.fallbacks:
        # Every attempt relays the client's body as it is: no chat form to
        # build (the plan estimates from the Responses body, whose ``input``
        # the estimator reads).
        chat = body
    else:
        try:
            items = ingress.input_items(body)
            chat = ingress.to_chat(body, context, stream=stream)
        except InvalidRequest as exc:
            if not native:
                raise
            # Native upstreams take what chat cannot carry; only a fallback to a
            # translated deployment meets this error (ResponsesWriter.request).
            untranslatable, chat = exc, dict(body)
    obs = request[OBSERVATION]
    obs.resolved(group.name, stream=stream)
    # Usage is always asked for: the terminal event carries it.
    ctx = CallContext(public_model=body["model"], request_id=request.get(REQUEST_ID, ""),
                      created=int(time.time()), include_usage=True)
    ids = ingress.Ids(uuid.uuid4().hex)
    writer = ResponsesWriter(body, chat, ids, ctx.created, _with_ids(items, ids), context,
                             store if body.get("store") is not False else None)
    writer.untranslatable = untranslatable
    plan = make_plan(request, runtime.router, group, chat, exclude)
    # Only an answer that leaves no state behind may be shared: a stored
    # response (store, true by default) has an id a follow-up continues.
    shareable = previous is None and body.get("store") is False
    call = Call(proxy.upstream, plan, chat, ctx, obs, request.app.get(REDACTOR), ticket=request.get(TICKET),
                ingress=writer, cache=ticket_for(request, config, RESPONSES, group.name, body, eligible=shareable))
    if stream:
        response = await forward_stream(request, call)
    else:
        response = await forward_unary(call, "chat")
    await writer.saved()
    return response


def _all_native(deployments: Any) -> bool:
    """A group whose every deployment keeps its own responses: their ids are not ours to check."""
    return bool(deployments) and all(openai_provider.native_responses(d) for d in deployments)


def _with_ids(items: list[dict[str, Any]], ids: ingress.Ids) -> list[dict[str, Any]]:
    """Input items as stored: each with an id (listing pages by item id, §1)."""
    return [item if "id" in item else {**item, "id": ids.item("in", i)} for i, item in enumerate(items)]


async def get_response(request: web.Request) -> web.StreamResponse:
    rid = request.match_info["id"]
    found = await request.app[RESPONSE_STORE].get(rid)
    if isinstance(found, NotKept):
        raise _not_found(rid, f"Response with id '{rid}' was not stored: {found.why}.")
    if found is None:
        raise _not_found(rid)
    return json_response(found.response)


async def delete_response(request: web.Request) -> web.StreamResponse:
    rid = request.match_info["id"]
    if not await request.app[RESPONSE_STORE].delete(rid):
        raise _not_found(rid)
    return json_response({"id": rid, "object": "response", "deleted": True})


def _not_found(rid: str, message: str | None = None) -> ProxyError:
    return ProxyError(message or f"Response with id '{rid}' not found.", status=404, type="invalid_request_error",
                      param="response_id", code="not_found")

"""The response cache on the request path: look up, replay, or forward and store.

Every cacheable endpoint (chat completions, messages, responses, embeddings)
reaches upstream through ``forward_unary`` / ``forward_stream``; a handler
hands its ``CacheTicket`` (``ticket_for``) to the ``Call`` and those two pass
through ``unary`` / ``stream`` here. A stream is captured as the pieces
``forward._relay`` wrote to the client (``Capture``), on every path:
translated, OpenAI relay and the Anthropic passthrough alike.

Invariants:
- with the cache off (``cache.enabled: false``) handlers make no ticket:
  the path is the one without a cache, plus one attribute read;
- what is stored is what a client received, and only when it finished
  normally (``cache.forms.finished``): an error, a cut stream (a failure
  after the first byte, a client gone) or a cancelled request store nothing;
- a leader's flight ends in ``finally`` (see ``ResponseCache``);
- a hit calls no upstream, takes no lease and costs nothing: the
  observation records ``cache="hit"`` and no deployment, so spend and
  token counts see no usage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..cache.forms import Entry, as_stream, as_unary, finished, without_usage_chunk
from ..cache.keying import (
    BYPASS,
    CACHE_HEADER,
    CHAT,
    HIT,
    MISS,
    cache_key,
    caller_scope,
    directives,
)
from ..cache.response_cache import RESPONSE_CACHE, ResponseCache
from ..config.tree import Config
from ..server.door import CORS_ORIGIN, cors_headers

if TYPE_CHECKING:
    from .attempt import Call


@dataclass(slots=True, eq=False)
class CacheTicket:
    """One request's dealings with the cache; ``result`` goes out as ``x-llmproxy-cache``."""

    cache: ResponseCache
    fmt: str
    model: str
    key: str = ""
    ttl: float = 0.0
    lookup: bool = False
    store: bool = False
    result: str = BYPASS


@dataclass(slots=True, eq=False)
class Capture:
    """The pieces of a stream as written to the client, up to ``limit`` bytes."""

    limit: int
    pieces: list[bytes] = field(default_factory=list)
    size: int = 0
    complete: bool = False  # set by forward._relay once the stream ended without a failure

    def add(self, piece: bytes) -> None:
        if self.size > self.limit:
            return
        self.size += len(piece)
        if self.size > self.limit:
            self.pieces = []  # too big to keep: nothing more is held
            return
        self.pieces.append(piece)


CACHE_TICKET = web.RequestKey("llmproxy.cache_ticket", CacheTicket)


def ticket_for(request: web.Request, config: Config, fmt: str, model: str, body: Mapping[str, Any],
               *, eligible: bool = True) -> CacheTicket | None:
    """The request's ticket, or None while the cache is off. ``eligible``:
    the request's answer may be shared at all (a Responses request with
    server-side state may not)."""
    slot = request.app.get(RESPONSE_CACHE)
    cache = slot.cache if slot is not None else None
    if cache is None:
        return None
    mc = config.models[model].cache
    if not eligible or not mc.enabled:
        ticket = CacheTicket(cache, fmt, model)  # no lookup, no store: a bypass (counted as one)
    else:
        lookup, store = directives(request.headers)
        cc = cache.config
        scope = caller_scope(request) if cc.scope == "key" else ""
        ticket = CacheTicket(cache, fmt, model, cache_key(fmt, model, scope, body),
                        mc.ttl if mc.ttl is not None else cc.ttl, lookup, store)
    request[CACHE_TICKET] = ticket  # error_middleware puts its result on error answers too
    return ticket


def _mark(call: Call, ticket: CacheTicket, result: str) -> None:
    ticket.result = result
    ticket.cache.counted(result)
    call.obs.cache_result(result)
    if result == HIT and call.ticket is not None:
        call.ticket.free()  # a hit is a request of its key (rpm, access line), never spend


async def unary(call: Call, ticket: CacheTicket, produce: Callable[[], Awaitable[web.Response]]) -> web.Response:
    entry = await ticket.cache.lookup(ticket.key) if ticket.lookup else None
    if entry is not None:
        body = as_unary(ticket.fmt, entry) if entry.stream else entry.chunks[0]
        if body is not None:
            _mark(call, ticket, HIT)
            return web.Response(body=body, content_type="application/json", headers={CACHE_HEADER: HIT})
    cache = ticket.cache
    _mark(call, ticket, MISS if ticket.lookup else BYPASS)
    if not ticket.store:
        return await produce()
    flight = cache.lead(ticket.key)
    try:
        response = await produce()
        answer = response.body
        if isinstance(answer, bytes):
            await _store(ticket, cache, Entry(ticket.model, False, (answer,)))
        return response
    finally:
        if flight is not None:
            cache.land(ticket.key, flight)


async def stream(request: web.Request, call: Call, ticket: CacheTicket,
                 produce: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    entry = await ticket.cache.lookup(ticket.key) if ticket.lookup else None
    if entry is not None:
        include_usage = call.ctx.include_usage
        chunks: tuple[bytes, ...] | list[bytes] | None
        if not entry.stream:
            chunks = as_stream(ticket.fmt, entry, include_usage)
        elif ticket.fmt == CHAT and not include_usage:
            chunks = without_usage_chunk(entry.chunks)
        else:
            chunks = entry.chunks
        if chunks is not None:
            _mark(call, ticket, HIT)
            return await _replay(request, call, chunks)
    cache = ticket.cache
    _mark(call, ticket, MISS if ticket.lookup else BYPASS)
    if not ticket.store:
        return await produce()
    flight = cache.lead(ticket.key)
    capture = call.capture = Capture(cache.backend.max_entry_bytes)
    try:
        response = await produce()
        if capture.complete and capture.pieces:
            await _store(ticket, cache, Entry(ticket.model, True, tuple(capture.pieces)))
        return response
    finally:
        call.capture = None
        if flight is not None:
            cache.land(ticket.key, flight)


async def _store(ticket: CacheTicket, cache: ResponseCache, entry: Entry) -> None:
    if entry.size <= cache.backend.max_entry_bytes and finished(ticket.fmt, entry):
        await cache.store(ticket.key, entry, ticket.ttl)


async def _replay(request: web.Request, call: Call, chunks: tuple[bytes, ...] | list[bytes]) -> web.StreamResponse:
    """A stored stream, piece by piece as the first client received it."""
    out = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Request-ID": call.ctx.request_id, CACHE_HEADER: HIT,
    })
    origin = request.get(CORS_ORIGIN)
    if origin is not None:
        cors_headers(out, origin)
    try:
        await out.prepare(request)
        call.obs.first_byte_sent()
        for piece in chunks:
            await out.write(piece)
        await out.write_eof()
    except ConnectionResetError:
        call.obs.client_gone()
    return out

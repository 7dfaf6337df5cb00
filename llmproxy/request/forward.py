"""The request path: plan → adapter → upstream → adapter → client.

A ``Call`` (attempt.py) carries the request through its plan; each
``Attempt`` records its verdict once. A stream attempt is two steps:
``_open_stream`` (until the provider produced the first bytes to relay:
failures here may move elsewhere) and ``_relay`` (after them: they may not).

Invariants:
- every lease a plan hands out is released on every exit, cancellation by a
  departing client included (``finally``), and the upstream response is
  closed there too (``Attempt.release``), which drops its connection if the body was not read;
- a failed attempt moves on (retry, another deployment, a fallback model)
  only while nothing has been sent to the client, and only for retryable
  errors; a client's 4xx from upstream returns at once;
- once a stream's first byte is out, an upstream failure ends the stream
  with an error event in the client's format (``Ingress.error_event``) and
  no end marker, never a silent cut;
- no credential of the config leaves, whatever an upstream echoes: an
  upstream error's message is masked where it is caught (before the
  deployment's ``last_error``, a log line or the client sees it), every
  relayed stream event and answer body passes the redactor's screen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from functools import partial
from typing import NamedTuple

from aiohttp import web

from ..cache.keying import CACHE_HEADER
from ..errors import ProxyError, UpstreamError, UpstreamProtocolError
from ..providers import adapter_for
from ..providers.base import Adapter, StreamTranslator
from ..server.door import CORS_ORIGIN, cors_headers
from ..server.runtime import PROXY
from ..server.workers import WORKER_HEADER
from ..upstream import UpstreamResponse
from . import cached
from .attempt import DEPLOYMENT_HEADER, Attempt, Call

log = logging.getLogger("llmproxy.forward")

__all__ = ["DEPLOYMENT_HEADER", "forward_stream", "forward_unary"]


async def forward_unary(call: Call, kind: str) -> web.Response:
    """A non-streaming chat completion (``kind="chat"``, in ``call.ingress``'s format) or embeddings call."""
    if call.cache is not None:
        return await cached.unary(call, call.cache, lambda: _forward_unary(call, kind))
    return await _forward_unary(call, kind)


async def _forward_unary(call: Call, kind: str) -> web.Response:
    loop = asyncio.get_running_loop()
    while (attempt := await call.next_attempt()) is not None:
        dep = attempt.dep
        try:
            adapter = adapter_for(dep.provider.type)
            ingress = call.ingress
            req = (
                await ingress.request(call, attempt, adapter, stream=False)
                if kind == "chat"
                else call.build(attempt, partial(adapter.embeddings_request, dep), call.body)
            )
            if req is None:  # the ingress answers this one itself; nothing sent, no verdict owed
                call.obs.attempt_succeeded(None)
                return web.Response(body=ingress.local(dep, call.ctx), content_type="application/json",
                                    headers={DEPLOYMENT_HEADER: dep.id})
            started = loop.time()
            resp = await attempt.open(req)
            data = await resp.read()
            _raise_for_status(adapter, resp, data)
            if kind == "chat":
                out, usage = ingress.answer(adapter, dep, data, call.ctx)
            else:
                out, usage = adapter.embeddings_response(dep, data, call.ctx)
            attempt.succeeded(loop.time() - started, usage)
            if call.redactor is not None:  # an upstream echoing our headers into its answer
                out = call.redactor.screen_for(dep.provider).body(out)
            return web.Response(body=out, content_type="application/json", headers=attempt.headers())
        except UpstreamError as exc:
            attempt.failed(exc)
            if not exc.retryable:
                raise
            log.debug("attempt on %s failed: %s", dep.id, exc.message)
        finally:
            attempt.release()
    raise call.gave_up()


async def forward_stream(request: web.Request, call: Call) -> web.StreamResponse:
    if call.cache is not None:
        return await cached.stream(request, call, call.cache, lambda: _forward_stream(request, call))
    return await _forward_stream(request, call)


async def _forward_stream(request: web.Request, call: Call) -> web.StreamResponse:
    while (attempt := await call.next_attempt()) is not None:
        try:
            try:
                opened = await _open_stream(call, attempt)
            except UpstreamError as exc:
                attempt.failed(exc)
                if not exc.retryable:
                    raise
                log.debug("stream attempt on %s failed: %s", attempt.dep.id, exc.message)
                continue
            return await _relay(request, call, attempt, opened)
        finally:
            attempt.release()
    raise call.gave_up()


class _Opened(NamedTuple):
    """A stream attempt that produced its first bytes (``ended``: and nothing more)."""

    resp: UpstreamResponse
    translator: StreamTranslator
    chunks: AsyncGenerator[bytes, None]
    first: bytes
    ended: bool
    ttft: float


async def _open_stream(call: Call, attempt: Attempt) -> _Opened:
    """Until the first bytes to relay. Raises UpstreamError with nothing sent."""
    dep = attempt.dep
    adapter = adapter_for(dep.provider.type)
    req = await call.ingress.request(call, attempt, adapter, stream=True)
    if req is None:
        raise AssertionError("streams are always sent")
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await attempt.open(req)
    if resp.status != 200:
        _raise_for_status(adapter, resp, await resp.read())
    ctype = resp.headers.get("Content-Type", "")
    if not ctype.startswith(adapter.stream_content_types):
        raise UpstreamProtocolError(
            f"upstream answered a stream request with Content-Type {ctype or 'none'!r}"
        )
    translator = call.ingress.stream(adapter, dep, call.ctx)
    chunks = resp.chunks()
    # Nothing is sent until the provider produced something to relay, so
    # an attempt that fails before that can still move elsewhere.
    first = b""
    ended = False
    try:
        async for data in chunks:
            first = translator.feed(data)
            if first:
                break
        else:
            first = translator.finish()
            ended = True
    except BaseException:  # includes a client leaving while we wait
        await chunks.aclose()
        raise
    return _Opened(resp, translator, chunks, first, ended, loop.time() - started)


async def _relay(request: web.Request, call: Call, attempt: Attempt, opened: _Opened) -> web.StreamResponse:
    """From the first bytes on: a failure ends the stream with an error event, no retry."""
    dep = attempt.dep
    obs = call.obs
    resp, translator, chunks = opened.resp, opened.translator, opened.chunks
    out = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            **attempt.headers(),
            "X-Request-ID": call.ctx.request_id,
        }
    )
    if call.cache is not None:
        out.headers[CACHE_HEADER] = call.cache.result
    origin = request.get(CORS_ORIGIN)
    if origin is not None:
        cors_headers(out, origin)
    worker = request.app[PROXY].worker_name
    if worker is not None:
        out.headers[WORKER_HEADER] = worker
    failure: ProxyError | None = None
    gone = False
    first_sent = False
    held = b""  # translated, screened nowhere yet, not yet written
    # Translators hand out whole events only, so a secret never straddles two
    # pieces and each piece can be screened on its own.
    relay: Callable[[bytes], bytes] = call.redactor.screen_for(dep.provider).events if call.redactor is not None else _as_is
    capture = call.capture
    if capture is not None:  # the cache keeps what the client receives, piece by piece
        relay = _capturing(relay, capture)
    try:
        # The deadline cancels this task wherever it waits, a write to a slow
        # client included; inside, that cancellation is an UpstreamTimeout.
        with resp.deadline:
            try:
                await out.prepare(request)
                # What is translated goes out at once unless the upstream's
                # whole answer is already here: then it waits to leave with
                # the stream's end, in one write (a syscall and a TCP segment
                # per stream instead of three, and no latency: nothing more
                # was coming).
                held = opened.first
                if not opened.ended:
                    while True:
                        if held and not resp.complete():
                            await out.write(relay(held))
                            held = b""
                            if not first_sent:
                                first_sent = True
                                obs.first_byte_sent()
                        data = await anext(chunks, b"")
                        if not data:
                            break
                        piece = translator.feed(data)
                        if piece:
                            held = held + piece if held else piece
                    tail = translator.finish()
                    if tail:
                        held = held + tail if held else tail
            except ConnectionResetError:  # caught here: a client's reset is no upstream error
                gone = True
    except ProxyError as exc:  # an upstream failure or timeout, or a translator's error
        failure = exc
    except asyncio.CancelledError:  # the client left (handler cancellation): still charged
        if call.ticket is not None:
            call.ticket.answered(dep, translator.usage)
        raise
    finally:
        await chunks.aclose()
        attempt.close_response()
    if gone or failure is not None:
        # The upstream produced (and bills) tokens before the end: charged
        # from its usage if it came, else the estimate.
        if call.ticket is not None:
            call.ticket.answered(dep, translator.usage)
    if gone:
        obs.client_gone()
        return out  # the client left between our last read and this write
    last = relay(held) if held else b""
    if failure is not None:
        attempt.failed(failure)
        obs.stream_failed(failure)
        last += call.ingress.error_event(translator, failure)
    elif capture is not None:
        capture.complete = True
    if not first_sent and last:
        obs.first_byte_sent()
    # The bytes leave before the success is booked (lease, metrics, spend):
    # a stream answered in one write reaches the client that much sooner.
    try:
        await out.write_eof(last)
    except ConnectionResetError:
        pass  # the client left as the stream ended; nothing is owed to it
    finally:  # a client leaving during that write cancels us here: still booked
        if failure is None:
            attempt.succeeded(opened.ttft, translator.usage)
    return out


def _as_is(data: bytes) -> bytes:
    return data


def _capturing(relay: Callable[[bytes], bytes], capture: cached.Capture) -> Callable[[bytes], bytes]:
    def relay_and_keep(data: bytes) -> bytes:
        out = relay(data)
        capture.add(out)
        return out

    return relay_and_keep


def _raise_for_status(adapter: Adapter, resp: UpstreamResponse, data: bytes) -> None:
    status = resp.status
    if status == 200:
        return
    if status >= 400:
        raise adapter.error_from_response(status, resp.headers, data)
    raise UpstreamProtocolError(f"upstream answered with unexpected HTTP status {status}")

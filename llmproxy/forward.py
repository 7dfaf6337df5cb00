"""Walks a model group's attempts: adapter → upstream → adapter → client.

The request path for every endpoint family. Invariants:
- every deployment slot acquired is released on every exit, cancellation by
  a departing client included (``finally``), and the upstream response is
  closed there too, which drops its connection if the body was not read;
- a failed attempt moves on to the next deployment only while nothing has
  been sent to the client; once a stream's first byte is out, an upstream
  failure ends the stream with an OpenAI error event, never a silent cut.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from .errors import ProxyError, ServiceUnavailable, UpstreamError, UpstreamProtocolError
from .providers import adapter_for
from .providers.base import Adapter, CallContext, UpstreamRequest
from .router import DeploymentState, ModelGroup
from .sse import encode_data
from .upstream import Upstream, UpstreamResponse

log = logging.getLogger("llmproxy.forward")

DEPLOYMENT_HEADER = "x-llmproxy-deployment"


def _no_attempt(group: ModelGroup) -> ProxyError:
    return ServiceUnavailable(f"no usable deployment for model {group.config.name!r}")


async def forward_unary(
    upstream: Upstream,
    group: ModelGroup,
    body: Mapping[str, Any],
    ctx: CallContext,
    kind: str,
) -> web.Response:
    """A non-streaming chat completion (``kind="chat"``) or embeddings call."""
    last: UpstreamError | None = None
    for state in group.attempts():
        dep = state.config
        adapter = adapter_for(dep.provider.type)
        if kind == "chat":
            req = adapter.chat_request(dep, body, stream=False)
        else:
            req = adapter.embeddings_request(dep, body)
        state.acquire()
        failure: str | None = None
        resp: UpstreamResponse | None = None
        try:
            resp = await upstream.open(dep, req)
            data = await resp.read()
            _raise_for_status(adapter, resp, data)
            if kind == "chat":
                out, _usage = adapter.chat_response(dep, data, ctx)
            else:
                out, _usage = adapter.embeddings_response(dep, data, ctx)
            return web.Response(
                body=out,
                content_type="application/json",
                headers={DEPLOYMENT_HEADER: dep.id},
            )
        except UpstreamError as exc:
            failure = exc.message
            last = exc
            if not exc.retryable:
                raise
            log.debug("attempt on %s failed: %s", dep.id, exc.message)
        finally:
            state.release(failure)
            if resp is not None:
                resp.close()
    raise last if last is not None else _no_attempt(group)


async def forward_stream(
    request: web.Request,
    upstream: Upstream,
    group: ModelGroup,
    body: Mapping[str, Any],
    ctx: CallContext,
) -> web.StreamResponse:
    last: UpstreamError | None = None
    for state in group.attempts():
        try:
            return await _stream_attempt(request, upstream, state, body, ctx)
        except UpstreamError as exc:
            last = exc
            if not exc.retryable:
                raise
            log.debug("stream attempt on %s failed: %s", state.id, exc.message)
    raise last if last is not None else _no_attempt(group)


async def _stream_attempt(
    request: web.Request,
    upstream: Upstream,
    state: DeploymentState,
    body: Mapping[str, Any],
    ctx: CallContext,
) -> web.StreamResponse:
    dep = state.config
    adapter = adapter_for(dep.provider.type)
    req: UpstreamRequest = adapter.chat_request(dep, body, stream=True)
    state.acquire()
    failure: str | None = None
    resp: UpstreamResponse | None = None
    chunks = None
    try:
        resp = await upstream.open(dep, req)
        if resp.status != 200:
            _raise_for_status(adapter, resp, await resp.read())
        ctype = resp.headers.get("Content-Type", "")
        if not ctype.startswith(adapter.stream_content_types):
            raise UpstreamProtocolError(
                f"upstream answered a stream request with Content-Type {ctype or 'none'!r}"
            )
        translator = adapter.chat_stream(dep, ctx)
        chunks = resp.chunks()
        # Nothing is sent until the provider produced something to relay, so
        # an attempt that fails before that can still move to another deployment.
        first = b""
        ended = False
        async for data in chunks:
            first = translator.feed(data)
            if first:
                break
        else:
            first = translator.finish()
            ended = True

        out = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                DEPLOYMENT_HEADER: dep.id,
            }
        )
        await out.prepare(request)
        try:
            await out.write(first)
            if not ended:
                async for data in chunks:
                    piece = translator.feed(data)
                    if piece:
                        await out.write(piece)
                tail = translator.finish()
                if tail:
                    await out.write(tail)
        except UpstreamError as exc:
            failure = exc.message
            await out.write(encode_data(orjson.dumps(exc.to_dict())))
        except asyncio.CancelledError:
            err = resp.timed_out()
            if err is None:
                raise  # the client left
            failure = err.message
            await out.write(encode_data(orjson.dumps(err.to_dict())))
        except ProxyError as exc:
            failure = exc.message
            await out.write(encode_data(orjson.dumps(exc.to_dict())))
        except ConnectionResetError:
            return out  # the client left between our last read and this write
        await out.write_eof()
        return out
    except UpstreamError as exc:
        failure = exc.message
        raise
    finally:
        state.release(failure)
        if chunks is not None:
            await chunks.aclose()
        if resp is not None:
            resp.close()


def _raise_for_status(adapter: Adapter, resp: UpstreamResponse, data: bytes) -> None:
    status = resp.status
    if status == 200:
        return
    if status >= 400:
        raise adapter.error_from_response(status, resp.headers, data)
    raise UpstreamProtocolError(f"upstream answered with unexpected HTTP status {status}")

"""The request path: plan → adapter → upstream → adapter → client.

Invariants:
- every lease a plan hands out is released on every exit, cancellation by a
  departing client included (``finally``), and the upstream response is
  closed there too, which drops its connection if the body was not read;
- a failed attempt moves on (retry, another deployment, a fallback model)
  only while nothing has been sent to the client, and only for retryable
  errors; a client's 4xx from upstream returns at once;
- once a stream's first byte is out, an upstream failure ends the stream
  with an OpenAI error event and no ``[DONE]``, never a silent cut;
- no credential of the config leaves, whatever an upstream echoes: an
  upstream error's message is masked where it is caught (before the
  deployment's ``last_error``, a log line or the client sees it), every
  relayed stream event and answer body passes the redactor's screen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from .errors import ProxyError, UpstreamError, UpstreamProtocolError
from .fetch import RemoteImages
from .logs import REDACTOR
from .observe import Observation
from .providers import adapter_for
from .providers.base import Adapter, CallContext
from .redact import Redactor
from .router.plan import Lease, Plan
from .sse import encode_data
from .upstream import Upstream, UpstreamResponse

log = logging.getLogger("llmproxy.forward")

DEPLOYMENT_HEADER = "x-llmproxy-deployment"


async def forward_unary(
    upstream: Upstream,
    plan: Plan,
    body: Mapping[str, Any],
    ctx: CallContext,
    kind: str,
    obs: Observation,
    redactor: Redactor | None = None,
) -> web.Response:
    """A non-streaming chat completion (``kind="chat"``) or embeddings call."""
    loop = asyncio.get_running_loop()
    images = RemoteImages()  # image URLs fetched for adapters that take inline images only (fetch.py)
    while (lease := await plan.next()) is not None:
        dep = lease.member.config
        resp: UpstreamResponse | None = None
        try:
            obs.attempt(dep, plan.group.name)  # inside: the lease is released whatever happens
            adapter = adapter_for(dep.provider.type)
            req = (
                adapter.chat_request(dep, await images.inline(adapter, dep, body), stream=False)
                if kind == "chat"
                else adapter.embeddings_request(dep, body)
            )
            started = loop.time()
            resp = await upstream.open(dep, obs.traced(req))
            data = await resp.read()
            _raise_for_status(adapter, resp, data)
            if kind == "chat":
                out, usage = adapter.chat_response(dep, data, ctx)
            else:
                out, usage = adapter.embeddings_response(dep, data, ctx)
            lease.success(loop.time() - started, usage)
            obs.attempt_succeeded(usage)
            if redactor is not None:  # an upstream echoing our headers into its answer
                out = redactor.screen_for(dep.provider).body(out)
            return web.Response(
                body=out, content_type="application/json", headers={DEPLOYMENT_HEADER: dep.id}
            )
        except UpstreamError as exc:
            _mask(redactor, exc)
            lease.failure(exc)
            obs.attempt_failed(exc)
            plan.failed(exc)
            if not exc.retryable:
                raise
            log.debug("attempt on %s failed: %s", dep.id, exc.message)
        finally:
            lease.release()
            if resp is not None:
                resp.close()
    raise _gave_up(plan, obs)


async def forward_stream(
    request: web.Request,
    upstream: Upstream,
    plan: Plan,
    body: Mapping[str, Any],
    ctx: CallContext,
    obs: Observation,
) -> web.StreamResponse:
    images = RemoteImages()  # image URLs fetched for adapters that take inline images only (fetch.py)
    redactor = request.app.get(REDACTOR)
    while (lease := await plan.next()) is not None:
        try:
            obs.attempt(lease.member.config, plan.group.name)
            return await _stream_attempt(request, upstream, lease, body, ctx, images, obs, redactor)
        except UpstreamError as exc:
            plan.failed(exc)
            if not exc.retryable:
                raise
            log.debug("stream attempt on %s failed: %s", lease.id, exc.message)
        finally:
            lease.release()
    raise _gave_up(plan, obs)


async def _stream_attempt(
    request: web.Request,
    upstream: Upstream,
    lease: Lease,
    body: Mapping[str, Any],
    ctx: CallContext,
    images: RemoteImages,
    obs: Observation,
    redactor: Redactor | None,
) -> web.StreamResponse:
    """One deployment's try. Raises UpstreamError only while nothing was sent."""
    dep = lease.member.config
    adapter = adapter_for(dep.provider.type)
    req = adapter.chat_request(dep, await images.inline(adapter, dep, body), stream=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp: UpstreamResponse | None = None
    chunks = None
    try:
        resp = await upstream.open(dep, obs.traced(req))
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
        # an attempt that fails before that can still move elsewhere.
        first = b""
        ended = False
        async for data in chunks:
            first = translator.feed(data)
            if first:
                break
        else:
            first = translator.finish()
            ended = True
    except BaseException as exc:  # includes a client leaving while we wait
        if isinstance(exc, UpstreamError):
            _mask(redactor, exc)
            lease.failure(exc)
            obs.attempt_failed(exc)
        if chunks is not None:
            await chunks.aclose()
        if resp is not None:
            resp.close()
        raise

    ttft = loop.time() - started
    out = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            DEPLOYMENT_HEADER: dep.id,
            "X-Request-ID": ctx.request_id,
        }
    )
    failure: ProxyError | None = None
    # Translators hand out whole events only, so a secret never straddles two
    # pieces and each piece can be screened on its own.
    relay = redactor.screen_for(dep.provider).events if redactor is not None else _as_is
    try:
        await out.prepare(request)
        await out.write(relay(first))
        obs.first_byte_sent()
        if not ended:
            async for data in chunks:
                piece = translator.feed(data)
                if piece:
                    await out.write(relay(piece))
            tail = translator.finish()
            if tail:
                await out.write(relay(tail))
    except UpstreamError as exc:
        failure = exc
    except asyncio.CancelledError:
        timeout = resp.timed_out()
        if timeout is None:
            raise  # the client left: the finally below frees everything
        failure = timeout
    except ProxyError as exc:
        failure = exc
    except ConnectionResetError:
        obs.client_gone()
        return out  # the client left between our last read and this write
    finally:
        await chunks.aclose()
        resp.close()
    if failure is not None:
        _mask(redactor, failure)
        if isinstance(failure, UpstreamError):
            lease.failure(failure)
            obs.attempt_failed(failure)
        obs.stream_failed(failure)
    else:
        lease.success(ttft, translator.usage)
        obs.attempt_succeeded(translator.usage)
    try:
        if failure is not None:
            await out.write(encode_data(orjson.dumps(failure.to_dict())))
        await out.write_eof()
    except ConnectionResetError:
        pass  # the client left as the stream ended; nothing is owed to it
    return out


def _as_is(data: bytes) -> bytes:
    return data


def _mask(redactor: Redactor | None, exc: ProxyError) -> None:
    """Mask credentials in an error's message where it is caught, before
    anything stores, logs or relays it."""
    if redactor is not None:
        exc.message = redactor.redact(exc.message)


def _gave_up(plan: Plan, obs: Observation) -> ProxyError:
    for dep_id, kind in plan.limits_hit():
        obs.rate_limited(dep_id, kind)
    return plan.error()


def _raise_for_status(adapter: Adapter, resp: UpstreamResponse, data: bytes) -> None:
    status = resp.status
    if status == 200:
        return
    if status >= 400:
        raise adapter.error_from_response(status, resp.headers, data)
    raise UpstreamProtocolError(f"upstream answered with unexpected HTTP status {status}")

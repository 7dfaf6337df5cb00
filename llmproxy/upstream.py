"""The one place that does outbound I/O.

``Upstream.open()`` sends an ``UpstreamRequest`` and returns an
``UpstreamResponse`` whose body is read whole (``read``) or as it arrives
(``chunks``). aiohttp's errors become ours here, once:

    refused / reset / DNS / TLS   → UpstreamUnreachable (502)
    malformed HTTP, cut body      → UpstreamProtocolError (502)
    body past limits.max_response_size (inflated) → UpstreamTooLarge (502)
    connect / first byte / idle / total exceeded → UpstreamTimeout (504)

Timeouts are enforced by one ``Deadline`` per request: a single timer that
is only re-armed when it fires early, so relaying a chunk costs one clock read
rather than a timer per read. ``mock://`` URLs are played by ``MockTransport``
in process, with the same response interface and the same deadlines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping
from datetime import datetime, timezone
from typing import Any, Protocol

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from .config import DeploymentConfig, Timeouts, UpstreamPoolConfig
from .errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnreachable,
)
from .providers import mock
from .providers.base import UpstreamRequest
from .sse import DONE, encode_data


class Deadlines:
    """One sweeping timer for every in-flight ``Deadline``.

    A timer per request (armed, re-armed, cancelled) is a measurable share of
    a proxied request's CPU; instead live deadlines sit in a set that one
    timer sweeps every ``resolution`` seconds while the set is not empty. A
    timeout therefore fires up to ``resolution`` late, which is noise next to
    timeouts measured in seconds.
    """

    def __init__(self, resolution: float = 0.05) -> None:
        self.resolution = resolution
        self._active: set[Deadline] = set()
        self._handle: asyncio.TimerHandle | None = None

    def start(self, timeouts: Timeouts) -> Deadline:
        deadline = Deadline(self, timeouts)
        self._active.add(deadline)
        if self._handle is None:
            self._handle = deadline.loop.call_later(self.resolution, self._sweep, deadline.loop)
        return deadline

    def discard(self, deadline: Deadline) -> None:
        self._active.discard(deadline)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for deadline in [d for d in self._active if now >= d.due()]:
            self._active.discard(deadline)
            deadline.fire(now)
        self._handle = loop.call_later(self.resolution, self._sweep, loop) if self._active else None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._active.clear()


class Deadline:
    """Cancels the owning task when the first byte, an idle gap or the total runs out."""

    __slots__ = ("loop", "_keeper", "_task", "_timeouts", "_end", "_last", "_first", "fired")

    def __init__(self, keeper: Deadlines, timeouts: Timeouts) -> None:
        self.loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._keeper = keeper
        self._task = task
        self._timeouts = timeouts
        now = self.loop.time()
        self._end = now + timeouts.total
        self._last = now
        self._first = True  # waiting for the first byte
        self.fired: str | None = None

    def due(self) -> float:
        gap = self._timeouts.first_byte if self._first else self._timeouts.idle
        return min(self._last + gap, self._end)

    def fire(self, now: float) -> None:
        if now >= self._end:
            self.fired = f"no complete answer within {self._timeouts.total:g}s (total timeout)"
        elif self._first:
            self.fired = f"no first byte within {self._timeouts.first_byte:g}s"
        else:
            self.fired = f"no data for {self._timeouts.idle:g}s (idle timeout)"
        self._task.cancel()

    def touch(self) -> None:
        """Data arrived: the idle clock restarts."""
        self._last = self.loop.time()
        self._first = False

    def cancel(self) -> None:
        self._keeper.discard(self)

    def timed_out(self) -> UpstreamTimeout | None:
        """Call from ``except CancelledError``: our cancellation, or someone else's?"""
        if self.fired is None:
            return None
        fired, self.fired = self.fired, None  # report (and uncancel) once
        if self._task.uncancel() > 0:
            return None
        return UpstreamTimeout(f"upstream timed out: {fired}")


class UpstreamResponse(Protocol):
    status: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncGenerator[bytes, None]: ...

    def close(self) -> None: ...

    def timed_out(self) -> UpstreamTimeout | None:
        """After a CancelledError: the deadline's timeout, or None if someone else cancelled."""


class HTTPResponse:
    """An aiohttp response behind our deadline and error mapping."""

    __slots__ = ("_resp", "_deadline", "_max", "status", "headers")

    def __init__(self, resp: aiohttp.ClientResponse, deadline: Deadline, max_size: int) -> None:
        self._resp = resp
        self._deadline = deadline
        self._max = max_size
        self.status = resp.status
        self.headers = resp.headers

    async def read(self) -> bytes:
        """The whole body, at most ``max_size`` bytes after decompression.

        Read piece by piece rather than with ``ClientResponse.read()`` so
        the count stops a body (or a gzip bomb: aiohttp inflates in
        ``content`` under back-pressure) at the limit, never in memory whole.
        """
        deadline = self._deadline
        limit = self._max
        try:
            declared = self._resp.content_length
            if declared is not None and declared > limit:
                raise _too_large(f"declares Content-Length {declared}, above", limit)
            content = self._resp.content
            pieces: list[bytes] = []
            size = 0
            while piece := await content.readany():
                size += len(piece)
                if size > limit:
                    raise _too_large("is larger than", limit)
                pieces.append(piece)
            data = b"".join(pieces)
        except asyncio.CancelledError:
            if (err := deadline.timed_out()) is not None:
                raise err from None
            raise
        except aiohttp.ClientError as exc:
            raise _map_client_error(exc) from None
        finally:
            deadline.cancel()
        return data

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        deadline = self._deadline
        content = self._resp.content
        try:
            while True:
                data = await content.readany()
                if not data:
                    return
                deadline.touch()
                yield data
        except asyncio.CancelledError:
            if (err := deadline.timed_out()) is not None:
                raise err from None
            raise
        except aiohttp.ClientError as exc:
            raise _map_client_error(exc) from None
        finally:
            deadline.cancel()

    def close(self) -> None:
        self._deadline.cancel()
        # close(), not release(): an unread body means the connection is
        # mid-answer and must not go back to the pool. After a full read
        # aiohttp has already returned the connection, so close() is a no-op.
        self._resp.close()

    def timed_out(self) -> UpstreamTimeout | None:
        return self._deadline.timed_out()


class Upstream:
    """Owns the process-wide pooled ClientSession (opened in cleanup_ctx)."""

    def __init__(self, pool: UpstreamPoolConfig) -> None:
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self.deadlines = Deadlines()
        # Parsed URLs by string: deployment URLs repeat, and parsing one is a
        # visible share of a request's CPU. Bounded by clearing when full.
        self._urls: dict[str, URL] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool.limit,
            limit_per_host=self._pool.limit_per_host,
            keepalive_timeout=self._pool.keepalive_timeout,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Our Deadline does first-byte/idle/total; aiohttp only bounds connect.
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            # A proxy must not carry one upstream answer's Set-Cookie into
            # another client's request (and the jar costs a lookup per request).
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "llmproxy"},
        )

    async def close(self) -> None:
        self.deadlines.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, url: str) -> URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= 4096:
                self._urls.clear()
            parsed = self._urls[url] = URL(url, encoded=True)
        return parsed

    async def open(self, dep: DeploymentConfig, req: UpstreamRequest) -> UpstreamResponse:
        """Send ``req``; returns once the response headers arrived."""
        deadline = self.deadlines.start(dep.timeouts)
        if req.url.startswith(mock.MOCK_SCHEME):
            return MockTransport(dep, req, deadline)
        session = self._session
        assert session is not None, "Upstream.start() was not called"
        headers = req.headers
        if req.aws_sigv4 is not None:  # signed here: the clock lives on the I/O side
            now = datetime.now(timezone.utc)
            headers = {**headers, **req.aws_sigv4.sign(req.method, req.url, headers, req.body, now)}
        try:
            resp = await session.request(
                req.method,
                self._url(req.url),
                data=req.body,
                headers=headers,
                timeout=self._connect_timeout(dep.timeouts.connect),
                allow_redirects=False,
            )
        except asyncio.CancelledError:
            deadline.cancel()
            if (err := deadline.timed_out()) is not None:
                raise err from None
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            deadline.cancel()
            raise _map_client_error(exc) from None
        return HTTPResponse(resp, deadline, dep.provider.limits.max_response_size)

    def _connect_timeout(self, connect: float) -> aiohttp.ClientTimeout:
        t = self._client_timeouts.get(connect)
        if t is None:
            t = self._client_timeouts[connect] = aiohttp.ClientTimeout(
                total=None, sock_connect=connect, connect=None
            )
        return t


def _map_client_error(exc: BaseException) -> UpstreamError:
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return UpstreamTimeout(f"upstream timed out connecting: {_describe(exc)}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(f"cannot connect to upstream {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamProtocolError(f"upstream body was cut short or malformed: {_describe(exc)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamUnreachable("upstream closed the connection without answering")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError(f"upstream sent a malformed HTTP response: {_describe(exc)}")
    return UpstreamUnreachable(f"upstream connection failed: {_describe(exc)}")


def _too_large(what: str, limit: int) -> UpstreamTooLarge:
    return UpstreamTooLarge(f"upstream answer {what} the limit of {limit} bytes (limits.max_response_size)")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- mock


class MockTransport:
    """Plays a ``type: mock`` answer in process: no socket, real timing."""

    __slots__ = ("_dep", "_req", "_deadline", "_body", "status", "headers")

    def __init__(self, dep: DeploymentConfig, req: UpstreamRequest, deadline: Deadline) -> None:
        self._dep = dep
        self._req = req
        self._deadline = deadline
        self.status = 200
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            body = {}
        self._body: dict[str, Any] = body if isinstance(body, dict) else {}
        stream = self._body.get("stream") is True
        self.headers: CIMultiDict[str] = CIMultiDict(
            {"Content-Type": "text/event-stream" if stream else "application/json"}
        )

    def _answer(self) -> tuple[dict[str, Any], str, str]:
        reply = mock.reply_text(self._body, self._dep.provider.options.get("reply"))
        return self._body, reply, f"chatcmpl-mock-{time.time_ns():x}"

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            if (err := self._deadline.timed_out()) is not None:
                raise err from None
            raise

    async def read(self) -> bytes:
        try:
            body, reply, cid = self._answer()
            opts = self._dep.provider.options
            await self._sleep(opts.get("latency", 0.0))
            self._deadline.touch()
            if self._req.url.endswith("/embeddings"):
                doc = mock.embeddings(body, self._dep.model)
            else:
                tps = opts.get("tokens_per_second")
                if tps:
                    await self._sleep(mock.count_tokens(reply) / tps)
                doc = mock.completion(body, self._dep.model, reply, id=cid, created=int(time.time()))
            return orjson.dumps(doc)
        finally:
            self._deadline.cancel()

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            body, reply, cid = self._answer()
            opts = self._dep.provider.options
            tps = opts.get("tokens_per_second")
            await self._sleep(opts.get("latency", 0.0))
            chunks = mock.stream_chunks(body, self._dep.model, reply, id=cid, created=int(time.time()))
            for i, chunk in enumerate(chunks):
                if tps and 1 < i < len(chunks) - 1:
                    await self._sleep(1.0 / tps)
                self._deadline.touch()
                yield encode_data(orjson.dumps(chunk))
            yield DONE
        finally:
            self._deadline.cancel()

    def close(self) -> None:
        self._deadline.cancel()

    def timed_out(self) -> UpstreamTimeout | None:
        return self._deadline.timed_out()

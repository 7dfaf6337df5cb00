"""HTTP/1.1 to the deployments: keep-alive connections and aiohttp's C response parser.

Why not aiohttp's ``ClientSession``: measured on this project's bench machine
(one sequential POST after another to nginx on 127.0.0.1, 10 connections),
``session.request`` + ``read`` costs ~105 µs of CPU per request and this
module ~22 µs, for the same parser, the same decompression and the same
socket writes. The difference is the client's per-request machinery (URL
and header objects, cookie and trace hooks, the connector's bookkeeping),
which a proxy sending the same few requests to the same few hosts does not
need. The upstream is a deployment from the config, so the request target,
``Host`` and the TLS context are worked out once per URL.

What it does, and what it keeps from aiohttp's client:
- **parsing**: ``aiohttp._http_parser.HttpResponseParser`` (llhttp), with
  aiohttp's limits on lines, fields and header counts; bodies are
  de-chunked and inflated (gzip, deflate, and br when Brotli is installed)
  into a ``StreamReader`` with aiohttp's flow control, so a slow reader
  pauses the socket and a gzip bomb is inflated piece by piece (the caller
  counts the bytes: ``HTTPResponse.read``);
- **errors** are aiohttp's exception types (``ClientPayloadError``,
  ``ServerDisconnectedError``, ``ClientOSError``) or ours, so
  ``errors.map_client_error`` is still the one mapping;
- **pooling**: idle connections per origin (scheme, host, port), most
  recently used first, closed after ``keepalive_timeout`` by one sweeping
  timer; ``limit`` / ``limit_per_host`` bound the connections in use (a
  request past them waits, within its own deadline), as aiohttp's
  ``TCPConnector`` does;
- **reuse**: a connection goes back to the pool only once its answer has
  been received whole and neither side said ``Connection: close``; an
  answer abandoned half-read (``close()``) closes its connection;
- **stale connections**: a pooled connection the server closed just as a
  request went out is retried once on a fresh one for GET only (RFC 9112
  §9.3.1, as aiohttp); a POST fails as ``ServerDisconnectedError`` and the
  plan's retry decides.
- **headers**: ``Host``, ``Content-Length``, ``Accept-Encoding: gzip,
  deflate`` and ``User-Agent: llmproxy`` unless the request has its own; a
  name or value with CR, LF or NUL is refused (no header injection from a
  config value or a forwarded header).

No proxy (``HTTP_PROXY``) support, as before (aiohttp's ``trust_env`` was off).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from typing import Any, NamedTuple, cast
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpResponseParser
from aiohttp.streams import StreamReader

from ..errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from .deadlines import Deadline
from .errors import describe, too_large

READ_BUFSIZE = 2**16  # aiohttp's DEFAULT_CHUNK_SIZE: the StreamReader's flow-control mark
MAX_LINE = 8190  # aiohttp client's defaults
MAX_FIELD = 8190
MAX_HEADERS = 128
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_DEFAULTS = (("accept-encoding", b"Accept-Encoding: gzip, deflate\r\n"), ("user-agent", b"User-Agent: llmproxy\r\n"),
             ("accept", b"Accept: */*\r\n"))


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


class Target(NamedTuple):
    """A URL as this client sends it, worked out once per URL string."""

    origin: Origin
    start: bytes  # "POST " is prepended: b"/v1/chat/completions?x=1 HTTP/1.1\r\n"
    host: str  # the Host header's value
    authorization: str | None  # from user:password@ in the URL


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    netloc = parts.netloc.rpartition("@")[2]
    default = (scheme, port) in (("http", 80), ("https", 443))
    host_header = netloc if not default or ":" not in netloc.rpartition("]")[2] else netloc.rsplit(":", 1)[0]
    auth = None
    if parts.username is not None:
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(creds.encode()).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(Origin(scheme, host, port), f" {target} HTTP/1.1\r\n".encode(), host_header, auth)


def request_head(method: str, target: Target, headers: Mapping[str, str], body_len: int) -> bytes:
    """The request line and headers, ready for the socket."""
    key = (method, target, *headers.items())
    start = _heads.get(key)
    if start is None:
        start = _head_start(method, target, headers)
        if len(_heads) >= _HEADS_MAX:
            _heads.clear()
        _heads[key] = start
    return start + b"Content-Length: %d\r\n\r\n" % body_len


# A deployment sends the same method, target and headers on every request
# (a signature or a traceparent aside): their block is built and checked once.
_HEADS_MAX = 512
_heads: dict[tuple[Any, ...], bytes] = {}


def _head_start(method: str, target: Target, headers: Mapping[str, str]) -> bytes:
    block = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    n = len(headers)
    if block.count("\n") != n or block.count("\r") != n or "\0" in block:
        raise UpstreamUnreachable("refusing to send a header with CR, LF or NUL in its name or value")
    names = {k.lower() for k in headers}
    head = [method.encode(), target.start]
    if "host" not in names:
        head.append(f"Host: {target.host}\r\n".encode())
    if target.authorization is not None and "authorization" not in names:
        head.append(f"Authorization: {target.authorization}\r\n".encode())
    head.append(block.encode())
    for name, line in _DEFAULTS:
        if name not in names:
            head.append(line)
    return b"".join(head)


OUT, IDLE, GONE = 0, 1, 2


class _Stale(Exception):
    """A reused connection closed before any byte of the answer (GET: retried once)."""


class Connection(BaseProtocol):
    """One keep-alive connection: a request at a time, answers parsed as they come."""

    __slots__ = ("pool", "origin", "waiter", "payload", "served", "got_bytes", "closing", "idle_since",
                 "_keep_alive", "place")

    def __init__(self, pool: ConnectionPool, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.pool = pool
        self.origin = origin
        self._parser = HttpResponseParser(
            self, loop, READ_BUFSIZE, payload_exception=aiohttp.ClientPayloadError, response_with_body=True,
            read_until_eof=True, auto_decompress=True, max_line_size=MAX_LINE, max_field_size=MAX_FIELD,
            max_headers=MAX_HEADERS,
        )
        self.waiter: asyncio.Future[tuple[Any, StreamReader]] | None = None
        self.payload: StreamReader | None = None  # the answer's body while it is being received
        self.served = 0  # answers received whole on this connection
        self.got_bytes = False  # of the current answer
        self.closing = False
        self.idle_since = 0.0
        self._keep_alive = True
        self.place = OUT  # in the pool's books: OUT (lent or opening), IDLE, GONE

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: a request is one write
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        if data:
            if self.waiter is None and self.payload is None:
                # Bytes nobody asked for: the stream is out of step; never reuse it.
                self.abort()
                return
            self.got_bytes = True
        parser = self._parser
        if parser is None:
            return
        try:
            messages, _, _ = parser.feed_data(data)
        except BaseException as exc:
            self.abort()
            if not isinstance(exc, Exception):
                raise
            self._fail(UpstreamProtocolError(f"upstream sent a malformed HTTP response: {describe(exc)}"[:500]))
            return
        for message, payload in messages:
            if 100 <= message.code < 200:
                continue  # 100 Continue, 103 Early Hints: the answer is still to come
            waiter, self.waiter = self.waiter, None
            if waiter is None:  # a second answer to one request
                self.abort()
                return
            if message.should_close:
                self._keep_alive = False
            self.payload = payload
            if not waiter.done():
                waiter.set_result((message, payload))
            payload.on_eof(self._answered)

    def eof_received(self) -> bool | None:
        return None  # close: a half-closed upstream connection is of no further use

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closing = True
        parser, self._parser = self._parser, None
        payload = self.payload
        if parser is not None:
            try:
                parser.feed_eof()  # ends a body that runs to the close; complains about a cut one
            except Exception as cut:
                if payload is not None:
                    payload.set_exception(aiohttp.ClientPayloadError(
                        f"Response payload is not completed: {cut!r}"))
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            if self.served and not self.got_bytes:
                waiter.set_exception(_Stale())
            elif isinstance(exc, OSError):
                waiter.set_exception(aiohttp.ClientOSError(*exc.args))
            else:
                waiter.set_exception(aiohttp.ServerDisconnectedError())
        self.pool.lost(self)
        super().connection_lost(exc)

    # -- ours

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        elif self.payload is not None:
            self.payload.set_exception(exc)

    def _answered(self) -> None:
        """The answer's body was received whole (its payload's EOF)."""
        self.payload = None
        if self.closing:
            return
        self.served += 1
        if self._keep_alive:
            self.pool.release(self)
        else:
            self.abort()

    def send(self, head: bytes, body: bytes) -> asyncio.Future[tuple[Any, StreamReader]]:
        assert self.transport is not None
        waiter = self.waiter = self._loop.create_future()
        self.got_bytes = False
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        return waiter

    def abort(self) -> None:
        """Close now, whatever is under way (an answer abandoned, a protocol error)."""
        if not self.closing:
            self.closing = True
            if self.transport is not None:
                self.transport.abort()
            self.pool.lost(self)


class HTTPResponse:
    """An upstream answer, its body still arriving, behind our deadline and error mapping."""

    __slots__ = ("_conn", "_payload", "deadline", "_max", "status", "headers")

    def __init__(self, conn: Connection, message: Any, payload: StreamReader, deadline: Deadline,
                 max_size: int) -> None:
        self._conn = conn
        self._payload = payload
        self.deadline = deadline
        self._max = max_size
        self.status: int = message.code
        self.headers: Mapping[str, str] = message.headers

    async def read(self) -> bytes:
        """The whole body, at most ``max_size`` bytes after decompression.

        Read piece by piece so the count stops a body (or a gzip bomb: the
        parser inflates under back-pressure) at the limit, never in memory whole.
        """
        deadline = self.deadline
        limit = self._max
        try:
            with deadline:
                declared = self.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise too_large(f"declares Content-Length {declared}, above", limit)
                payload = self._payload
                pieces: list[bytes] = []
                size = 0
                while piece := await payload.readany():
                    size += len(piece)
                    if size > limit:
                        raise too_large("is larger than", limit)
                    pieces.append(piece)
                data = b"".join(pieces)
        finally:
            deadline.cancel()
        return data

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        deadline = self.deadline
        payload = self._payload
        try:
            with deadline:
                while True:
                    data = await payload.readany()
                    if not data:
                        return
                    deadline.touch()
                    yield data
        finally:
            deadline.cancel()

    def complete(self) -> bool:
        return self._payload.at_eof()

    def close(self) -> None:
        self.deadline.cancel()
        # An answer not received whole leaves its connection mid-stream: close
        # it. One received whole went back to the pool on its own (_answered).
        if not self._payload.is_eof():
            self._conn.abort()


class _HostSlots:
    __slots__ = ("idle", "in_use")

    def __init__(self) -> None:
        self.idle: list[Connection] = []  # most recently used last
        self.in_use = 0  # connections lent out or being opened


class ConnectionPool:
    def __init__(self, *, limit: int, limit_per_host: int, keepalive_timeout: float,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.limit = limit
        self.limit_per_host = limit_per_host
        self.keepalive_timeout = keepalive_timeout
        self.ssl_context = ssl_context  # made in start() (loading the CA store blocks)
        self._hosts: dict[Origin, _HostSlots] = {}
        self._in_use = 0
        self._waiters: deque[tuple[_HostSlots, asyncio.Future[None]]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._targets: dict[str, Target] = {}
        self.closed = False

    def target(self, url: str) -> Target:
        t = self._targets.get(url)
        if t is None:
            if len(self._targets) >= 4096:  # deployment URLs repeat; bounded all the same
                self._targets.clear()
            t = self._targets[url] = parse_target(url)
        return t

    # -- sending

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                      deadline: Deadline, connect_timeout: float, max_size: int) -> HTTPResponse:
        """Send one request; returns once the answer's head arrived."""
        target = self.target(url)
        head = request_head(method, target, headers, len(body))
        for attempt in (0, 1):
            conn = await self._acquire(target.origin, connect_timeout, fresh=attempt > 0)
            waiter = conn.send(head, body)
            try:
                message, payload = await waiter
            except _Stale:
                if method in IDEMPOTENT and attempt == 0:
                    continue
                raise aiohttp.ServerDisconnectedError() from None
            except BaseException:
                conn.abort()  # mid-answer: never reusable
                raise
            return HTTPResponse(conn, message, payload, deadline, max_size)
        raise AssertionError("unreachable")

    # -- the pool

    def _room(self, slots: _HostSlots) -> bool:
        return (not self.limit or self._in_use < self.limit) and (
            not self.limit_per_host or slots.in_use < self.limit_per_host)

    async def _acquire(self, origin: Origin, connect_timeout: float, *, fresh: bool) -> Connection:
        if self.closed:
            raise aiohttp.ClientConnectionError("the upstream client is closed")
        slots = self._hosts.get(origin)
        if slots is None:
            slots = self._hosts[origin] = _HostSlots()
        while not self._room(slots):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((slots, fut))
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self._wake()  # woken for a slot this request will not take: pass it on
                raise
        idle = slots.idle
        while idle and not fresh:
            conn = idle.pop()
            if not conn.closing:
                conn.place = OUT
                slots.in_use += 1
                self._in_use += 1
                return conn
            conn.place = GONE
        slots.in_use += 1
        self._in_use += 1
        conn = Connection(self, origin, asyncio.get_running_loop())
        try:
            await self._connect(conn, connect_timeout)
        except BaseException:
            self.lost(conn)  # its slot back (once, whether or not the transport was made)
            if conn.transport is not None:
                conn.transport.abort()
            raise
        if conn.closing:  # lost before we got it (connection_lost gave the slot back)
            raise aiohttp.ServerDisconnectedError()
        return conn

    async def _connect(self, conn: Connection, connect_timeout: float) -> None:
        origin = conn.origin
        tls = origin.scheme == "https"
        try:
            async with asyncio.timeout(connect_timeout):
                await conn._loop.create_connection(
                    lambda: conn, origin.host, origin.port,
                    ssl=(self.ssl_context or True) if tls else None,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError:  # before OSError: a TimeoutError is one
            raise UpstreamTimeout(f"upstream timed out connecting to {origin.host}:{origin.port} "
                                  f"(timeouts.connect {connect_timeout:g}s)") from None
        except ssl.SSLError as exc:
            raise UpstreamUnreachable(
                f"cannot connect to upstream {origin.host}:{origin.port}: TLS: {exc.reason or exc}") from None
        except OSError as exc:
            raise UpstreamUnreachable(
                f"cannot connect to upstream {origin.host}:{origin.port}: {exc.strerror or exc}") from None

    def release(self, conn: Connection) -> None:
        """An answer received whole: the connection may serve another request."""
        if conn.place != OUT:
            return
        if self.closed:
            conn.abort()
            return
        slots = self._hosts[conn.origin]
        slots.in_use -= 1
        self._in_use -= 1
        conn.place = IDLE
        conn.idle_since = conn._loop.time()
        slots.idle.append(conn)
        if self._sweep is None:
            self._sweep = conn._loop.call_later(self.keepalive_timeout, self._expire, conn._loop)
        self._wake()

    def lost(self, conn: Connection) -> None:
        """Closed (by either side): forget it, and its slot if it was lent out."""
        place, conn.place = conn.place, GONE
        if place == GONE:
            return
        slots = self._hosts[conn.origin]
        if place == IDLE:
            slots.idle.remove(conn)
        else:  # lent out (or opening): its slot comes back
            slots.in_use -= 1
            self._in_use -= 1
            self._wake()

    def _wake(self) -> None:
        """Let the first waiter that now has room try again."""
        waiters = self._waiters
        for i, (slots, fut) in enumerate(waiters):
            if fut.done():
                continue
            if self._room(slots):
                del waiters[i]
                fut.set_result(None)
                break
        while waiters and waiters[0][1].done():
            waiters.popleft()

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        cutoff = loop.time() - self.keepalive_timeout
        left = False
        for origin, slots in list(self._hosts.items()):
            stale = [c for c in slots.idle if c.idle_since <= cutoff]
            for conn in stale:
                conn.abort()
            left = left or bool(slots.idle)
            if not slots.idle and not slots.in_use:
                del self._hosts[origin]
        if left:
            self._sweep = loop.call_later(self.keepalive_timeout / 2, self._expire, loop)

    def idle_count(self) -> int:
        return sum(len(s.idle) for s in self._hosts.values())

    def close(self) -> None:
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for slots in self._hosts.values():
            for conn in list(slots.idle):
                conn.abort()
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(aiohttp.ClientConnectionError("the upstream client is closed"))
        self._waiters.clear()

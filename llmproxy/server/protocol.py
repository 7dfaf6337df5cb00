"""The HTTP connection, below the app: client time bounds and framing errors.

aiohttp (3.14) offers a keep-alive timeout but nothing for a slow request
head, and renders the errors its parser raises (Content-Length with
Transfer-Encoding, an oversized line, too many headers) as text/plain before
any middleware runs (aio-libs/aiohttp#3287 is open). So the proxy runs its
own ``RequestHandler`` subclass, made by its own ``Server`` and runner:

- ``server.header_timeout`` bounds the whole head, from the connection's start
  or from the first byte after the previous request's body; past it the
  connection is closed without an answer (nginx's client_header_timeout).
- ``server.keepalive_timeout`` is aiohttp's own idle timer, set per connection.
- a body-read timeout (``server.body_timeout``) lives in
  ``server.handlers.common.read_json``; its 408 closes the connection at once instead
  of lingering on a client that sends nothing.
- parser errors answer in the OpenAI error shape, logged at debug (one line
  per malformed request from the internet is not an operator's problem).

The timeouts come from the live config when a connection opens, so a reload
applies to new connections. Both ``serve()`` and the tests' server use
``ProxyRunner``, so both get all of this.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..config.tree import ServerConfig
from ..errors import ProxyError
from .runtime import PROXY

log = logging.getLogger("llmproxy")

_QUOTED = re.compile(r"(^|\s)b['\"].*")
_REASONS = {
    400: "malformed HTTP request",
    413: "request line or header too large",
    431: "request headers too large or too many",
}


class HeadWatch:
    """One sweeping timer for the request heads of every connection of a server.

    A timer per request head (armed, then cancelled a moment later when the
    head is parsed) is a measurable share of a request's CPU; instead a
    connection whose head is under way sits in a dict with its deadline,
    which one timer sweeps every ``resolution`` seconds while it is not
    empty. A head timeout therefore fires up to ``resolution`` late.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = 0.25) -> None:
        self.resolution = resolution
        self._loop = loop
        self._pending: dict[ProxyProtocol, float] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(self, proto: ProxyProtocol, timeout: float) -> None:
        self._pending[proto] = self._loop.time() + timeout
        if self._handle is None:
            self._handle = self._loop.call_later(self.resolution, self._sweep)

    def discard(self, proto: ProxyProtocol) -> None:
        self._pending.pop(proto, None)

    def _sweep(self) -> None:
        now = self._loop.time()
        pending = self._pending
        for proto in [p for p, due in pending.items() if now >= due]:
            del pending[proto]
            proto.head_timed_out()
        self._handle = self._loop.call_later(self.resolution, self._sweep) if pending else None


class ProxyProtocol(RequestHandler):
    """One client connection; aiohttp's parser and loop, plus a head deadline."""

    __slots__ = ("_head_timeout", "_heads", "_head_pending", "_body_pending")

    def __init__(self, manager: web.Server, *, header_timeout: float, heads: HeadWatch, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = header_timeout
        self._heads = heads
        self._head_pending = False
        # The body of the last head parsed, while it is still arriving: bytes
        # then are body bytes, not the start of a new head.
        self._body_pending: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        pending = self._body_pending
        # aiohttp calls this with b"" to reparse when it resumes reading.
        if data and not self._head_pending and (pending is None or pending.is_eof()):
            self._arm_head_timer()  # these bytes start a new head
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:
            self._disarm_head_timer()
            # aiohttp queues each parsed (message, body) here until start() takes it.
            self._body_pending = self._messages[-1][1] if self._messages else None

    def _arm_head_timer(self) -> None:
        if self._head_timeout > 0 and self.transport is not None:
            self._head_pending = True
            self._heads.add(self, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_pending:
            self._head_pending = False
            self._heads.discard(self)

    def head_timed_out(self) -> None:
        """From the ``HeadWatch``: this connection's head is late."""
        self._head_pending = False
        log.debug("closing a connection: request head not complete within %gs (server.header_timeout)",
                  self._head_timeout)
        if self._request_in_progress:
            self.close()  # a pipelined head is late: finish the answer in progress, then close
        else:
            self.force_close()

    def close_after_answer(self) -> None:
        """The body stalled (a 408 that closes the connection): aiohttp would
        linger up to 10 s reading the rest of it. Nothing is unread in our
        buffer, so closing once the answer is out sends FIN, not a reset."""
        self._lingering_time = 0.0

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's parser errors (and its last-resort 500/504) as OpenAI errors."""
        # aiohttp's message quotes the offending bytes (a header's value, a
        # token): only the words before the quote are kept.
        lines = (message or str(exc or "")).splitlines()
        detail = _QUOTED.sub("", lines[0] if lines else "")[:200].rstrip(" :.")
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.debug("malformed request from %s: %s", request.remote, detail)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        if status < 500:
            text = _REASONS.get(status, "malformed HTTP request")
            err = ProxyError(f"{text}: {detail}" if detail else text, status=status,
                             type="invalid_request_error", code="bad_http_request")
        else:
            err = ProxyError("internal error in llmproxy; see its logs", status=status)
        resp = web.Response(body=err.to_json(), status=status, content_type="application/json")
        resp.force_close()
        return resp


class ProxyRequest(web.Request):
    """aiohttp's request with ``get`` as one dict lookup. The request path asks
    its per-request state (observation, caller, ticket, request id, CORS
    origin) about a dozen times per request, and the ``Mapping.get`` it
    inherits costs two Python frames per ask."""

    __slots__ = ()

    def get(self, key: Any, default: Any = None) -> Any:
        return self._state.get(key, default)


class ProxyServer(web.Server):
    """aiohttp's connection manager, making ``ProxyProtocol`` connections."""

    def __init__(self, handler: Any, *, settings: Callable[[], ServerConfig], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._settings = settings
        self._heads = HeadWatch(self._loop)
        self._protocol_kwargs = {
            k: v for k, v in kwargs.items() if k not in ("request_factory", "handler_cancellation", "loop")
        }

    def __call__(self) -> ProxyProtocol:
        s = self._settings()
        return ProxyProtocol(
            self, loop=self._loop, keepalive_timeout=s.keepalive_timeout,
            header_timeout=s.header_timeout, heads=self._heads, **self._protocol_kwargs,
        )


class ProxyRunner(web.AppRunner):
    """``web.AppRunner`` for the proxy app: same lifecycle, ``ProxyServer`` connections."""

    async def _make_server(self) -> web.Server:
        # The app's start-up and freeze happen here, as in AppRunner; the
        # plain Server it builds hands over its handler. Requests are the
        # app's own (client_max_size and all), as ProxyRequest.
        plain = await super()._make_server()
        app = self.app
        return ProxyServer(
            plain.request_handler, request_factory=functools.partial(app._make_request, _cls=ProxyRequest),
            loop=asyncio.get_running_loop(), settings=lambda: app[PROXY].runtime.config.server,
            **self._kwargs,
        )

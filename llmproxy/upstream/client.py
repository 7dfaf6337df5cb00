"""The outbound client: ``Upstream`` owns the pooled sessions (opened in
``start()``, closed in ``close()``, from the app's cleanup_ctx).

``Upstream.open()`` sends an ``UpstreamRequest`` and returns an
``UpstreamResponse`` (the seam: ``HTTPResponse`` over a socket,
``MockTransport`` in process) whose body is read whole (``read``, bounded by
``limits.max_response_size`` after decompression) or as it arrives
(``chunks``). Errors are mapped by ``with deadline:`` (``errors.UpstreamErrors``); timeouts are
one ``Deadline`` per request (``deadlines.py``). Image URLs are fetched by
``images`` on their own pooled sessions (``images.py``: SSRF rules).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from datetime import datetime, timezone
from typing import Protocol

import aiohttp
from yarl import URL

from ..config.tree import DeploymentConfig, UpstreamPoolConfig
from ..providers.base import UpstreamRequest
from .deadlines import Deadline, Deadlines
from .documents import fetch_document
from .errors import too_large
from .images import ImageFetcher
from .mock import MOCK_SCHEME, MockTransport


class UpstreamResponse(Protocol):
    status: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncGenerator[bytes, None]: ...

    def close(self) -> None: ...

    @property
    def deadline(self) -> Deadline:
        """Its timeouts; ``with resp.deadline:`` maps a CancelledError it caused (errors.py)."""


class HTTPResponse:
    """An aiohttp response behind our deadline and error mapping."""

    __slots__ = ("_resp", "deadline", "_max", "status", "headers")

    def __init__(self, resp: aiohttp.ClientResponse, deadline: Deadline, max_size: int) -> None:
        self._resp = resp
        self.deadline = deadline
        self._max = max_size
        self.status = resp.status
        self.headers = resp.headers

    async def read(self) -> bytes:
        """The whole body, at most ``max_size`` bytes after decompression.

        Read piece by piece rather than with ``ClientResponse.read()`` so
        the count stops a body (or a gzip bomb: aiohttp inflates in
        ``content`` under back-pressure) at the limit, never in memory whole.
        """
        deadline = self.deadline
        limit = self._max
        try:
            with deadline:
                declared = self._resp.content_length
                if declared is not None and declared > limit:
                    raise too_large(f"declares Content-Length {declared}, above", limit)
                content = self._resp.content
                pieces: list[bytes] = []
                size = 0
                while piece := await content.readany():
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
        content = self._resp.content
        try:
            with deadline:
                while True:
                    data = await content.readany()
                    if not data:
                        return
                    deadline.touch()
                    yield data
        finally:
            deadline.cancel()

    def close(self) -> None:
        self.deadline.cancel()
        # close(), not release(): an unread body means the connection is
        # mid-answer and must not go back to the pool. After a full read
        # aiohttp has already returned the connection, so close() is a no-op.
        self._resp.close()


class Upstream:
    """Owns the process-wide pooled sessions (opened in cleanup_ctx): the
    one for deployments, and the image fetcher's."""

    def __init__(self, pool: UpstreamPoolConfig) -> None:
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None
        self.images = ImageFetcher(pool)
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
        self.images.start()

    async def close(self) -> None:
        self.deadlines.close()
        await self.images.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch_document(self, url: str, *, max_bytes: int, timeout: float,
                             accept: str = "application/json") -> bytes:
        """GET a small document the proxy needs (a JWKS): bounded in size and
        time, no redirects; raises ``documents.FetchError``."""
        session = self._session
        assert session is not None, "Upstream.start() was not called"
        return await fetch_document(session, url, max_bytes=max_bytes, timeout=timeout, accept=accept)

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
        if req.url.startswith(MOCK_SCHEME):
            return MockTransport(dep, req, deadline)
        session = self._session
        assert session is not None, "Upstream.start() was not called"
        headers = req.headers
        if req.aws_sigv4 is not None:  # signed here: the clock lives on the I/O side
            now = datetime.now(timezone.utc)
            headers = {**headers, **req.aws_sigv4.sign(req.method, req.url, headers, req.body, now)}
        try:
            with deadline:
                resp = await session.request(
                    req.method,
                    self._url(req.url),
                    data=req.body,
                    headers=headers,
                    timeout=self._connect_timeout(dep.timeouts.connect),
                    allow_redirects=False,
                )
        except BaseException:
            deadline.cancel()
            raise
        return HTTPResponse(resp, deadline, dep.provider.limits.max_response_size)

    def _connect_timeout(self, connect: float) -> aiohttp.ClientTimeout:
        t = self._client_timeouts.get(connect)
        if t is None:
            t = self._client_timeouts[connect] = aiohttp.ClientTimeout(
                total=None, sock_connect=connect, connect=None
            )
        return t

"""The outbound client: ``Upstream`` owns the connection pools (opened in
``start()``, closed in ``close()``, from the app's cleanup_ctx).

``Upstream.open()`` sends an ``UpstreamRequest`` and returns an
``UpstreamResponse`` (the seam: ``http1.HTTPResponse`` over a pooled
keep-alive connection, ``MockTransport`` in process) whose body is read whole
(``read``, bounded by ``limits.max_response_size`` after decompression) or as
it arrives (``chunks``). Errors are mapped by ``with deadline:`` (``errors.UpstreamErrors``); timeouts are
one ``Deadline`` per request (``deadlines.py``). Image URLs are fetched by
``images`` on their own pooled sessions (``images.py``: SSRF rules).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from datetime import datetime, timezone
from typing import Protocol

import asyncio
import ssl

import aiohttp

from ..config.tree import DeploymentConfig, UpstreamPoolConfig
from ..providers.base import UpstreamRequest
from .deadlines import Deadline, Deadlines
from .documents import fetch_document
from .http1 import ConnectionPool, HTTPResponse
from .images import ImageFetcher
from .mock import MOCK_SCHEME, MockTransport


class UpstreamResponse(Protocol):
    status: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncGenerator[bytes, None]: ...

    def complete(self) -> bool:
        """The whole body is here and ``chunks`` has handed all of it out
        (so its next read ends at once; False when that is not known)."""

    def close(self) -> None: ...

    @property
    def deadline(self) -> Deadline:
        """Its timeouts; ``with resp.deadline:`` maps a CancelledError it caused (errors.py)."""


class Upstream:
    """Owns the process-wide pools (opened in cleanup_ctx): the deployments'
    connections (``http1``), an aiohttp session for the documents the proxy
    fetches itself, and the image fetcher's."""

    def __init__(self, pool: UpstreamPoolConfig) -> None:
        self._pool_config = pool
        self.pool = ConnectionPool(limit=pool.limit, limit_per_host=pool.limit_per_host,
                                   keepalive_timeout=pool.keepalive_timeout)
        self._session: aiohttp.ClientSession | None = None
        self.images = ImageFetcher(pool)
        self.deadlines = Deadlines()

    async def start(self) -> None:
        # Loading the system's CA store blocks for milliseconds: not on the loop.
        self.pool.ssl_context = await asyncio.to_thread(ssl.create_default_context)
        pool = self._pool_config
        connector = aiohttp.TCPConnector(
            limit=pool.limit,
            limit_per_host=pool.limit_per_host,
            keepalive_timeout=pool.keepalive_timeout,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",),
            headers={"User-Agent": "llmproxy"},
        )
        self.images.start()

    async def close(self) -> None:
        self.deadlines.close()
        self.pool.close()
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

    async def open(self, dep: DeploymentConfig, req: UpstreamRequest) -> UpstreamResponse:
        """Send ``req``; returns once the response headers arrived."""
        deadline = self.deadlines.start(dep.timeouts)
        if req.url.startswith(MOCK_SCHEME):
            return MockTransport(dep, req, deadline)
        headers = req.headers
        if req.aws_sigv4 is not None:  # signed here: the clock lives on the I/O side
            now = datetime.now(timezone.utc)
            headers = {**headers, **req.aws_sigv4.sign(req.method, req.url, headers, req.body, now)}
        try:
            with deadline:
                return await self.pool.request(req.method, req.url, headers, req.body, deadline,
                                               dep.timeouts.connect, dep.provider.limits.max_response_size)
        except BaseException:
            deadline.cancel()
            raise

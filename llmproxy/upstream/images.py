"""Downloading image URLs for providers that take only inline images (Gemini, Vertex).

Part of the outbound seam: ``Upstream`` owns an ``ImageFetcher`` whose two
pooled sessions (one whose resolver admits only public addresses, one for
providers with ``image_url_allow_private: true``; kept apart so a connection
opened under the looser rule is never reused under the strict one) open in
``Upstream.start()`` and close in ``Upstream.close()``. A sidecar that fetches any URL
a request names is a server-side request forgery (SSRF) risk, so it is off
unless a provider sets ``allow_image_urls: true``, and then:

- only ``http``/``https``; at most ``_MAX_REDIRECTS`` redirects, each one
  checked again;
- addresses that are not public (loopback, private, link-local such as the
  cloud metadata service 169.254.169.254, reserved, multicast) are refused,
  after DNS resolution (the connector connects only to checked addresses, so
  DNS rebinding cannot slip through), unless ``image_url_allow_private: true``;
- the body is capped at ``image_url_max_bytes`` (default 5 MiB) and must be
  an ``image/*`` type;
- each fetch has ``_TIMEOUT`` seconds in all; one client request fetches at
  most ``_PER_REQUEST`` URLs at once.

Any failure is the client's 400 (its URL could not be used), naming the URL.
Adapters stay pure: a provider's spec lists the URLs it needs (``image_urls_to_fetch``),
``RemoteImages.inline`` fetches them once per client request (a retry on
another deployment reuses them) and hands the adapter a body whose image URLs
are data URLs (``inline_image_urls``, pure).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from ..config.tree import DeploymentConfig, UpstreamPoolConfig
from ..errors import InvalidRequest
from ..providers.registry import spec_for

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
_MAX_REDIRECTS = 3
_TIMEOUT = 20.0
_PER_REQUEST = 8


def urls_to_fetch(dep: DeploymentConfig, body: Mapping[str, Any]) -> list[str]:
    """The image URLs ``dep``'s provider wants inlined before ``chat_request`` (none for most)."""
    wanted = spec_for(dep.provider.type).image_urls_to_fetch
    return wanted(dep, body) if wanted is not None else []


class RemoteImages:
    """Per client request: image URL → data URL, fetched at most once."""

    __slots__ = ("_fetcher", "_fetched")

    def __init__(self, fetcher: ImageFetcher) -> None:
        self._fetcher = fetcher
        self._fetched: dict[str, str] = {}

    async def inline(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> Mapping[str, Any]:
        urls = urls_to_fetch(dep, body)
        if not urls:
            return body
        missing = [u for u in urls if u not in self._fetched]
        if missing:
            opts = dep.provider.options
            results = await self._fetcher.fetch(
                missing,
                max_bytes=opts.get("image_url_max_bytes") or DEFAULT_MAX_BYTES,
                allow_private=bool(opts.get("image_url_allow_private")),
                connect_timeout=dep.timeouts.connect,
            )
            self._fetched.update(results)
        return inline_image_urls(body, self._fetched)


def inline_image_urls(body: Mapping[str, Any], data_urls: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``body`` whose user image URLs found in ``data_urls`` are replaced (pure)."""
    messages = []
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) and m.get("role") == "user" else None
        if isinstance(content, list):
            parts = [_inline_part(p, data_urls) for p in content]
            m = {**m, "content": parts}
        messages.append(m)
    return {**body, "messages": messages}


def _inline_part(part: Any, data_urls: Mapping[str, str]) -> Any:
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return part
    ref = part.get("image_url")
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str) or url not in data_urls:
        return part
    new_ref = {**ref, "url": data_urls[url]} if isinstance(ref, dict) else {"url": data_urls[url]}
    return {**part, "image_url": new_ref}


class ImageFetcher:
    """The pooled sessions image URLs are fetched on (owned by ``Upstream``)."""

    def __init__(self, pool: UpstreamPoolConfig) -> None:
        self._pool = pool
        self._sessions: dict[bool, aiohttp.ClientSession] = {}  # by allow_private
        self._resolvers: list[_CheckedResolver] = []  # ours to close: a connector closes only its own
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def start(self) -> None:
        for allow_private in (False, True):
            resolver = _CheckedResolver(allow_private)
            self._resolvers.append(resolver)
            connector = aiohttp.TCPConnector(
                resolver=resolver,
                limit=self._pool.limit,
                limit_per_host=self._pool.limit_per_host,
                keepalive_timeout=self._pool.keepalive_timeout,
            )
            self._sessions[allow_private] = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=_TIMEOUT),
                skip_auto_headers=("User-Agent",), headers={"User-Agent": "llmproxy", "Accept": "image/*"},
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        resolvers, self._resolvers = self._resolvers, []
        for session in sessions.values():
            await session.close()
        for resolver in resolvers:
            await resolver.close()

    async def fetch(
        self, urls: list[str], *, max_bytes: int, allow_private: bool = False, connect_timeout: float = 5.0
    ) -> dict[str, str]:
        """Fetch every URL (concurrently) → {url: data URL}; the first failure raises."""
        session = self._sessions.get(allow_private)
        assert session is not None, "Upstream.start() was not called"
        timeout = self._timeouts.get(connect_timeout)
        if timeout is None:
            timeout = self._timeouts[connect_timeout] = aiohttp.ClientTimeout(
                total=_TIMEOUT, sock_connect=connect_timeout
            )
        gate = asyncio.Semaphore(_PER_REQUEST)

        async def one(url: str) -> str:
            async with gate:
                return await _fetch(session, url, timeout, max_bytes, allow_private)

        results = await asyncio.gather(*(one(u) for u in urls), return_exceptions=True)
        return _collect(urls, results)


def _collect(urls: list[str], results: list[str | BaseException]) -> dict[str, str]:
    out: dict[str, str] = {}
    for url, result in zip(urls, results):
        if isinstance(result, BaseException):
            if isinstance(result, InvalidRequest):
                raise result
            raise _refuse(url, _describe(result)) from None
        out[url] = result
    return out


async def _fetch(
    session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout, max_bytes: int, allow_private: bool
) -> str:
    target = url
    for _ in range(_MAX_REDIRECTS + 1):
        parsed = URL(target)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise _refuse(url, "only http and https URLs can be fetched")
        _check_literal(url, parsed.host, allow_private)
        async with session.get(URL(target), allow_redirects=False, timeout=timeout) as resp:
            if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                target = str(parsed.join(URL(resp.headers["Location"])))
                continue
            if resp.status != 200:
                raise _refuse(url, f"the server answered HTTP {resp.status}")
            mime = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if not mime.startswith("image/"):
                raise _refuse(url, f"it is not an image (Content-Type {mime or 'none'!r})")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise _refuse(url, f"it is {resp.content_length} bytes; the limit is {max_bytes} (image_url_max_bytes)")
            buf = bytearray()
            async for piece in resp.content.iter_chunked(65536):
                buf += piece
                if len(buf) > max_bytes:
                    raise _refuse(url, f"it is larger than the limit of {max_bytes} bytes (image_url_max_bytes)")
            return f"data:{mime};base64,{base64.b64encode(bytes(buf)).decode('ascii')}"
    raise _refuse(url, f"more than {_MAX_REDIRECTS} redirects")


def _refuse(url: str, reason: str) -> InvalidRequest:
    shown = url if len(url) <= 200 else url[:197] + "..."
    return InvalidRequest(f"cannot use image URL {shown}: {reason}", param="messages", code="image_url_fetch_failed")


_NON_PUBLIC = "it points to a non-public address (set image_url_allow_private to allow)"


class _NonPublicAddress(OSError):
    """Raised by the resolver; aiohttp wraps it in a ClientConnectorError."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, _NonPublicAddress):
        return _NON_PUBLIC
    if isinstance(exc, asyncio.TimeoutError):
        return f"no complete answer within {_TIMEOUT:g}s"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _check_literal(url: str, host: str, allow_private: bool) -> None:
    """IP-literal hosts skip the resolver, so they are checked here."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not allow_private and not _public(host.strip("[]")):
        raise _refuse(url, _NON_PUBLIC)


class _CheckedResolver(AbstractResolver):
    """Resolves names and keeps only public addresses (unless private ones are allowed)."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return infos
        kept = [i for i in infos if _public(i["host"])]
        if not kept:
            raise _NonPublicAddress(errno.EACCES, f"{host} resolves only to non-public addresses")
        return kept

    async def close(self) -> None:
        await self._inner.close()

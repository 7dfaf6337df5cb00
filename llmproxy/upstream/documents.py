"""Small documents the proxy itself needs from the network (a JWKS).

On ``Upstream``'s pooled session (``Upstream.fetch_document``), so they share
its connection limits and close with it. The URL comes from the operator's
config (not from a client), so the SSRF rules of image fetches do not apply;
the bounds do: one GET, no redirects followed (an identity provider's key
URL that moved is a config change), ``timeout`` seconds in all, at most
``max_bytes`` read (Content-Length checked first, then while reading).
aiohttp's errors go through the seam's one mapping (``errors.py``).
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from ..errors import UpstreamError, UpstreamTimeout
from .errors import UpstreamErrors


class FetchError(Exception):
    """A document could not be fetched; the message says why (no secrets:
    the URL is shown without userinfo)."""


class _Bounded(UpstreamErrors):
    """The one aiohttp-error mapping, for a fetch whose only deadline is
    aiohttp's total timeout: there is no cancellation of ours to claim."""

    __slots__ = ()

    def timed_out(self) -> UpstreamTimeout | None:
        return None


_MAPPING = _Bounded()


async def fetch_document(session: aiohttp.ClientSession, url: str, *, max_bytes: int, timeout: float,
                         accept: str) -> bytes:
    shown = _shown(url)
    try:
        with _MAPPING:
            return await _get(session, url, shown, max_bytes=max_bytes, timeout=timeout, accept=accept)
    except UpstreamTimeout:
        raise FetchError(f"{shown}: no complete answer within {timeout:g}s") from None
    except UpstreamError as exc:
        raise FetchError(f"{shown}: {str(exc).replace(url, shown)}") from None


async def _get(session: aiohttp.ClientSession, url: str, shown: str, *, max_bytes: int, timeout: float,
               accept: str) -> bytes:
    async with session.get(URL(url), allow_redirects=False, headers={"Accept": accept},
                           timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
        if resp.status != 200:
            raise FetchError(f"{shown} answered HTTP {resp.status}")
        if resp.content_length is not None and resp.content_length > max_bytes:
            raise FetchError(f"{shown} is {resp.content_length} bytes; the limit is {max_bytes}")
        buf = bytearray()
        async for piece in resp.content.iter_chunked(65536):
            buf += piece
            if len(buf) > max_bytes:
                raise FetchError(f"{shown} is larger than the limit of {max_bytes} bytes")
        return bytes(buf)


def _shown(url: str) -> str:
    from ..observe.redact import url_without_userinfo

    shown = url_without_userinfo(url)
    return shown if len(shown) <= 200 else shown[:197] + "..."

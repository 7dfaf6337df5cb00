"""Small documents the proxy itself needs from the network (a JWKS).

On ``Upstream``'s pooled session (``Upstream.fetch_document``), so they share
its connection limits and close with it. The URL comes from the operator's
config (not from a client), so the SSRF rules of image fetches do not apply;
the bounds do: one GET, no redirects followed (an identity provider's key
URL that moved is a config change), ``timeout`` seconds in all, at most
``max_bytes`` read (Content-Length checked first, then while reading).
"""

from __future__ import annotations

import aiohttp
from yarl import URL


class FetchError(Exception):
    """A document could not be fetched; the message says why (no secrets:
    the URL is shown without userinfo)."""


async def fetch_document(session: aiohttp.ClientSession, url: str, *, max_bytes: int, timeout: float,
                         accept: str) -> bytes:
    shown = _shown(url)
    try:
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
    except TimeoutError:
        raise FetchError(f"{shown}: no complete answer within {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        text = str(exc).replace(url, shown)
        raise FetchError(f"{shown}: {type(exc).__name__}" + (f": {text}" if text else "")) from None


def _shown(url: str) -> str:
    from ..observe.redact import url_without_userinfo

    shown = url_without_userinfo(url)
    return shown if len(shown) <= 200 else shown[:197] + "..."

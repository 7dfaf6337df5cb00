"""aiohttp's errors and our deadlines' cancellations become ours here, once.

    refused / reset / DNS / TLS   → UpstreamUnreachable (502)
    malformed HTTP, cut body      → UpstreamProtocolError (502)
    body past limits.max_response_size (inflated) → UpstreamTooLarge (502)
    connect / first byte / idle / total exceeded → UpstreamTimeout (504)

Every site that awaits upstream bytes (opening, reading, relaying, the mock
transport's sleeps, forward.py's relay loop) runs inside ``with deadline:``
(``UpstreamErrors``).
A deadline cancels the task wherever it is awaiting, a client write
included, so the mapping is needed wherever the task may be suspended, not
only around aiohttp calls.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import aiohttp

from ..errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnreachable,
)


class UpstreamErrors:
    """The one error mapping, as a context manager: inside ``with``, a
    ``CancelledError`` that ``timed_out()`` claims becomes its
    ``UpstreamTimeout`` (anyone else's cancellation passes through) and an
    aiohttp error becomes an ``UpstreamError``.

    A base class of ``Deadline`` (``with deadline:``) rather than a
    ``contextlib.contextmanager``: it wraps every upstream read, and entering
    it must cost no object (a generator-based manager costs a generator and
    two frames per entry).
    """

    __slots__ = ()

    def timed_out(self) -> UpstreamTimeout | None:
        raise NotImplementedError

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, asyncio.CancelledError):
            if (err := self.timed_out()) is not None:
                raise err from None
        elif isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError)):
            raise map_client_error(exc) from None


def map_client_error(exc: BaseException) -> UpstreamError:
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return UpstreamTimeout(f"upstream timed out connecting: {describe(exc)}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(f"cannot connect to upstream {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamProtocolError(f"upstream body was cut short or malformed: {describe(exc)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamUnreachable("upstream closed the connection without answering")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError(f"upstream sent a malformed HTTP response: {describe(exc)}")
    return UpstreamUnreachable(f"upstream connection failed: {describe(exc)}")


def too_large(what: str, limit: int) -> UpstreamTooLarge:
    return UpstreamTooLarge(f"upstream answer {what} the limit of {limit} bytes (limits.max_response_size)")


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

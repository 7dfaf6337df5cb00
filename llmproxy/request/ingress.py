"""How one client format rides the request path (``forward.py``).

An ``Ingress`` says, for one attempt, what to send (``request``), how to
write the provider's answer for the client (``answer``), how to translate
its stream (``stream``) and how a failure after the first byte reads
(``error_event``). OpenAI chat is the identity (``CHAT``): the adapter's own
output, no extra work on that path. ``request`` returning None means the
ingress answers this attempt itself without sending anything (``local``),
as count_tokens does for providers that cannot count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ..config.tree import DeploymentConfig
from ..errors import ProxyError
from ..providers.base import Adapter, CallContext, StreamTranslator, UpstreamRequest
from ..sse import encode_data

if TYPE_CHECKING:
    from .attempt import Attempt, Call


class Ingress(Protocol):
    async def request(self, call: Call, attempt: Attempt, adapter: Adapter, *,
                      stream: bool) -> UpstreamRequest | None: ...

    def local(self, dep: DeploymentConfig, ctx: CallContext) -> bytes: ...

    def answer(self, adapter: Adapter, dep: DeploymentConfig, data: bytes,
               ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]: ...

    def stream(self, adapter: Adapter, dep: DeploymentConfig, ctx: CallContext) -> StreamTranslator: ...

    def error_event(self, translator: StreamTranslator, exc: ProxyError) -> bytes:
        """The event that ends a stream failing after its first byte (``translator``: the stream's)."""


class ChatIngress:
    """OpenAI chat completions: what the adapters speak already."""

    async def request(self, call: Call, attempt: Attempt, adapter: Adapter, *,
                      stream: bool) -> UpstreamRequest | None:
        return await call.chat_request(attempt, adapter, stream=stream)

    def local(self, dep: DeploymentConfig, ctx: CallContext) -> bytes:
        raise AssertionError("the chat ingress always sends")

    def answer(self, adapter: Adapter, dep: DeploymentConfig, data: bytes,
               ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        return adapter.chat_response(dep, data, ctx)

    def stream(self, adapter: Adapter, dep: DeploymentConfig, ctx: CallContext) -> StreamTranslator:
        return adapter.chat_stream(dep, ctx)

    def error_event(self, translator: StreamTranslator, exc: ProxyError) -> bytes:
        return encode_data(orjson.dumps(exc.to_dict()))


CHAT: Ingress = ChatIngress()


class Translator(Protocol):
    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Chained:
    """The adapter's translator (provider → internal chunks) followed by an
    ingress's (internal chunks → the client's format); usage is the adapter's."""

    __slots__ = ("inner", "outer")

    def __init__(self, inner: StreamTranslator, outer: Translator) -> None:
        self.inner = inner
        self.outer = outer

    @property
    def usage(self) -> dict[str, Any] | None:
        return self.inner.usage

    @usage.setter
    def usage(self, value: dict[str, Any] | None) -> None:
        self.inner.usage = value

    def feed(self, data: bytes) -> bytes:
        piece = self.inner.feed(data)
        return self.outer.feed(piece) if piece else b""

    def finish(self) -> bytes:
        tail = self.inner.finish()
        out = self.outer.feed(tail) if tail else b""
        return out + self.outer.finish()

"""The contract every provider adapter keeps.

An adapter is a set of pure functions (rule 1 of DESIGN.md): it turns the
client's OpenAI request into an ``UpstreamRequest`` (URL, headers, body bytes),
and the provider's answer back into OpenAI bytes. It never opens a socket,
reads a clock or an environment variable: time, ids and credentials arrive in
``CallContext`` and the ``DeploymentConfig``. Adapters never mutate the dicts
they are given.

Streams are translated by a ``StreamTranslator``: ``feed(bytes)`` returns the
OpenAI SSE bytes those provider bytes complete (possibly ``b""``), and
``finish()`` returns the closing bytes or raises ``UpstreamProtocolError``
when the provider's stream ended before its end marker, so a cut stream is an
error the client sees, never a silent truncation.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, Protocol

import orjson

from ..config.tree import DeploymentConfig, NoOptions, ProviderOptions
from ..errors import UpstreamProtocolError, UpstreamStatusError
from .sigv4 import AwsSigning


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str  # already percent-encoded; sent byte for byte
    headers: Mapping[str, str]
    body: bytes
    method: str = "POST"
    # Set by adapters whose provider wants AWS SigV4 (Bedrock): upstream/client.py
    # signs the request with the real clock just before sending it.
    aws_sigv4: AwsSigning | None = None


class CallContext(NamedTuple):
    # A NamedTuple, not a frozen dataclass: built once per request, and a
    # frozen dataclass's __init__ costs several times more.
    public_model: str  # the name the client asked for
    request_id: str
    created: int  # unix seconds, from the caller's clock
    include_usage: bool = False  # stream_options.include_usage
    encoding_format: str = "float"  # embeddings: what the client asked for


class StreamTranslator(Protocol):
    # Token usage seen in the stream, in OpenAI shape, once known.
    usage: dict[str, Any] | None

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Adapter(Protocol):
    """What the request path needs from a provider module."""

    # Content types a successful streaming answer may have (checked before
    # the first byte is relayed, so HTML from a misconfigured base_url is a 502).
    @property
    def stream_content_types(self) -> tuple[str, ...]: ...

    def chat_request(
        self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool
    ) -> UpstreamRequest: ...

    def chat_response(
        self, dep: DeploymentConfig, data: bytes, ctx: CallContext
    ) -> tuple[bytes, dict[str, Any] | None]:
        """OpenAI ``chat.completion`` bytes and the usage they report."""

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> StreamTranslator: ...

    def embeddings_request(
        self, dep: DeploymentConfig, body: Mapping[str, Any]
    ) -> UpstreamRequest: ...

    def embeddings_response(
        self, dep: DeploymentConfig, data: bytes, ctx: CallContext
    ) -> tuple[bytes, dict[str, Any] | None]: ...

    def error_from_response(
        self, status: int, headers: Mapping[str, str], data: bytes
    ) -> UpstreamStatusError: ...


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or
    an HTTP-date, RFC 9110 §10.2.3).

    An HTTP-date is measured against the response's own ``Date`` header (no
    clock here, and the upstream's clock is the one its date refers to); one
    without a ``Date`` is ignored. How long the deployment may cool is capped
    by the router (``breaker.max_retry_after``), not here.
    """
    ms = headers.get("retry-after-ms")
    if ms:
        seconds = _seconds(ms)
        if seconds is not None:
            return seconds / 1000.0
    s = headers.get("retry-after")
    if not s:
        return None
    seconds = _seconds(s)
    if seconds is not None:
        return seconds
    return _date_delta(s, headers.get("date"))


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return None if math.isnan(seconds) else max(seconds, 0.0)


def _date_delta(value: str, date: str | None) -> float | None:
    if not date:
        return None
    try:
        until, now = parsedate_to_datetime(value), parsedate_to_datetime(date)
        return max((until - now).total_seconds(), 0.0)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def bearer_headers(dep: DeploymentConfig, accept: str) -> dict[str, str]:
    """JSON request headers, the provider's key as ``Authorization: Bearer`` (when it has one)."""
    headers = {"Content-Type": "application/json", "Accept": accept}
    if dep.provider.api_key:
        headers["Authorization"] = f"Bearer {dep.provider.api_key}"
    headers.update(dep.provider.headers)
    return headers


def encode_chunks(chunks: Iterable[dict[str, Any]]) -> bytes:
    """OpenAI ``chat.completion.chunk`` dicts → SSE bytes ready to relay."""
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)


def load_object(data: bytes, who: str, what: str | None = None) -> dict[str, Any]:
    """A 200 answer's JSON object, or an ``UpstreamProtocolError`` naming ``who`` answered what."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(f"{who} answered 200 with a body that is not JSON{_what(what)}") from None
    if not isinstance(doc, dict):
        raise UpstreamProtocolError(f"{who} answered 200 with JSON that is not an object{_what(what)}")
    return doc


def _what(what: str | None) -> str:
    return f" ({what})" if what else ""


def error_body(status: int, data: bytes, who: str) -> tuple[Any, str]:
    """An error answer's parsed JSON (None when it is not JSON) and a fallback message.

    The fallback names ``who`` and the status, plus the start of the body
    when that is not JSON (an HTML page from a gateway, a plain-text reason).
    """
    message = f"{who} returned HTTP {status}"
    try:
        return (orjson.loads(data) if data else None), message
    except orjson.JSONDecodeError:
        text = data[:300].decode("utf-8", "replace").strip()
        return None, f"{message}: {text}" if text else message


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What one provider type is, declared next to its adapter and listed
    once in ``providers/registry.py``: config, metrics, tracing and the image
    fetch all read it."""

    type: str  # the config's ``type:``
    adapter: Adapter
    options: builtins.type[ProviderOptions] = NoOptions  # its own YAML keys, beside the common ones
    default_base_url: str | None = None  # None: the config must say where
    # OpenTelemetry's gen_ai.provider.name (None: the type itself).
    gen_ai_name: str | None = None
    # Adapters that inline user image URLs: the upstream fetches what this
    # returns before the request is built (adapters do no I/O).
    image_urls_to_fetch: Callable[[DeploymentConfig, Mapping[str, Any]], list[str]] | None = None
    # The provider's models-list request (a GET that costs no tokens), used by
    # ``health_check: {kind: models}``; None: the type has none we can call
    # with its credentials (the config then asks for kind: chat).
    models_request: Callable[[DeploymentConfig], UpstreamRequest] | None = None

"""The ``/v1/messages`` passthrough to ``type: anthropic`` deployments.

A client speaking Messages to an anthropic deployment: its body goes as it
is, with only ``model`` rewritten, and the answer comes back as Anthropic
sent it (request/messages.py). Headers are built from the provider config
alone (``anthropic.request_headers``): the client's credentials never pass.
Pure, like every provider module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..config.tree import DeploymentConfig
from ..errors import InvalidRequest, UpstreamProtocolError
from ..sse import DEFAULT_MAX_EVENT, SSEDecoder, SSEEvent
from .anthropic import (
    AnthropicOptions,
    _obj,
    messages_url,
    openai_usage,
    request_headers,
)
from .base import UpstreamRequest, load_object


def beta_header(dep: DeploymentConfig, client_betas: str | None) -> None:
    """Refuse (400, naming it) an ``anthropic-beta`` the client sent that the
    provider's ``beta:`` list does not allow; the allowed ones go upstream
    with the config's list (``request_headers``), which is that list."""
    if not client_betas:
        return
    p = dep.provider
    allowed = (p.options.beta if isinstance(p.options, AnthropicOptions) else None) or ()
    for beta in client_betas.split(","):
        beta = beta.strip()
        if beta and beta not in allowed:
            raise InvalidRequest(
                f"anthropic-beta {beta!r} is not allowed for this model: list it in the provider's 'beta:' "
                f"to forward it", param="anthropic-beta", code="beta_not_allowed",
            )


def passthrough_request(dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool,
                        client_betas: str | None = None, path: str = "messages") -> UpstreamRequest:
    """The client's Messages body (``path``: ``messages`` or ``messages/count_tokens``), ``model`` rewritten."""
    beta_header(dep, client_betas)
    url = messages_url(dep)
    if path != "messages":
        url = f"{url[: -len('messages')]}{path}"
    doc = body if body.get("model") == dep.model else {**body, "model": dep.model}
    return UpstreamRequest(url=url, headers=request_headers(dep, stream), body=orjson.dumps(doc))


def passthrough_answer(data: bytes) -> tuple[bytes, dict[str, Any] | None]:
    """Anthropic's own bytes, once they are a message; and its usage (OpenAI shape, for accounting)."""
    doc = load_object(data, "anthropic", "message")
    if not isinstance(doc.get("content"), list):
        raise UpstreamProtocolError("anthropic answered 200 without a 'content' array")
    return data, openai_usage(doc.get("usage"))


def count_answer(data: bytes) -> tuple[bytes, dict[str, Any] | None]:
    doc = load_object(data, "anthropic", "count_tokens")
    if type(doc.get("input_tokens")) is not int:
        raise UpstreamProtocolError("anthropic answered count_tokens without 'input_tokens'")
    return data, None


class AnthropicRelay:
    """Relays an Anthropic SSE stream event by event, as it arrives.

    Events are re-framed as ``event: <type>\ndata: ...\n\n`` (CRLF framing
    and comments never reach the client; data bytes untouched); only
    ``message_start`` and ``message_delta`` are parsed, for usage. The stream
    is complete at ``message_stop`` or an ``error`` event (relayed: the SDK
    raises on it).
    """

    __slots__ = ("_decoder", "_max", "_usage", "usage", "done")

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT) -> None:
        self._decoder = SSEDecoder(max_event_size)
        self._max = max_event_size
        self._usage: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        # A read no longer than one event's limit cannot hold an event past it.
        if self._decoder.empty and len(data) < self._max and _canonical(data):
            return data  # already framed as we would frame it, nothing to read
        out: list[bytes] = []
        for event in self._decoder.feed(data):
            if self.done:
                break
            self._event(event, out)
        return b"".join(out)

    def _event(self, event: SSEEvent, out: list[bytes]) -> None:
        name = event.event
        if name is None:
            raise UpstreamProtocolError("anthropic stream sent an event without a type")
        if name in ("message_start", "message_delta"):
            try:
                doc = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise UpstreamProtocolError("anthropic stream sent an event that is not JSON") from None
            doc = _obj(doc)
            u = _obj(doc.get("message")).get("usage") if name == "message_start" else doc.get("usage")
            if isinstance(u, dict):
                self._usage.update({k: v for k, v in u.items() if v is not None})
                self.usage = openai_usage(self._usage)
        elif name in ("message_stop", "error"):
            self.done = True
        out.append(b"event: " + name.encode() + b"\ndata: " + event.data + b"\n\n")

    def finish(self) -> bytes:
        out: list[bytes] = []
        if not self.done:
            for event in self._decoder.finish():
                self._event(event, out)
        if not self.done:
            raise UpstreamProtocolError("anthropic stream ended before message_stop")
        return b"".join(out)


def _canonical(data: bytes) -> bool:
    """Whole ``event: T\ndata: D\n\n`` events whose bytes need no look:
    pure byte counting in C, no per-event Python work. Anything unusual (CRLF,
    comments, multi-line data, a cut event) or any event the relay reads
    (``message_start`` / ``_delta`` / ``_stop`` for usage and the end,
    ``error``) takes the event path. JSON data holds no raw newline, so
    ``\ndata: `` and ``\n\nevent: `` only occur at line starts."""
    if not data.endswith(b"\n\n") or not data.startswith(b"event: ") or b"\r" in data:
        return False
    n = data.count(b"\n\n")
    if data.count(b"\n") != 3 * n or data.count(b"\n\nevent: ") != n - 1 or data.count(b"\ndata: ") != n:
        return False
    return b"event: message_" not in data and b"event: error" not in data

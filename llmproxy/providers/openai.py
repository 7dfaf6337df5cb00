"""OpenAI and every server that speaks its Chat Completions API.

Covers ``type: openai`` (OpenAI, vLLM, Ollama's /v1, Groq, Mistral, DeepSeek,
Together, OpenRouter, Qianfan v2, ...) and ``type: azure`` (the classic
``/openai/deployments/{name}/...?api-version=`` path with ``api_version:``, the
``/openai/v1/`` path without it). The request body is forwarded with only
``model`` rewritten: every other field the client sent, known or not, arrives
untouched. Successful answers are relayed as the provider's own bytes after a
check that they are what they claim to be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from ..config.schema import key
from ..config.tree import DeploymentConfig, ProviderOptions
from ..errors import UpstreamProtocolError, UpstreamStatusError
from ..sse import DEFAULT_MAX_EVENT, DONE, SSEDecoder, too_large_event
from .base import (
    CallContext,
    ProviderSpec,
    UpstreamRequest,
    error_body,
    load_object,
    parse_retry_after,
)

_JSON = "application/json"


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class StreamUsageOptions(ProviderOptions):
    """The keys of every OpenAI-compatible type (and its base)."""

    stream_usage: bool | None = key(None, kind="bool",
                                    help="ask for stream_options.include_usage upstream (default true), so "
                                         "streams are accounted even when the client did not ask; false for "
                                         "compatible servers that refuse the field")


@dataclass(frozen=True, slots=True)
class OpenAIOptions(StreamUsageOptions):
    organization: str | None = key(None, kind="str", nonempty=True, help="sent as OpenAI-Organization")
    project: str | None = key(None, kind="str", nonempty=True, help="sent as OpenAI-Project")
    responses: str | None = key(None, kind="enum", choices=("native", "translate"),
                                help="/v1/responses: native (default) calls the server's own /responses; "
                                     "translate goes through its chat completions (servers without /responses)")


@dataclass(frozen=True, slots=True)
class AzureOptions(StreamUsageOptions):
    api_version: str | None = key(None, kind="str", nonempty=True,
                                  help="with it: the deployments URL form; without: the /openai/v1 API")


def endpoint_url(dep: DeploymentConfig, path: str) -> str:
    """``path`` is ``chat/completions`` or ``embeddings``."""
    p = dep.provider
    if p.type == "azure":
        base = p.base_url
        version = p.options.api_version if isinstance(p.options, AzureOptions) else None
        if version:
            if base.endswith("/openai"):
                base = base[: -len("/openai")]
            deployment = quote(dep.model, safe="")
            return f"{base}/openai/deployments/{deployment}/{path}?api-version={quote(version, safe='')}"
        if not base.endswith("/openai/v1"):
            base = base + ("/v1" if base.endswith("/openai") else "/openai/v1")
        return f"{base}/{path}"
    return f"{p.base_url}/{path}"


def request_headers(dep: DeploymentConfig) -> dict[str, str]:
    p = dep.provider
    headers = {"Content-Type": _JSON, "Accept": _JSON}
    if p.api_key:
        if p.type == "azure":
            headers["api-key"] = p.api_key
        else:
            headers["Authorization"] = f"Bearer {p.api_key}"
    if isinstance(o := p.options, OpenAIOptions):
        if o.organization:
            headers["OpenAI-Organization"] = o.organization
        if o.project:
            headers["OpenAI-Project"] = o.project
    headers.update(p.headers)
    return headers


def with_model(body: Mapping[str, Any], model: str, *, stream_usage: bool = False) -> bytes:
    """The client's body with ``model`` rewritten; with ``stream_usage``, also
    ``stream_options.include_usage: true`` (other stream options kept)."""
    opts = body.get("stream_options")
    if stream_usage and not (isinstance(opts, dict) and opts.get("include_usage") is True):
        merged = {**opts, "include_usage": True} if isinstance(opts, dict) else {"include_usage": True}
        return orjson.dumps({**body, "model": model, "stream_options": merged})
    if body.get("model") == model:
        return orjson.dumps(body)
    return orjson.dumps({**body, "model": model})


def asks_stream_usage(dep: DeploymentConfig) -> bool:
    """OpenAI and Azure take ``stream_options.include_usage`` (and send the
    usage in a last chunk with empty ``choices``); ``stream_usage: false`` is
    for compatible servers that refuse the field."""
    p = dep.provider
    o = p.options
    if isinstance(o, StreamUsageOptions):
        return o.stream_usage is not False
    return p.type in ("openai", "azure")


class OpenAIAdapter:
    stream_content_types = ("text/event-stream",)

    def chat_request(
        self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        headers = request_headers(dep)
        if stream:
            headers["Accept"] = "text/event-stream"
        return UpstreamRequest(
            url=endpoint_url(dep, "chat/completions"),
            headers=headers,
            body=with_model(body, dep.model, stream_usage=stream and asks_stream_usage(dep)),
        )

    def chat_response(
        self, dep: DeploymentConfig, data: bytes, ctx: CallContext
    ) -> tuple[bytes, dict[str, Any] | None]:
        return relayed(data, "chat completion", "choices")

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> OpenAIStreamRelay:
        # Azure opens streams with a content-filter chunk whose "choices" is
        # empty; clients that index choices[0] crash on it, so drop it. The
        # usage chunk is ours (chat_request asked for it) unless the client
        # asked too: it is counted, and relayed only then.
        return OpenAIStreamRelay(
            drop_empty_choices=dep.provider.type == "azure",
            drop_usage_chunk=not ctx.include_usage,
            max_event_size=dep.provider.limits.max_event_size,
        )

    def embeddings_request(
        self, dep: DeploymentConfig, body: Mapping[str, Any]
    ) -> UpstreamRequest:
        return UpstreamRequest(
            url=endpoint_url(dep, "embeddings"),
            headers=request_headers(dep),
            body=with_model(body, dep.model),
        )

    def embeddings_response(
        self, dep: DeploymentConfig, data: bytes, ctx: CallContext
    ) -> tuple[bytes, dict[str, Any] | None]:
        return relayed(data, "embeddings", "data")

    def error_from_response(
        self, status: int, headers: Mapping[str, str], data: bytes
    ) -> UpstreamStatusError:
        return openai_style_error(status, headers, data)


def relayed(data: bytes, what: str, key: str) -> tuple[bytes, dict[str, Any] | None]:
    """The provider's own bytes, once they are a JSON object with a ``key`` list; and its usage."""
    doc = load_object(data, "upstream", what)
    if not isinstance(doc.get(key), list):
        raise UpstreamProtocolError(f"upstream answered 200 without '{key}'")
    usage = doc.get("usage")
    return data, usage if isinstance(usage, dict) else None


def openai_style_error(status: int, headers: Mapping[str, str], data: bytes) -> UpstreamStatusError:
    """An upstream error body in (roughly) OpenAI shape → our error, status kept."""
    doc, message = error_body(status, data, "upstream")
    etype = code = param = None
    if isinstance(doc, dict):
        err = doc.get("error", doc)
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            etype = err.get("type") if isinstance(err.get("type"), str) else None
            code = str(err["code"]) if err.get("code") is not None else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
        elif isinstance(err, str):
            message = err
    return UpstreamStatusError(
        message, status=status, type=etype, code=code, param=param,
        retry_after=parse_retry_after(headers),
    )


def native_responses(dep: DeploymentConfig) -> bool:
    """Whether a /v1/responses request goes to this deployment's own ``/responses``."""
    o = dep.provider.options
    return dep.provider.type == "openai" and isinstance(o, OpenAIOptions) and o.responses != "translate"


def responses_request(dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool) -> UpstreamRequest:
    """A Responses API request passed through: only ``model`` rewritten."""
    headers = request_headers(dep)
    if stream:
        headers["Accept"] = "text/event-stream"
    return UpstreamRequest(url=endpoint_url(dep, "responses"), headers=headers, body=with_model(body, dep.model))


def responses_answer(data: bytes) -> tuple[bytes, dict[str, Any] | None]:
    """The provider's own Response bytes, once they are one; and its usage in chat shape (for accounting)."""
    doc = load_object(data, "upstream", "response")
    if not isinstance(doc.get("output"), list):
        raise UpstreamProtocolError("upstream answered 200 without 'output'")
    return data, responses_usage(doc.get("usage"))


def responses_usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    p, c = usage.get("input_tokens"), usage.get("output_tokens")
    p = p if type(p) is int else 0
    c = c if type(c) is int else 0
    total = usage.get("total_tokens")
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": total if type(total) is int else p + c}


# --------------------------------------------------------------------------- streams


class ResponsesRelay:
    """Relays a Responses API SSE stream byte for byte, whole events at a time.

    Pieces end at event boundaries (the redactor screens each on its own);
    the terminal event's usage is noted for accounting; the stream must end
    with a terminal event (``response.completed`` / ``.incomplete`` /
    ``.failed``, or an ``error`` event), so a cut stream is an error.

    The common read (whole ``\\n``-framed events) costs one suffix test and
    a few substring scans; an event split across reads is gathered in a
    buffer searched once per byte, so a large event arriving in small reads
    costs linear time.
    """

    __slots__ = ("_buf", "_scanned", "_max", "usage", "done")

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT) -> None:
        self._buf = bytearray()
        self._scanned = 0  # _buf[:_scanned] holds no event boundary
        self._max = max_event_size
        self.usage: dict[str, Any] | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if not self._buf and data[-2:] == b"\n\n":
            out = data  # whole events, as OpenAI frames them
        else:
            buf = self._buf
            buf += data
            end = _last_boundary(buf, max(self._scanned - 3, 0))
            if end == 0:
                self._scanned = len(buf)
                if len(buf) > self._max:
                    raise too_large_event("server-sent event", self._max)
                return b""
            out = bytes(buf[:end])
            del buf[:end]
            self._scanned = len(buf)  # the boundary found was the last one
            if len(buf) > self._max:
                raise too_large_event("server-sent event", self._max)
        if not self.done and _has_terminal(out):
            self._inspect(out)
        return out

    def _inspect(self, block: bytes) -> None:
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        for event in block.split(b"\n\n"):
            if not _has_terminal(event):
                continue
            data = b"\n".join(line[5:].removeprefix(b" ") for line in event.split(b"\n")
                              if line.startswith(b"data:"))
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            etype = doc.get("type")
            if etype == "error":
                self.done = True
            elif etype in ("response.completed", "response.incomplete", "response.failed"):
                self.done = True
                response = doc.get("response")
                if isinstance(response, dict):
                    self.usage = responses_usage(response.get("usage"))

    def finish(self) -> bytes:
        # An unterminated last event goes out as it came: a byte relay adds nothing.
        tail = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        if tail.strip() and not self.done:
            self._inspect(tail)
        if not self.done:
            raise UpstreamProtocolError("upstream stream ended before its terminal event (response.completed)")
        return tail


def _last_boundary(buf: bytearray, start: int) -> int:
    """The offset just past the last blank line (``\\n\\n``, ``\\r\\n\\r\\n``
    or ``\\r\\r``) in ``buf[start:]``; 0: none."""
    end = 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        i = buf.rfind(sep, start)
        if i >= 0:
            end = max(end, i + len(sep))
    return end


def _has_terminal(piece: bytes) -> bool:
    # Chained tests, not any(...) over a tuple: this runs on every relayed read.
    return (b'"response.completed"' in piece or b'"response.incomplete"' in piece
            or b'"response.failed"' in piece or b'"type":"error"' in piece or b'"type": "error"' in piece)


class OpenAIStreamRelay:
    """Relays an OpenAI SSE stream event by event, as it arrives.

    Events are re-framed as ``data: ...\\n\\n`` (so ``\\r\\n`` framing and
    keep-alive comments from compatible servers never reach the client), the
    usage chunk is remembered for accounting (and dropped with
    ``drop_usage_chunk``: the client did not ask for it), and the stream must
    end with ``[DONE]``.
    """

    __slots__ = ("_decoder", "_drop_empty", "_drop_usage", "_max", "usage", "done", "error")

    def __init__(self, drop_empty_choices: bool = False, drop_usage_chunk: bool = False,
                 max_event_size: int = DEFAULT_MAX_EVENT) -> None:
        self._decoder = SSEDecoder(max_event_size)
        self._max = max_event_size
        self._drop_empty = drop_empty_choices
        self._drop_usage = drop_usage_chunk
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.error: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        # A read no longer than one event's limit cannot hold an event past
        # it; a longer one goes through the decoder, which enforces it.
        if not self.done and self._decoder.empty and len(data) < self._max and self._canonical(data):
            # Already framed exactly as we would frame it: relay the bytes.
            if data.endswith(b"data: [DONE]\n\n"):
                self.done = True
            return data
        return self._feed_events(data)

    def _canonical(self, data: bytes) -> bool:
        """Whole single-line ``data: {...}`` events, nothing to inspect.

        Pure byte counting in C, no per-event Python work; anything unusual
        (CRLF, comments, multi-line data, a cut event, usage, an error, Azure's
        empty-choices chunk, [DONE] not at the end) takes the event path.

        Two counts over the read decide the framing: its newlines (a
        one-byte count, the fastest) and its ``\\n\\ndata: {`` boundaries.
        With the read starting ``data: {`` and ending in a blank line (after
        ``data: [DONE]``, or not), every newline is then in one of those
        boundaries, the last blank line or the one before ``[DONE]``: so no
        event has a second line, a comment or a stray blank line, and every
        event but ``[DONE]`` is an object.
        """
        if data[-2:] != b"\n\n" or b"\r" in data:
            return False
        if data.startswith(b"data: {"):
            done = data.endswith(b"\n\ndata: [DONE]\n\n")
        elif data == b"data: [DONE]\n\n":
            return True
        else:
            return False
        newlines = data.count(b"\n")
        if newlines & 1 or data.count(b"\n\ndata: {") != newlines // 2 - 1 - done:
            return False
        if b'"usage"' in data and (b'"usage":{' in data or b'"usage": {' in data):
            return False
        return not (b'"error"' in data or (self._drop_empty and b'"choices":[]' in data))

    def _feed_events(self, data: bytes) -> bytes:
        events = self._decoder.feed(data)
        if not events:
            return b""
        out: list[bytes] = []
        for _, payload in events:
            if self.done:
                break
            if payload[:6] == b"[DONE]":
                self.done = True
                out.append(DONE)
                continue
            if payload[:1] != b"{":
                raise UpstreamProtocolError("upstream stream sent an event that is not JSON")
            if (
                b'"usage":{' in payload
                or b'"usage": {' in payload
                or b'"error"' in payload
                or (self._drop_empty and b'"choices":[]' in payload)
            ):
                if self._inspect(payload):
                    continue
            out.append(b"data: " + payload + b"\n\n")
        return b"".join(out)

    def _inspect(self, payload: bytes) -> bool:
        """Note usage and errors; True when the event should be dropped."""
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("upstream stream sent an event that is not JSON") from None
        if not isinstance(doc, dict):
            return False
        if isinstance(doc.get("error"), dict):
            # Forwarded as is: the SDKs raise on a data event with "error".
            self.error = doc["error"]
            self.done = True
            return False
        usage = doc.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            # Only the usage-only chunk goes: one that also carries choices is content.
            return self._drop_usage and doc.get("choices") == []
        return self._drop_empty and doc.get("choices") == []

    def finish(self) -> bytes:
        tail = self._feed_events(b"\n\n") if self._decoder.pending else b""
        if not self.done:
            raise UpstreamProtocolError("upstream stream ended before [DONE]")
        return tail


def models_request(dep: DeploymentConfig) -> UpstreamRequest:
    """GET {base_url}/models: OpenAI's list, served by every compatible server."""
    return UpstreamRequest(url=f"{dep.provider.base_url}/models", headers=request_headers(dep), body=b"",
                           method="GET")


SPEC = ProviderSpec("openai", OpenAIAdapter(), OpenAIOptions, "https://api.openai.com/v1", "openai",
                    models_request=models_request)
AZURE_SPEC = ProviderSpec("azure", SPEC.adapter, AzureOptions, None, "azure.ai.openai")

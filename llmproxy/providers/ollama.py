"""``type: ollama``: Ollama's native API, ``/api/chat`` and ``/api/embed``.

For a local or on-prem Ollama without its OpenAI layer (whose ``/v1`` works
as ``type: openai``). Shapes follow Ollama's ``docs/api.md`` and the mapping
its own OpenAI layer makes (``openai/openai.go``): sampling settings go in
``options`` (``max_tokens`` → ``num_predict``), images are raw base64 in the
message's ``images``, tool-call ``arguments`` are objects, a tool result
names its tool in ``tool_name``, and ``stop`` plus tool calls finishes as
``tool_calls``.

Streams are NDJSON, one JSON object per line, the last with ``"done": true``
(carrying ``done_reason`` and the token counts); a failure after the 200 is a
line ``{"error": "..."}``. Ollama streams unless told otherwise, so
``stream`` is always sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from ..config.tree import DeploymentConfig
from ..errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from ..sse import too_large_event
from . import answers as a
from . import translate as t
from .base import CallContext, ProviderSpec, UpstreamRequest, bearer_headers
from .openai import openai_style_error

PROVIDER = "Ollama"
FINISH = {"stop": "stop", "length": "length"}
# Ollama's own request fields, passed through for callers who send them.
_NATIVE = ("options", "keep_alive", "think")
SUPPORTED = frozenset({
    "model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
    "seed", "frequency_penalty", "presence_penalty", "tools", "tool_choice", "response_format",
    "reasoning_effort", "top_k", *_NATIVE,
})
_EMBEDDING_FIELDS = t.EMBEDDING_FIELDS | {"truncate", "options", "keep_alive"}


def _url(dep: DeploymentConfig, path: str) -> str:
    base = dep.provider.base_url
    return f"{base}/{path}" if base.endswith("/api") else f"{base}/api/{path}"


def chat_body(body: Mapping[str, Any], model: str, stream: bool) -> dict[str, Any]:
    t.refuse_unsupported(body, SUPPORTED, PROVIDER)
    messages = body.get("messages") or []
    names = t.tool_result_names(messages)  # tool_call_id → function name, for tool results
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        param = f"messages[{i}]"
        role = m.get("role")
        if role in ("system", "developer"):
            out.append({"role": "system", "content": "\n".join(t.texts_only(m.get("content"), f"{param}.content", role))})
        elif role == "user":
            out.append(_user_message(m.get("content"), f"{param}.content"))
        elif role == "assistant":
            texts, calls = t.assistant_message(m, param, PROVIDER)
            msg: dict[str, Any] = {"role": "assistant", "content": "\n".join(p["text"] for p in texts)}
            if calls:
                msg["tool_calls"] = [{"function": {"name": name, "arguments": args}} for _, name, args in calls]
            out.append(msg)
        elif role == "tool":
            msg = {"role": "tool", "content": "\n".join(t.texts_only(m.get("content"), f"{param}.content", "tool"))}
            name = m.get("name") or names.get(t.tool_call_id(m, param))
            if name:
                msg["tool_name"] = name
            out.append(msg)
        else:
            raise t.unknown_role(m, param, PROVIDER)

    options: dict[str, Any] = dict(t.object_field(body, "options"))
    for key, value in (("temperature", t.number(body, "temperature", 0, 2)), ("top_p", t.number(body, "top_p", 0, 1)),
                       ("seed", t.seed(body)), ("top_k", t.integer(body, "top_k")),
                       ("frequency_penalty", t.number(body, "frequency_penalty", -2, 2)),
                       ("presence_penalty", t.number(body, "presence_penalty", -2, 2)),
                       ("num_predict", t.max_tokens(body)), ("stop", t.stop_sequences(body))):
        if value is not None:
            options[key] = value

    doc: dict[str, Any] = {"model": model, "messages": out, "stream": stream}
    if options:
        doc["options"] = options
    mode, offered, _ = t.tool_choice(body, t.functions(body))
    if mode not in ("auto", "none"):
        raise InvalidRequest(f"tool_choice {body['tool_choice']!r} is not supported by {PROVIDER} "
                             "deployments (only auto and none)", param="tool_choice")
    if offered and mode != "none":
        doc["tools"] = [{"type": "function", "function": fn.openai()} for fn in offered]
    fmt, js = t.response_format(body)
    if fmt == "json_object":
        doc["format"] = "json"
    elif js is not None:
        doc["format"] = js["schema"]
    effort = t.reasoning_effort(body)
    if effort is not None:
        doc["think"] = False if effort == "none" else effort
    doc.update(t.native_fields(body, ("think", "keep_alive")))
    return doc


def _user_message(content: Any, param: str) -> dict[str, Any]:
    texts: list[str] = []
    images: list[str] = []
    for k, part in enumerate(t.content_parts(content, param)):
        p = f"{param}[{k}]"
        if part["type"] == "text":
            texts.append(part["text"])
        elif part["type"] == "image_url":
            images.append(t.image_data(part, p, PROVIDER)[1])
        else:
            raise t.unknown_part(part, p, PROVIDER)
    msg: dict[str, Any] = {"role": "user", "content": "\n".join(texts)}
    if images:
        msg["images"] = images
    return msg


def _with_default_max_tokens(doc: dict[str, Any], dep: DeploymentConfig) -> dict[str, Any]:
    options = doc.get("options") or {}
    if dep.max_tokens and "num_predict" not in options:
        doc["options"] = {**options, "num_predict": dep.max_tokens}
    return doc


def _calls(message: Mapping[str, Any], first_index: int, request_id: str) -> list[dict[str, Any]]:
    """Ollama's whole tool calls → OpenAI ones, with an id when Ollama gave none."""
    out = []
    for k, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        cid = call.get("id") or f"call_{request_id}_{first_index + k}"
        out.append(a.tool_call(str(cid), str(fn.get("name")), fn.get("arguments") or {}))
    return out


def _usage(doc: Mapping[str, Any]) -> dict[str, Any]:
    return a.usage(a.count(doc, "prompt_eval_count"), a.count(doc, "eval_count"))


def _load_line(line: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("Ollama sent a line that is not JSON") from None
    if not isinstance(doc, dict):
        raise UpstreamProtocolError("Ollama sent JSON that is not an object")
    if doc.get("error") is not None:
        # Mid-stream failures (model crashed, out of memory) are the server's.
        raise UpstreamStatusError(f"Ollama: {doc['error']}", status=500)
    return doc


class NDJSONChatTranslator(a.EventStream):
    """Ollama's NDJSON chat stream → OpenAI SSE chunks, one line at a time."""

    # Invariant: ``_buf[:_scanned]`` holds no newline, so each byte is searched
    # once however long a line grows, and a line is refused past max_event_size.
    __slots__ = ("_buf", "_scanned", "_max", "_request_id", "_started", "_tools")

    def __init__(self, dep: DeploymentConfig, ctx: CallContext) -> None:
        super().__init__(a.Chunks(f"chatcmpl-{ctx.request_id}", ctx.created, dep.model, ctx.include_usage))
        self._buf = bytearray()
        self._scanned = 0
        self._max = dep.provider.limits.max_event_size
        self._request_id = ctx.request_id
        self._tools = 0
        self._started = False

    def _decode(self, data: bytes) -> Iterator[dict[str, Any]]:
        buf = self._buf
        buf += data
        end = buf.rfind(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > self._max:
                raise too_large_event("NDJSON line", self._max)
            return
        lines = bytes(buf[: end + 1]).split(b"\n")
        del buf[: end + 1]
        self._scanned = len(buf)
        if len(buf) > self._max:
            raise too_large_event("NDJSON line", self._max)
        for line in lines:
            if self.done:
                return  # nothing after "done": true is part of the answer
            if len(line) >= self._max:  # the line with its newline is past the limit
                raise too_large_event("NDJSON line", self._max)
            if line.strip():
                yield _load_line(line)

    def _event(self, doc: dict[str, Any], out: list[dict[str, Any]]) -> bytes:
        c = self._chunks
        if not self._started:
            self._started = True
            out.append(c.role())
        message = doc.get("message") or {}
        if isinstance(message.get("content"), str) and message["content"]:
            out.append(c.text(message["content"]))
        for call in _calls(message, self._tools, self._request_id):
            fn = call["function"]
            out.append(c.tool_start(self._tools, call["id"], fn["name"], fn["arguments"]))
            self._tools += 1
        if doc.get("done") is True:
            finish = a.finish_reason(FINISH, doc.get("done_reason"), self._tools > 0)
            return self._end(out, finish, _usage(doc))
        return b""

    def finish(self) -> bytes:
        if self._error is not None:
            raise self._error
        tail = self.feed(b"\n") if self._buf.strip() and not self.done else b""  # a last line without its newline
        self._finished('Ollama stream ended before "done": true')
        return tail


class OllamaAdapter:
    stream_content_types = ("application/x-ndjson",)

    def chat_request(self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool) -> UpstreamRequest:
        return UpstreamRequest(
            url=_url(dep, "chat"),
            headers=bearer_headers(dep, "application/x-ndjson" if stream else "application/json"),
            body=orjson.dumps(_with_default_max_tokens(chat_body(body, dep.model, stream), dep)),
        )

    def image_urls_to_fetch(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> list[str]:
        """Image links ``llmproxy/upstream/images.py`` inlines first (with ``allow_image_urls: true``)."""
        return t.image_urls_to_fetch(dep, body)

    def chat_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = _load_line(data)
        message = doc.get("message")
        if not isinstance(message, dict):
            raise UpstreamProtocolError("Ollama answered 200 without 'message'")
        calls = _calls(message, 0, ctx.request_id)
        usage = _usage(doc)
        content = message.get("content") if isinstance(message.get("content"), str) else ""
        finish = a.finish_reason(FINISH, doc.get("done_reason"), bool(calls))
        text = content or (None if calls else "")
        return orjson.dumps(a.one_choice(ctx, dep.model, text, calls, finish, usage)), usage

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> NDJSONChatTranslator:
        return NDJSONChatTranslator(dep, ctx)

    def embeddings_request(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> UpstreamRequest:
        doc: dict[str, Any] = {"model": dep.model, "input": t.embedding_input(body, _EMBEDDING_FIELDS, PROVIDER)}
        if (dims := t.integer(body, "dimensions")) is not None:
            doc["dimensions"] = dims
        doc.update(t.native_fields(body, ("truncate", "options", "keep_alive")))
        return UpstreamRequest(url=_url(dep, "embed"), headers=bearer_headers(dep, "application/json"),
                               body=orjson.dumps(doc))

    def embeddings_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = _load_line(data)
        vectors = doc.get("embeddings")
        if not isinstance(vectors, list):
            raise UpstreamProtocolError("Ollama answered 200 without 'embeddings'")
        return a.embeddings_list(vectors, dep.model, a.requested_encoding(ctx), a.count(doc, "prompt_eval_count"))

    def error_from_response(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamStatusError:
        # {"error": "model 'x' not found"}; the status (400/404/429/500/502) is Ollama's.
        return openai_style_error(status, headers, data)


def models_request(dep: DeploymentConfig) -> UpstreamRequest:
    """GET /api/tags: the locally available models (Ollama's API docs)."""
    return UpstreamRequest(url=_url(dep, "tags"), headers=bearer_headers(dep, "application/json"), body=b"",
                           method="GET")


SPEC = ProviderSpec("ollama", OllamaAdapter(), t.ImageUrlOptions, "http://localhost:11434", None,
                    t.image_urls_to_fetch, models_request=models_request)

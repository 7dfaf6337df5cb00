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

from collections.abc import Mapping
from typing import Any

import orjson

from ..config import DeploymentConfig
from ..errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from ..sse import DONE
from . import openai_shapes as oa
from .base import CallContext, UpstreamRequest, encode_chunks
from .openai import openai_style_error

PROVIDER = "Ollama"
FINISH = {"stop": "stop", "length": "length"}
# Client fields with an Ollama equivalent. top_k, options, keep_alive and
# think are Ollama's own and pass through for callers who send them.
HANDLED = {
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed",
    "frequency_penalty", "presence_penalty", "tools", "tool_choice", "response_format",
    "reasoning_effort", "top_k", "options", "keep_alive", "think",
}
_OPTIONS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "top_k": "top_k",
            "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty"}


def _url(dep: DeploymentConfig, path: str) -> str:
    base = dep.provider.base_url
    return f"{base}/{path}" if base.endswith("/api") else f"{base}/api/{path}"


def _headers(dep: DeploymentConfig, accept: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": accept}
    if dep.provider.api_key:  # ollama.com's hosted API; a local Ollama needs none
        headers["Authorization"] = f"Bearer {dep.provider.api_key}"
    headers.update(dep.provider.headers)
    return headers


def chat_body(body: Mapping[str, Any], model: str, stream: bool) -> dict[str, Any]:
    oa.reject_unsupported(body, HANDLED, PROVIDER)
    messages: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id → function name, for tool results
    for i, m in enumerate(body.get("messages") or []):
        where = f"messages[{i}]"
        role = m.get("role")
        if role in ("system", "developer"):
            messages.append({"role": "system", "content": oa.text_of(m.get("content"), where)})
        elif role == "user":
            texts: list[str] = []
            images: list[str] = []
            for k, part in enumerate(oa.content_parts(m.get("content"), where)):
                pwhere = f"{where}.content[{k}]"
                if part["type"] == "text":
                    texts.append(str(part.get("text") or ""))
                elif part["type"] == "image_url":
                    images.append(oa.data_url(oa.image_url(part, pwhere), pwhere, PROVIDER)[1])
                else:
                    raise InvalidRequest(f"{pwhere}: part type {part['type']!r} is not supported by "
                                         f"{PROVIDER} deployments", param=f"{where}.content")
            msg: dict[str, Any] = {"role": "user", "content": "\n".join(texts)}
            if images:
                msg["images"] = images
            messages.append(msg)
        elif role == "assistant":
            msg = {"role": "assistant", "content": oa.text_of(m.get("content"), where)}
            calls = []
            for j, call in enumerate(oa.tool_calls_of(m, where)):
                fn = call["function"]
                if isinstance(call.get("id"), str):
                    names[call["id"]] = fn["name"]
                calls.append({"function": {
                    "name": fn["name"],
                    "arguments": oa.tool_arguments(fn.get("arguments"), f"{where}.tool_calls[{j}]"),
                }})
            if calls:
                msg["tool_calls"] = calls
            messages.append(msg)
        elif role == "tool":
            msg = {"role": "tool", "content": oa.text_of(m.get("content"), where)}
            name = m.get("name") or names.get(str(m.get("tool_call_id")))
            if name:
                msg["tool_name"] = name
            messages.append(msg)
        else:
            raise InvalidRequest(f"{where}.role {role!r} is not supported by {PROVIDER} deployments",
                                 param=f"{where}.role")

    options: dict[str, Any] = dict(oa.object_field(body, "options"))
    for key, name in _OPTIONS.items():
        if body.get(key) is not None:
            options[name] = body[key]
    if (n := oa.max_tokens_of(body)) is not None:
        options["num_predict"] = n
    if (stop := oa.stop_list(body)) is not None:
        options["stop"] = stop

    doc: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    if options:
        doc["options"] = options
    functions = oa.functions_of(body)
    choice = oa.tool_choice_of(body)
    if choice not in (None, "auto", "none"):
        raise InvalidRequest(f"tool_choice {body['tool_choice']!r} is not supported by {PROVIDER} "
                             "deployments (only auto and none)", param="tool_choice")
    if functions and choice != "none":
        doc["tools"] = [{"type": "function", "function": {
            k: v for k, v in fn.items() if k in ("name", "description", "parameters")}} for fn in functions]
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        doc["format"] = "json"
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema must be an object", param="response_format")
        doc["format"] = schema
    elif fmt is not None and fmt != {"type": "text"}:
        raise InvalidRequest("response_format must be text, json_object or json_schema", param="response_format")
    effort = body.get("reasoning_effort")
    if effort is not None:
        doc["think"] = False if effort == "none" else effort
    for key in ("think", "keep_alive"):
        if body.get(key) is not None:
            doc[key] = body[key]
    return doc


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
        out.append(oa.tool_call(str(cid), str(fn.get("name")), fn.get("arguments") or {}))
    return out


def _usage(doc: Mapping[str, Any]) -> dict[str, Any]:
    return oa.usage(doc.get("prompt_eval_count"), doc.get("eval_count"))


def _finish(doc: Mapping[str, Any], tools: bool) -> str:
    finish = FINISH.get(str(doc.get("done_reason")), "stop")
    return "tool_calls" if tools and finish == "stop" else finish


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


class NDJSONChatTranslator:
    """Ollama's NDJSON chat stream → OpenAI SSE chunks, one line at a time."""

    __slots__ = ("_buf", "_chunks", "_request_id", "_tools", "_started", "done", "usage", "_error")

    def __init__(self, dep: DeploymentConfig, ctx: CallContext) -> None:
        self._buf = bytearray()
        self._chunks = oa.Chunks(f"chatcmpl-{ctx.request_id}", ctx.created, dep.model, ctx.include_usage)
        self._request_id = ctx.request_id
        self._tools = 0
        self._started = False
        self.done = False
        self.usage: dict[str, Any] | None = None
        self._error: UpstreamStatusError | None = None

    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        end = buf.rfind(b"\n")
        if end < 0:
            return b""
        lines = bytes(buf[: end + 1]).split(b"\n")
        del buf[: end + 1]
        out: list[dict[str, Any]] = []
        tail = b""
        try:
            for line in lines:
                if self.done:
                    break
                if line.strip():
                    tail = self._line(_load_line(line), out)
        except UpstreamStatusError as exc:
            if not out:
                raise
            self._error = exc  # deliver what came before it first
        return encode_chunks(out) + tail

    def _line(self, doc: dict[str, Any], out: list[dict[str, Any]]) -> bytes:
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
            out.append(c.finish(_finish(doc, self._tools > 0)))
            self.usage = _usage(doc)
            if c.include_usage:
                out.append(c.usage(self.usage))
            self.done = True
            return DONE
        return b""

    def finish(self) -> bytes:
        if self._error is not None:
            raise self._error
        tail = b""
        if self._buf.strip() and not self.done:
            tail = self.feed(b"\n")  # a last line without its newline
        if not self.done:
            raise UpstreamProtocolError('Ollama stream ended before "done": true')
        return tail


class OllamaAdapter:
    stream_content_types = ("application/x-ndjson",)

    def chat_request(self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool) -> UpstreamRequest:
        return UpstreamRequest(
            url=_url(dep, "chat"),
            headers=_headers(dep, "application/x-ndjson" if stream else "application/json"),
            body=orjson.dumps(_with_default_max_tokens(chat_body(body, dep.model, stream), dep)),
        )

    def image_urls_to_fetch(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> list[str]:
        """Image links ``llmproxy/fetch.py`` inlines first (with ``allow_image_urls: true``)."""
        return oa.http_image_urls(dep, body)

    def chat_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = _load_line(data)
        message = doc.get("message")
        if not isinstance(message, dict):
            raise UpstreamProtocolError("Ollama answered 200 without 'message'")
        calls = _calls(message, 0, ctx.request_id)
        usage = _usage(doc)
        content = message.get("content") if isinstance(message.get("content"), str) else ""
        return oa.completion(
            id=f"chatcmpl-{ctx.request_id}", created=ctx.created, model=dep.model,
            content=content or (None if calls else ""), tool_calls=calls,
            finish_reason=_finish(doc, bool(calls)), usage=usage,
        ), usage

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> NDJSONChatTranslator:
        return NDJSONChatTranslator(dep, ctx)

    def embeddings_request(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> UpstreamRequest:
        oa.reject_unsupported(body, {"input", "encoding_format", "dimensions", "truncate",
                                     "options", "keep_alive"}, PROVIDER)
        oa.encoding_format_of(body)
        texts = oa.embedding_texts(body, PROVIDER)
        doc: dict[str, Any] = {"model": dep.model, "input": texts}
        for key in ("dimensions", "truncate", "options", "keep_alive"):
            if body.get(key) is not None:
                doc[key] = body[key]
        return UpstreamRequest(url=_url(dep, "embed"), headers=_headers(dep, "application/json"),
                               body=orjson.dumps(doc))

    def embeddings_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = _load_line(data)
        vectors = doc.get("embeddings")
        if not isinstance(vectors, list):
            raise UpstreamProtocolError("Ollama answered 200 without 'embeddings'")
        return oa.embeddings_list(vectors, dep.model, oa.requested_encoding(ctx), doc.get("prompt_eval_count"))

    def error_from_response(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamStatusError:
        # {"error": "model 'x' not found"}; the status (400/404/429/500/502) is Ollama's.
        return openai_style_error(status, headers, data)

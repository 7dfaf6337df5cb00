"""``type: cohere``: Cohere's v2 API, ``/v2/chat`` and ``/v2/embed``.

Shapes follow cohere-python's ``v2/raw_client.py`` and ``v2/types``. Messages
are close to OpenAI's (roles, ``tool_calls`` with JSON-string arguments,
``image_url`` parts); the differences mapped here: ``top_p`` → ``p``,
``stop`` → ``stop_sequences``, ``tool_choice`` only ``REQUIRED`` / ``NONE``.

Streams are SSE whose JSON carries a ``type`` (the SDK discriminates on it,
not on the SSE event name): ``message-start``, ``content-delta``,
``tool-call-start`` / ``-delta`` / ``-end``, ... and ``message-end`` with
``finish_reason`` and ``usage``, which ends the stream. Citations,
``tool-plan-delta`` (the model's note on why it calls a tool) and ``debug``
have no Chat Completions field and are dropped; a ``[DONE]`` sentinel, if a
compatible server sends one, is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..config import DeploymentConfig
from ..errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout
from ..sse import DONE, SSEDecoder
from . import openai_shapes as oa
from .base import CallContext, UpstreamRequest, encode_chunks
from .openai import openai_style_error

PROVIDER = "Cohere"
FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}
# Client fields with a Cohere equivalent; Cohere's own request fields pass
# through for callers who send them (documents for RAG, safety_mode, ...).
HANDLED = {
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed",
    "frequency_penalty", "presence_penalty", "tools", "tool_choice", "response_format",
    "top_k", "k", "documents", "citation_options", "safety_mode", "strict_tools", "thinking",
}
_PASSTHROUGH = ("seed", "temperature", "frequency_penalty", "presence_penalty", "k", "documents",
                "citation_options", "safety_mode", "strict_tools", "thinking")


def _url(dep: DeploymentConfig, path: str) -> str:
    base = dep.provider.base_url
    return f"{base}/{path}" if base.endswith("/v2") else f"{base}/v2/{path}"


def _headers(dep: DeploymentConfig, accept: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": accept}
    if dep.provider.api_key:
        headers["Authorization"] = f"Bearer {dep.provider.api_key}"
    headers.update(dep.provider.headers)
    return headers


def chat_body(body: Mapping[str, Any], model: str, stream: bool) -> dict[str, Any]:
    oa.reject_unsupported(body, HANDLED, PROVIDER)
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(body.get("messages") or []):
        where = f"messages[{i}]"
        role = m.get("role")
        if role in ("system", "developer"):
            messages.append({"role": "system", "content": oa.text_of(m.get("content"), where)})
        elif role == "user":
            content = m.get("content")
            if isinstance(content, str):
                messages.append({"role": "user", "content": content})
                continue
            parts: list[dict[str, Any]] = []
            for k, part in enumerate(oa.content_parts(content, where)):
                pwhere = f"{where}.content[{k}]"
                if part["type"] == "text":
                    parts.append({"type": "text", "text": str(part.get("text") or "")})
                elif part["type"] == "image_url":
                    raw = part.get("image_url")
                    image: dict[str, Any] = {"url": oa.image_url(part, pwhere)}
                    if isinstance(raw, dict) and raw.get("detail"):
                        image["detail"] = raw["detail"]
                    parts.append({"type": "image_url", "image_url": image})
                else:
                    raise InvalidRequest(f"{pwhere}: part type {part['type']!r} is not supported by "
                                         f"{PROVIDER} deployments", param=f"{where}.content")
            messages.append({"role": "user", "content": parts})
        elif role == "assistant":
            msg: dict[str, Any] = {"role": "assistant"}
            text = oa.text_of(m.get("content"), where)
            calls = oa.tool_calls_of(m, where)
            if text or not calls:
                msg["content"] = text
            if calls:
                msg["tool_calls"] = [
                    oa.tool_call(str(c.get("id") or f"call_{i}_{j}"), c["function"]["name"],
                                 c["function"].get("arguments") or "{}")
                    for j, c in enumerate(calls)
                ]
            messages.append(msg)
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest(f"{where}.tool_call_id is required", param=f"{where}.tool_call_id")
            messages.append({"role": "tool", "tool_call_id": call_id,
                             "content": oa.text_of(m.get("content"), where)})
        else:
            raise InvalidRequest(f"{where}.role {role!r} is not supported by {PROVIDER} deployments",
                                 param=f"{where}.role")

    doc: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    for key in _PASSTHROUGH:
        if body.get(key) is not None:
            doc[key] = body[key]
    if (n := oa.max_tokens_of(body)) is not None:
        doc["max_tokens"] = n
    if body.get("top_p") is not None:
        doc["p"] = body["top_p"]
    if body.get("top_k") is not None:
        doc["k"] = body["top_k"]
    if (stop := oa.stop_list(body)) is not None:
        doc["stop_sequences"] = stop
    functions = oa.functions_of(body)
    if functions:
        doc["tools"] = [{"type": "function", "function": {
            k: v for k, v in fn.items() if k in ("name", "description", "parameters")}} for fn in functions]
        if any(fn.get("strict") is True for fn in functions):
            doc["strict_tools"] = True
    choice = oa.tool_choice_of(body)
    if choice == "none":
        doc["tool_choice"] = "NONE"
    elif choice == "required":
        doc["tool_choice"] = "REQUIRED"
    elif choice not in (None, "auto"):
        raise InvalidRequest(f"{PROVIDER} deployments cannot force a named function; "
                             "use tool_choice auto, required or none", param="tool_choice")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        doc["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema must be an object", param="response_format")
        doc["response_format"] = {"type": "json_object", "json_schema": schema}
    elif fmt is not None and fmt != {"type": "text"}:
        raise InvalidRequest("response_format must be text, json_object or json_schema", param="response_format")
    return doc


def _usage(u: Any) -> dict[str, Any] | None:
    if not isinstance(u, dict):
        return None
    tokens = u.get("tokens") if isinstance(u.get("tokens"), dict) else u.get("billed_units")
    if not isinstance(tokens, dict):
        return None
    return oa.usage(tokens.get("input_tokens"), tokens.get("output_tokens"), u.get("cached_tokens"))


def _failure(reason: Any, error: Any) -> UpstreamStatusError | UpstreamTimeout | None:
    if reason == "ERROR":
        return UpstreamStatusError(f"Cohere: {error or 'generation failed'}", status=502)
    if reason == "TIMEOUT":
        return UpstreamTimeout(f"Cohere: {error or 'generation timed out'}")
    return None


def _finish(reason: Any, tools: bool) -> str:
    finish = FINISH.get(str(reason), "stop")
    return "tool_calls" if tools and finish == "stop" else finish


class CohereStreamTranslator:
    """Cohere v2 chat SSE → OpenAI SSE chunks."""

    __slots__ = ("_decoder", "_chunks", "_tools", "done", "usage", "_error")

    def __init__(self, dep: DeploymentConfig, ctx: CallContext) -> None:
        self._decoder = SSEDecoder()
        self._chunks = oa.Chunks(f"chatcmpl-{ctx.request_id}", ctx.created, dep.model, ctx.include_usage)
        self._tools: dict[Any, int] = {}  # Cohere tool-call index → OpenAI tool_calls index
        self.done = False
        self.usage: dict[str, Any] | None = None
        self._error: UpstreamStatusError | UpstreamTimeout | None = None

    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        out: list[dict[str, Any]] = []
        tail = b""
        try:
            for _, payload in self._decoder.feed(data):
                if self.done:
                    break
                if not payload.strip() or payload.strip() == b"[DONE]":
                    continue
                try:
                    doc = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise UpstreamProtocolError("Cohere stream sent an event that is not JSON") from None
                if isinstance(doc, dict):
                    tail = self._event(doc, out)
        except (UpstreamStatusError, UpstreamTimeout) as exc:
            if not out:
                raise
            self._error = exc  # deliver what came before it first
        return encode_chunks(out) + tail

    def _event(self, doc: dict[str, Any], out: list[dict[str, Any]]) -> bytes:
        c = self._chunks
        etype = doc.get("type")
        message = ((doc.get("delta") or {}).get("message") or {}) if isinstance(doc.get("delta"), dict) else {}
        if etype == "message-start":
            out.append(c.role())
        elif etype in ("content-start", "content-delta"):
            content = message.get("content") or {}
            if isinstance(content, dict) and isinstance(content.get("text"), str) and content["text"]:
                out.append(c.text(content["text"]))  # "thinking" content has no OpenAI field
        elif etype == "tool-call-start":
            call = message.get("tool_calls") or {}
            fn = call.get("function") or {}
            start = self._tools[doc.get("index")] = len(self._tools)
            out.append(c.tool_start(start, str(call.get("id")), str(fn.get("name")),
                                    str(fn.get("arguments") or "")))
        elif etype == "tool-call-delta":
            index = self._tools.get(doc.get("index"))
            if index is None:
                raise UpstreamProtocolError("Cohere sent arguments for a tool call it never started")
            piece = ((message.get("tool_calls") or {}).get("function") or {}).get("arguments")
            if isinstance(piece, str) and piece:
                out.append(c.tool_arguments(index, piece))
        elif etype == "message-end":
            delta = doc.get("delta") or {}
            failure = _failure(delta.get("finish_reason"), delta.get("error"))
            if failure is not None:
                raise failure
            out.append(c.finish(_finish(delta.get("finish_reason"), bool(self._tools))))
            self.usage = _usage(delta.get("usage"))
            if c.include_usage and self.usage is not None:
                out.append(c.usage(self.usage))
            self.done = True
            return DONE
        # content-end, tool-call-end, tool-plan-delta, citation-*, debug: nothing to relay.
        return b""

    def finish(self) -> bytes:
        if self._error is not None:
            raise self._error
        tail = self.feed(b"\n\n") if self._decoder.pending and not self.done else b""
        if not self.done:
            raise UpstreamProtocolError("Cohere stream ended before message-end")
        return tail


class CohereAdapter:
    stream_content_types = ("text/event-stream",)

    def chat_request(self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool) -> UpstreamRequest:
        doc = chat_body(body, dep.model, stream)
        if dep.max_tokens and "max_tokens" not in doc:
            doc["max_tokens"] = dep.max_tokens
        return UpstreamRequest(
            url=_url(dep, "chat"),
            headers=_headers(dep, "text/event-stream" if stream else "application/json"),
            body=orjson.dumps(doc),
        )

    def chat_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = _load(data)
        message = doc.get("message")
        if not isinstance(message, dict):
            raise UpstreamProtocolError("Cohere answered 200 without 'message'")
        failure = _failure(doc.get("finish_reason"), doc.get("error"))
        if failure is not None:
            raise failure
        texts = [
            str(part.get("text") or "") for part in message.get("content") or []
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        calls = []
        for k, call in enumerate(message.get("tool_calls") or []):
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                calls.append(oa.tool_call(str(call.get("id") or f"call_{ctx.request_id}_{k}"),
                                          str(fn.get("name")), fn.get("arguments") or "{}"))
        usage = _usage(doc.get("usage"))
        return oa.completion(
            id=f"chatcmpl-{ctx.request_id}", created=ctx.created, model=dep.model,
            content="".join(texts) if texts or not calls else None, tool_calls=calls,
            finish_reason=_finish(doc.get("finish_reason"), bool(calls)), usage=usage,
        ), usage

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> CohereStreamTranslator:
        return CohereStreamTranslator(dep, ctx)

    def embeddings_request(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> UpstreamRequest:
        oa.reject_unsupported(body, {"input", "encoding_format", "dimensions", "input_type", "truncate"},
                              PROVIDER)
        oa.encoding_format_of(body)
        doc: dict[str, Any] = {
            "model": dep.model,
            "texts": oa.embedding_texts(body, PROVIDER),
            # Required by embed v3+; OpenAI has no such field, so documents unless told otherwise.
            "input_type": body.get("input_type") or "search_document",
            "embedding_types": ["float"],
        }
        if body.get("dimensions") is not None:
            doc["output_dimension"] = body["dimensions"]
        if body.get("truncate") is not None:
            doc["truncate"] = body["truncate"]
        return UpstreamRequest(url=_url(dep, "embed"), headers=_headers(dep, "application/json"),
                               body=orjson.dumps(doc))

    def embeddings_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = _load(data)
        embeddings = doc.get("embeddings")
        vectors = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
        if not isinstance(vectors, list):
            raise UpstreamProtocolError("Cohere answered 200 without float embeddings")
        billed = ((doc.get("meta") or {}).get("billed_units") or {}) if isinstance(doc.get("meta"), dict) else {}
        return oa.embeddings_list(vectors, dep.model, oa.requested_encoding(ctx), billed.get("input_tokens"))

    def error_from_response(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamStatusError:
        # Cohere answers {"message": "..."}; 498 is its "invalid token", which clients know as 401.
        return openai_style_error(401 if status == 498 else status, headers, data)


def _load(data: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("Cohere answered 200 with a body that is not JSON") from None
    if not isinstance(doc, dict):
        raise UpstreamProtocolError("Cohere answered 200 with JSON that is not an object")
    return doc

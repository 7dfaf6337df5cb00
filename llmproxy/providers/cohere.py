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

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from ..config.tree import DeploymentConfig
from ..errors import (
    InvalidRequest,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from ..sse import SSEDecoder
from . import answers as a
from . import translate as t
from .base import (
    CallContext,
    ProviderSpec,
    UpstreamRequest,
    bearer_headers,
    load_object,
)
from .openai import openai_style_error

PROVIDER = "Cohere"
FINISH = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls"}
# Cohere's own request fields pass through for callers who send them
# (documents for RAG, safety_mode, ...).
_NATIVE = ("k", "documents", "citation_options", "safety_mode", "strict_tools", "thinking")
SUPPORTED = frozenset({
    "model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
    "seed", "frequency_penalty", "presence_penalty", "tools", "tool_choice", "response_format", "top_k",
    *_NATIVE,
})
_EMBEDDING_FIELDS = t.EMBEDDING_FIELDS | {"input_type", "truncate"}


def _url(dep: DeploymentConfig, path: str) -> str:
    base = dep.provider.base_url
    return f"{base}/{path}" if base.endswith("/v2") else f"{base}/v2/{path}"


def chat_body(body: Mapping[str, Any], model: str, stream: bool) -> dict[str, Any]:
    t.refuse_unsupported(body, SUPPORTED, PROVIDER)
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(body.get("messages") or []):
        param = f"messages[{i}]"
        role = m.get("role")
        if role in ("system", "developer"):
            text = "\n".join(t.texts_only(m.get("content"), f"{param}.content", role))
            messages.append({"role": "system", "content": text})
        elif role == "user":
            content = m.get("content")
            if isinstance(content, str):
                messages.append({"role": "user", "content": content})
            else:
                messages.append({"role": "user", "content": _user_parts(content, f"{param}.content")})
        elif role == "assistant":
            msg: dict[str, Any] = {"role": "assistant"}
            texts, calls = t.assistant_message(m, param, PROVIDER)
            if texts or not calls:
                msg["content"] = "\n".join(p["text"] for p in texts)
            if calls:
                msg["tool_calls"] = [a.tool_call(*call) for call in calls]
            messages.append(msg)
        elif role == "tool":
            text = "\n".join(t.texts_only(m.get("content"), f"{param}.content", "tool"))
            messages.append({"role": "tool", "tool_call_id": t.tool_call_id(m, param), "content": text})
        else:
            raise t.unknown_role(m, param, PROVIDER)

    doc: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    doc.update(t.native_fields(body, _NATIVE))
    for key, value in (("temperature", t.number(body, "temperature", 0, 2)), ("seed", t.seed(body)),
                       ("frequency_penalty", t.number(body, "frequency_penalty", -2, 2)),
                       ("presence_penalty", t.number(body, "presence_penalty", -2, 2)),
                       ("max_tokens", t.max_tokens(body)), ("p", t.number(body, "top_p", 0, 1)),
                       ("k", t.integer(body, "top_k")), ("stop_sequences", t.stop_sequences(body))):
        if value is not None:
            doc[key] = value
    _tools(body, doc)
    fmt, js = t.response_format(body)
    if fmt != "text":
        doc["response_format"] = {"type": "json_object"}
        if js is not None:
            doc["response_format"]["json_schema"] = js["schema"]
    return doc


def _user_parts(content: Any, param: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for k, part in enumerate(t.content_parts(content, param)):
        p = f"{param}[{k}]"
        if part["type"] == "text":
            parts.append({"type": "text", "text": part["text"]})
        elif part["type"] == "image_url":
            raw = part.get("image_url")
            image: dict[str, Any] = {"url": t.image_url(part, p)}
            if isinstance(raw, dict) and raw.get("detail"):
                image["detail"] = raw["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise t.unknown_part(part, p, PROVIDER)
    return parts


def _tools(body: Mapping[str, Any], doc: dict[str, Any]) -> None:
    mode, offered, _ = t.tool_choice(body, t.functions(body))
    if mode == "function":
        raise InvalidRequest(f"{PROVIDER} deployments cannot force a named function; "
                             "use tool_choice auto, required or none", param="tool_choice")
    if not offered:
        return
    doc["tools"] = [{"type": "function", "function": fn.openai()} for fn in offered]
    if any(fn.strict for fn in offered):
        doc["strict_tools"] = True
    if mode in ("none", "required"):
        doc["tool_choice"] = mode.upper()


def _usage(u: Any) -> dict[str, Any] | None:
    if not isinstance(u, dict):
        return None
    tokens = u.get("tokens") if isinstance(u.get("tokens"), dict) else u.get("billed_units")
    if not isinstance(tokens, dict):
        return None
    return a.usage(a.count(tokens, "input_tokens"), a.count(tokens, "output_tokens"),
                   cached=a.count(u, "cached_tokens") or None)


def _failure(reason: Any, error: Any) -> UpstreamStatusError | UpstreamTimeout | None:
    if reason == "ERROR":
        return UpstreamStatusError(f"Cohere: {error or 'generation failed'}", status=502)
    if reason == "TIMEOUT":
        return UpstreamTimeout(f"Cohere: {error or 'generation timed out'}")
    return None


class CohereStreamTranslator(a.EventStream):
    """Cohere v2 chat SSE → OpenAI SSE chunks."""

    __slots__ = ("_decoder", "_tools")

    def __init__(self, dep: DeploymentConfig, ctx: CallContext) -> None:
        super().__init__(a.Chunks(f"chatcmpl-{ctx.request_id}", ctx.created, dep.model, ctx.include_usage))
        self._decoder = SSEDecoder(dep.provider.limits.max_event_size)
        self._tools: dict[Any, int] = {}  # Cohere tool-call index → OpenAI tool_calls index

    def _decode(self, data: bytes) -> Iterator[dict[str, Any]]:
        for _, payload in self._decoder.feed(data):
            if self.done:
                return  # nothing after message-end is part of the answer
            if not payload.strip() or payload.strip() == b"[DONE]":
                continue
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise UpstreamProtocolError("Cohere stream sent an event that is not JSON") from None
            if isinstance(doc, dict):
                yield doc

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
            finish = a.finish_reason(FINISH, delta.get("finish_reason"), bool(self._tools))
            return self._end(out, finish, _usage(delta.get("usage")))
        # content-end, tool-call-end, tool-plan-delta, citation-*, debug: nothing to relay.
        return b""

    def finish(self) -> bytes:
        if self._error is not None:
            raise self._error
        tail = self.feed(b"\n\n") if self._decoder.pending and not self.done else b""
        self._finished("Cohere stream ended before message-end")
        return tail


class CohereAdapter:
    stream_content_types = ("text/event-stream",)

    def chat_request(self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool) -> UpstreamRequest:
        doc = chat_body(body, dep.model, stream)
        if dep.max_tokens and "max_tokens" not in doc:
            doc["max_tokens"] = dep.max_tokens
        return UpstreamRequest(
            url=_url(dep, "chat"),
            headers=bearer_headers(dep, "text/event-stream" if stream else "application/json"),
            body=orjson.dumps(doc),
        )

    def chat_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = load_object(data, PROVIDER)
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
                calls.append(a.tool_call(str(call.get("id") or f"call_{ctx.request_id}_{k}"),
                                         str(fn.get("name")), fn.get("arguments") or "{}"))
        usage = _usage(doc.get("usage"))
        text = "".join(texts) if texts or not calls else None
        finish = a.finish_reason(FINISH, doc.get("finish_reason"), bool(calls))
        return orjson.dumps(a.one_choice(ctx, dep.model, text, calls, finish, usage)), usage

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> CohereStreamTranslator:
        return CohereStreamTranslator(dep, ctx)

    def embeddings_request(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> UpstreamRequest:
        doc: dict[str, Any] = {
            "model": dep.model,
            "texts": t.embedding_input(body, _EMBEDDING_FIELDS, PROVIDER),
            # Required by embed v3+; OpenAI has no such field, so documents unless told otherwise.
            "input_type": body.get("input_type") or "search_document",
            "embedding_types": ["float"],
        }
        if (dims := t.integer(body, "dimensions")) is not None:
            doc["output_dimension"] = dims
        doc.update(t.native_fields(body, ("truncate",)))
        return UpstreamRequest(url=_url(dep, "embed"), headers=bearer_headers(dep, "application/json"),
                               body=orjson.dumps(doc))

    def embeddings_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = load_object(data, PROVIDER)
        embeddings = doc.get("embeddings")
        vectors = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
        if not isinstance(vectors, list):
            raise UpstreamProtocolError("Cohere answered 200 without float embeddings")
        meta = doc.get("meta")
        billed = meta.get("billed_units") if isinstance(meta, dict) else None
        tokens = a.count(billed, "input_tokens") if isinstance(billed, dict) else 0
        return a.embeddings_list(vectors, dep.model, a.requested_encoding(ctx), tokens)

    def error_from_response(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamStatusError:
        # Cohere answers {"message": "..."}; 498 is its "invalid token", which clients know as 401.
        return openai_style_error(401 if status == 498 else status, headers, data)


SPEC = ProviderSpec("cohere", CohereAdapter(), default_base_url="https://api.cohere.com", gen_ai_name="cohere")

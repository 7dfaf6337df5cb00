"""Anthropic Messages API (``type: anthropic``), translated to and from OpenAI chat.

Wire format checked against anthropics/anthropic-sdk-python
(``types/message_create_params.py``, ``output_config_param.py``,
``json_output_format_param.py``, ``tool_choice_*_param.py``,
``tool_result_block_param.py``, ``url_image_source_param.py``,
``base64_image_source_param.py``, ``message_delta_usage.py``, ``usage.py``,
``stop_reason.py``, ``_client.py`` for 529) and the shared reference
(wire-formats.md §3). Pure: no I/O, inputs never mutated.

Decisions a reader should know:
- ``system`` and ``developer`` messages become the top-level ``system``
  blocks, in order, wherever they stood (Anthropic has no system role inside
  ``messages``). Consecutive same-role turns are merged; ``tool`` results
  become ``tool_result`` blocks that open the following user turn, so every
  result of a parallel call sits in one turn right after its ``tool_use``.
- ``temperature`` is clamped to 1.0: Anthropic takes 0–1, OpenAI 0–2.
- ``max_tokens`` is required by Anthropic: the client's value, else the
  deployment's ``max_tokens``, else ``FALLBACK_MAX_TOKENS``.
- ``response_format: json_object`` has no native Anthropic mode; the
  documented way used here is a system instruction (``JSON_INSTRUCTION``),
  which works alongside tools but is not enforced. ``json_schema`` maps to
  structured outputs, ``output_config.format``, which is enforced.
- ``reasoning_effort`` maps to ``output_config.effort`` (``minimal`` → ``low``;
  ``none`` asks for nothing). ``user`` / ``safety_identifier`` →
  ``metadata.user_id``. ``n`` > 1, ``seed``, penalties, ``logit_bias`` and
  ``logprobs`` have no Anthropic equivalent and are refused with a 400.
- A content part's ``cache_control`` passes through; OpenAI's
  ``prompt_cache_breakpoint`` becomes ``cache_control: {type: ephemeral}``.
- HTTP 529 (``overloaded_error``) is reported as 503 so every HTTP client
  reads it as "retry later"; it and 429 are retryable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..config.schema import key
from ..config.tree import DeploymentConfig, ProviderOptions
from ..errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from ..sse import DEFAULT_MAX_EVENT, DONE, SSEDecoder, SSEEvent
from . import answers as a
from . import translate as t
from .base import (
    CallContext,
    ProviderSpec,
    UpstreamRequest,
    encode_chunks,
    error_body,
    load_object,
    parse_retry_after,
)

DEFAULT_VERSION = "2023-06-01"
FALLBACK_MAX_TOKENS = 4096
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
JSON_INSTRUCTION = (
    "Respond with one valid JSON object and nothing else: no prose before or after it, no code fences."
)
_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}
_SUPPORTED = frozenset({
    "model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "top_k", "stop", "tools", "tool_choice", "parallel_tool_calls", "response_format", "user",
    "safety_identifier", "reasoning_effort",
})
# stop_reason (types/stop_reason.py) → OpenAI finish_reason.
FINISH = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}
# error.type → HTTP status, for errors that arrive inside a 200 stream.
_ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 503,
}


# --------------------------------------------------------------------------- requests


def build_request(dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
    """The ``/v1/messages`` body for an OpenAI chat request."""
    t.refuse_unsupported(body, _SUPPORTED, dep.provider.type)
    system, turns = convert_messages(body.get("messages") or [])
    fmt, json_schema = t.response_format(body)
    if fmt == "json_object":
        system.append({"type": "text", "text": JSON_INSTRUCTION})
    out: dict[str, Any] = {
        "model": dep.model,
        "max_tokens": t.max_tokens(body) or dep.max_tokens or FALLBACK_MAX_TOKENS,
        "messages": turns,
    }
    if system:
        out["system"] = system
    if (temperature := t.number(body, "temperature", 0, 2)) is not None:
        out["temperature"] = min(temperature, 1.0)
    if (top_p := t.number(body, "top_p", 0, 1)) is not None:
        out["top_p"] = top_p
    if (top_k := t.integer(body, "top_k")) is not None:
        out["top_k"] = top_k
    if stop := t.stop_sequences(body):
        out["stop_sequences"] = stop
    if user := t.end_user(body):
        out["metadata"] = {"user_id": user}
    _tools(body, out)
    config: dict[str, Any] = {}
    if json_schema is not None:
        config["format"] = {"type": "json_schema", "schema": json_schema["schema"]}
    effort = t.reasoning_effort(body)
    if effort in _EFFORT:
        config["effort"] = _EFFORT[effort]
    if config:
        out["output_config"] = config
    if stream:
        out["stream"] = True
    return out


def _tools(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    fns = t.functions(body)
    mode, offered, forced = t.tool_choice(body, fns)
    parallel = t.parallel_tool_calls(body)
    if not offered:
        return
    tools = []
    for fn in offered:
        tool: dict[str, Any] = {"name": fn.name}
        if fn.description:
            tool["description"] = fn.description
        schema = fn.parameters if fn.parameters is not None else {"type": "object", "properties": {}}
        if schema.get("type") != "object":
            raise InvalidRequest(f"function {fn.name!r}: Anthropic tools take parameters of type 'object'",
                                 param="tools")
        tool["input_schema"] = schema
        if fn.strict:
            tool["strict"] = True
        tools.append(tool)
    out["tools"] = tools
    choice: dict[str, Any]
    if mode == "none":
        choice = {"type": "none"}
    elif mode == "required":
        choice = {"type": "any"}
    elif mode == "function":
        choice = {"type": "tool", "name": forced}
    else:
        choice = {"type": "auto"}
    if not parallel and mode != "none":
        choice["disable_parallel_tool_use"] = True
    if choice != {"type": "auto"}:
        out["tool_choice"] = choice


def convert_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI messages → (system blocks, alternating user/assistant turns)."""
    system: list[dict[str, Any]] = []
    turns: list[t.TurnEntry] = []
    for i, m in enumerate(messages):
        param = f"messages[{i}]"
        kind = m.get("role")
        if kind in ("system", "developer"):
            for j, part in enumerate(t.content_parts(m.get("content"), f"{param}.content")):
                if part["type"] != "text":
                    raise t.not_text(f"{param}.content", j, kind)
                if part["text"]:
                    system.append(_text_block(part))  # parts, not texts: cache_control survives
        elif kind == "user":
            turns.append(("user", _user_blocks(m.get("content"), f"{param}.content"), ()))
        elif kind == "assistant":
            turns.append(("assistant", _assistant_blocks(m, param), ()))
        elif kind == "tool":
            turns.append(("user", (), (_tool_result(m, param),)))
        else:
            raise t.unknown_role(m, param, "Anthropic")
    return system, t.alternate(turns, "content")


def _text_block(part: Mapping[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": part["text"]}
    _cache(part, block)
    return block


def _cache(part: Mapping[str, Any], block: dict[str, Any]) -> None:
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    elif isinstance(part.get("prompt_cache_breakpoint"), dict):
        block["cache_control"] = {"type": "ephemeral"}


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    blocks = []
    for j, part in enumerate(t.content_parts(content, param)):
        p = f"{param}[{j}]"
        kind = part["type"]
        if kind == "text":
            if part["text"]:
                blocks.append(_text_block(part))
            continue
        if kind == "image_url":
            url = t.image_url(part, p)
            if url.startswith("data:"):
                mime, data = t.parse_data_url(url, f"{p}.image_url.url")
                if mime not in IMAGE_TYPES:
                    raise InvalidRequest(f"{p}: Anthropic takes JPEG, PNG, GIF or WebP images, not {mime}", param=p)
                block: dict[str, Any] = {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
            elif t.is_http_url(url):
                block = {"type": "image", "source": {"type": "url", "url": url}}
            else:
                raise InvalidRequest(f"{p}.image_url.url must be an http(s) URL or a data URL", param=p)
        elif kind == "file":
            block = _document(part, p)
        else:
            raise t.unknown_part(part, p, "Anthropic")
        _cache(part, block)
        blocks.append(block)
    return blocks


def _document(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    mime, data, filename = t.file_data(part, param)
    if mime != "application/pdf":
        raise InvalidRequest(f"{param}: Anthropic documents must be PDF, not {mime}", param=param)
    block: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": mime, "data": data}}
    if filename:
        block["title"] = filename
    return block


def _assistant_blocks(m: Mapping[str, Any], param: str) -> list[dict[str, Any]]:
    texts, calls = t.assistant_message(m, param, "Anthropic")
    blocks = [_text_block(part) for part in texts] if texts else []
    for call_id, name, args in calls:
        blocks.append({"type": "tool_use", "id": t.safe_id(call_id), "name": name, "input": args})
    return blocks


def _tool_result(m: Mapping[str, Any], param: str) -> dict[str, Any]:
    call_id = t.tool_call_id(m, param)
    texts = t.texts_only(m.get("content"), f"{param}.content", "tool")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": t.safe_id(call_id)}
    if len(texts) == 1:
        block["content"] = texts[0]
    elif texts:
        block["content"] = [{"type": "text", "text": s} for s in texts]
    return block


def messages_url(dep: DeploymentConfig) -> str:
    base = dep.provider.base_url
    return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"


@dataclass(frozen=True, slots=True)
class AnthropicOptions(ProviderOptions):
    anthropic_version: str | None = key(None, kind="str", nonempty=True,
                                        help=f"the anthropic-version header (default {DEFAULT_VERSION})")
    beta: tuple[str, ...] | None = key(None, kind="list",
                                       help="anthropic-beta features, sent on every request; on /v1/messages "
                                            "also the client's anthropic-beta values allowed (others: 400)")


def request_headers(dep: DeploymentConfig, stream: bool) -> dict[str, str]:
    p = dep.provider
    o = p.options if isinstance(p.options, AnthropicOptions) else AnthropicOptions()
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if stream else "application/json",
        "anthropic-version": o.anthropic_version or DEFAULT_VERSION,
    }
    if p.api_key:
        headers["x-api-key"] = p.api_key
    if beta := o.beta:
        headers["anthropic-beta"] = ",".join(beta)
    headers.update(p.headers)
    return headers


# --------------------------------------------------------------------------- answers


def openai_usage(u: Any) -> dict[str, Any] | None:
    """Anthropic usage → OpenAI: prompt counts every input token, cached or not."""
    if not isinstance(u, dict):
        return None
    read = a.count(u, "cache_read_input_tokens")
    prompt = a.count(u, "input_tokens") + a.count(u, "cache_creation_input_tokens") + read
    return a.usage(prompt, a.count(u, "output_tokens"), cached=read)


def completion_from_message(doc: Mapping[str, Any], ctx: CallContext) -> dict[str, Any]:
    content = doc.get("content")
    if not isinstance(content, list):
        raise UpstreamProtocolError("anthropic answered 200 without a 'content' array")
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append(a.tool_call(str(block.get("id")), str(block.get("name")), block.get("input") or {}))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking", "")))
        # redacted_thinking and server-tool blocks have no OpenAI form.
    text = "".join(texts) if texts or not calls else None
    choice = a.choice(a.message(text, calls, "".join(thinking) or None),
                      a.finish_reason(FINISH, doc.get("stop_reason"), bool(calls)))
    return a.completion(
        str(doc.get("id") or f"chatcmpl-{ctx.request_id}"), ctx.created,
        str(doc.get("model") or ctx.public_model), [choice], openai_usage(doc.get("usage")),
    )


class AnthropicStream:
    """Anthropic SSE events → OpenAI chunks, one event at a time, nothing held back.

    Tool calls get OpenAI indexes in the order their ``tool_use`` blocks start
    (counting tool blocks only, not Anthropic's block index), and each
    ``input_json_delta`` is relayed the moment it arrives. Usage starts from
    ``message_start`` and is replaced field by field by the cumulative counts
    in ``message_delta``. The stream is complete only at ``message_stop``.
    """

    __slots__ = ("_decoder", "_ctx", "_chunks", "_tools", "_args_seen", "_start_input", "_usage",
                 "usage", "done")

    def __init__(self, ctx: CallContext, max_event_size: int = DEFAULT_MAX_EVENT) -> None:
        self._decoder = SSEDecoder(max_event_size)
        self._ctx = ctx
        self._chunks: a.Chunks | None = None
        self._tools: dict[Any, int] = {}  # Anthropic block index → OpenAI tool_calls index
        self._args_seen: set[Any] = set()
        self._start_input: dict[Any, Any] = {}
        self._usage: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""  # anything after message_stop is not part of the answer
        events = self._decoder.feed(data)
        return self._translate(events) if events else b""

    def finish(self) -> bytes:
        tail = self._translate(self._decoder.finish()) if self._decoder.pending and not self.done else b""
        if not self.done:
            raise UpstreamProtocolError("anthropic stream ended before message_stop")
        return tail

    def _translate(self, events: list[SSEEvent]) -> bytes:
        out: list[dict[str, Any]] = []
        for event in events:
            if self.done:
                break
            self._event(event, out)
        data = encode_chunks(out) if out else b""
        return data + DONE if self.done else data

    def _event(self, event: SSEEvent, out: list[dict[str, Any]]) -> None:
        try:
            doc = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("anthropic stream sent an event that is not JSON") from None
        if not isinstance(doc, dict):
            raise UpstreamProtocolError("anthropic stream sent an event that is not a JSON object")
        kind = doc.get("type") or event.event
        if kind == "message_start":
            msg = _obj(doc.get("message"))
            ctx = self._ctx
            self._chunks = a.Chunks(str(msg.get("id") or f"chatcmpl-{ctx.request_id}"), ctx.created,
                                    str(msg.get("model") or ctx.public_model), ctx.include_usage)
            self._read_usage(msg.get("usage"))
            out.append(self._chunks.role())
            return
        if kind == "error":
            raise stream_error(doc)
        if kind not in ("content_block_start", "content_block_delta", "content_block_stop",
                        "message_delta", "message_stop"):
            return  # ping, and event types added later (Anthropic's versioning policy)
        ch = self._chunks
        if ch is None:
            raise UpstreamProtocolError(f"anthropic stream sent {kind} before message_start")
        index = doc.get("index")
        if kind == "content_block_delta":
            delta = _obj(doc.get("delta"))
            dtype = delta.get("type")
            if dtype == "text_delta" and delta.get("text"):
                out.append(ch.text(delta["text"]))
            elif dtype == "input_json_delta":
                k = self._tools.get(index)
                if k is None:
                    raise UpstreamProtocolError("anthropic stream sent input_json_delta outside a tool_use block")
                piece = delta.get("partial_json")
                if isinstance(piece, str) and piece:
                    self._args_seen.add(index)
                    out.append(ch.tool_arguments(k, piece))
            elif dtype == "thinking_delta" and delta.get("thinking"):
                out.append(ch.delta({"reasoning_content": delta["thinking"]}))
            # signature_delta, citations_delta: nothing in OpenAI's format carries them.
        elif kind == "content_block_start":
            block = _obj(doc.get("content_block"))
            btype = block.get("type")
            if btype == "tool_use":
                k = self._tools[index] = len(self._tools)
                if block.get("input"):
                    self._start_input[index] = block["input"]
                out.append(ch.tool_start(k, str(block.get("id")), str(block.get("name"))))
            elif btype == "text" and block.get("text"):
                out.append(ch.text(block["text"]))
            elif btype == "thinking" and block.get("thinking"):
                out.append(ch.delta({"reasoning_content": block["thinking"]}))
        elif kind == "content_block_stop":
            k = self._tools.get(index)
            if k is not None and index not in self._args_seen:
                # No argument deltas: send the whole input so clients always get valid JSON.
                args = orjson.dumps(self._start_input.get(index) or {}).decode()
                out.append(ch.tool_arguments(k, args))
                self._args_seen.add(index)
        elif kind == "message_delta":
            self._read_usage(doc.get("usage"))
            delta = _obj(doc.get("delta"))
            if delta.get("stop_reason"):
                out.append(ch.finish(a.finish_reason(FINISH, delta["stop_reason"], bool(self._tools))))
        else:  # message_stop
            self.done = True
            out += ch.usage_if_asked(self.usage)

    def _read_usage(self, u: Any) -> None:
        if isinstance(u, dict):
            self._usage.update({k: v for k, v in u.items() if v is not None})
            self.usage = openai_usage(self._usage)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def stream_error(doc: Mapping[str, Any]) -> UpstreamStatusError:
    err = _obj(doc.get("error"))
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    message = str(err.get("message") or "anthropic reported an error mid-stream")
    return UpstreamStatusError(message, status=_ERROR_STATUS.get(etype or "", 502), code=etype)


# --------------------------------------------------------------------------- adapter


class AnthropicAdapter:
    stream_content_types = ("text/event-stream",)

    def chat_request(
        self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        return UpstreamRequest(
            url=messages_url(dep),
            headers=request_headers(dep, stream),
            body=orjson.dumps(build_request(dep, body, stream=stream)),
        )

    def chat_response(
        self, dep: DeploymentConfig, data: bytes, ctx: CallContext
    ) -> tuple[bytes, dict[str, Any] | None]:
        out = completion_from_message(load_object(data, "anthropic"), ctx)
        return orjson.dumps(out), out.get("usage")

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> AnthropicStream:
        return AnthropicStream(ctx, dep.provider.limits.max_event_size)

    def embeddings_request(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> UpstreamRequest:
        raise InvalidRequest(
            f"model {body.get('model')!r} is served by Anthropic, which has no embeddings API",
            param="model",
        )

    def embeddings_response(
        self, dep: DeploymentConfig, data: bytes, ctx: CallContext
    ) -> tuple[bytes, dict[str, Any] | None]:
        raise UpstreamProtocolError("anthropic has no embeddings API")

    def error_from_response(
        self, status: int, headers: Mapping[str, str], data: bytes
    ) -> UpstreamStatusError:
        """``{"type": "error", "error": {"type", "message"}, "request_id"}`` → our error."""
        etype: str | None = None
        doc, message = error_body(status, data, "anthropic")
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            err = doc["error"]
            etype = err.get("type") if isinstance(err.get("type"), str) else None
            message = str(err.get("message") or message)
            if isinstance(doc.get("request_id"), str):
                message = f"{message} (anthropic request_id {doc['request_id']})"
        if status == 529:  # overloaded: the SDK retries it like a 5xx
            status, etype = 503, etype or "overloaded_error"
        return UpstreamStatusError(message, status=status, code=etype, retry_after=parse_retry_after(headers))


def models_request(dep: DeploymentConfig) -> UpstreamRequest:
    """GET /v1/models (https://docs.anthropic.com/en/api/models-list)."""
    base = dep.provider.base_url
    url = f"{base}/models" if base.endswith("/v1") else f"{base}/v1/models"
    return UpstreamRequest(url=url, headers=request_headers(dep, False), body=b"", method="GET")


SPEC = ProviderSpec("anthropic", AnthropicAdapter(), AnthropicOptions, "https://api.anthropic.com", "anthropic",
                    models_request=models_request)

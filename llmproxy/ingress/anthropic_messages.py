"""Anthropic Messages in, the internal OpenAI chat form out, and back.

Used by ``POST /v1/messages`` for every deployment that is not ``type:
anthropic`` (those get the client's body as it is: see
``providers/anthropic.py`` ``passthrough_request``). Pure: no I/O, no clock,
inputs never mutated. Shapes follow anthropic-sdk-python
``types/message_create_params.py``, ``message.py``, ``raw_message_stream_event.py``,
``stop_reason.py`` and the accumulator ``lib/streaming/_messages.py``
(``accumulate_event``) that ``messages.stream(...).get_final_message()`` runs.

Invariant: every top-level field and every block field of a Messages request
is translated, accepted because it asks for nothing the target can refuse
(``IGNORED``, each with its reason), or refused with a 400 that names it.

Decisions a reader should know:
- ``tool_result`` blocks become ``tool`` messages in the order they stood;
  ``is_error: true`` prefixes the result with ``TOOL_ERROR_PREFIX`` (OpenAI's
  tool message has no error flag, and the model must still be told).
- ``top_k`` rides in the internal body under its own name: the adapters that
  have it (Gemini, Bedrock, Cohere, Anthropic) translate it, the others refuse
  it by name (``providers/translate.py``); OpenAI-compatible servers get it
  as it is (vLLM takes it).
- ``cache_control`` (a prompt-caching hint) is accepted and not forwarded on
  translated routes: it cannot change the answer, as ``prompt_cache_key`` on
  the chat route. ``thinking`` other than ``{"type": "disabled"}`` is refused.
- Answers: ``stop`` → ``end_turn`` (``stop_sequence`` when the upstream names
  the matched string, as vLLM's ``stop_reason`` does), ``length`` →
  ``max_tokens``, ``tool_calls`` → ``tool_use``, ``content_filter`` →
  ``refusal``. ``input_tokens`` excludes cached prompt tokens, which go to
  ``cache_read_input_tokens`` (Anthropic counts them apart). Reasoning text
  from the upstream is not relayed: a thinking block needs a signature the
  client would send back, and thinking was not asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import InvalidRequest, ProxyError, UpstreamProtocolError
from ..sse import DEFAULT_MAX_EVENT, SSEDecoder

TOOL_ERROR_PREFIX = "Error: "

IGNORED: Mapping[str, str] = {
    "cache_control": "a prompt-caching hint; it cannot change the answer",
}
_TOP = frozenset({
    "model", "messages", "system", "max_tokens", "stop_sequences", "temperature", "top_p", "top_k",
    "metadata", "tools", "tool_choice", "stream", "thinking", "cache_control",
})
_IMAGE_SOURCES = frozenset({"base64", "url"})
# OpenAI finish_reason → Anthropic stop_reason (types/stop_reason.py).
STOP_REASON = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
    "content_filter": "refusal",
}
# HTTP status → Anthropic error.type (docs: "Errors"; the SDK's _error_classes.py).
_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 504: "timeout_error", 529: "overloaded_error",
}


def _refuse(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' {why}", param=param, code="unsupported_parameter")


# --------------------------------------------------------------------------- requests


def to_chat(body: Mapping[str, Any], *, count_only: bool = False) -> dict[str, Any]:
    """A Messages request → the internal OpenAI chat body (``count_only``: a
    count_tokens request, which has no ``max_tokens`` and is never sent)."""
    for key, value in body.items():
        if key not in _TOP and value is not None:
            raise _refuse(key, "cannot be translated for a deployment that is not Anthropic")
    out: dict[str, Any] = {"model": body.get("model")}
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        messages.append({"role": "system", "content": _system(system)})
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' is required and must be a non-empty array", param="messages")
    for i, m in enumerate(raw):
        messages += _message(m, f"messages[{i}]")
    out["messages"] = messages
    mt = body.get("max_tokens")
    if not count_only:
        if type(mt) is not int or mt < 1:
            raise InvalidRequest("'max_tokens' is required and must be an integer >= 1", param="max_tokens")
        out["max_tokens"] = mt
    for key, lo, hi in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)):
        value = body.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise InvalidRequest(f"'{key}' must be a number from {lo:g} to {hi:g}", param=key)
            out[key] = value
    top_k = body.get("top_k")
    if top_k is not None:
        if type(top_k) is not int or top_k < 1:
            raise InvalidRequest("'top_k' must be an integer >= 1", param="top_k")
        out["top_k"] = top_k
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise InvalidRequest("'stop_sequences' must be an array of non-empty strings", param="stop_sequences")
        if stop:
            out["stop"] = list(stop)
    _metadata(body.get("metadata"), out)
    thinking = body.get("thinking")
    if thinking is not None and thinking != {"type": "disabled"}:
        raise _refuse("thinking", "(extended thinking) cannot be translated for a deployment that is not Anthropic")
    _tools(body, out)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    if stream:
        out["stream"] = True
        # The closing message_delta carries usage: ask every adapter for it.
        out["stream_options"] = {"include_usage": True}
    return out


def _metadata(meta: Any, out: dict[str, Any]) -> None:
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise InvalidRequest("'metadata' must be an object", param="metadata")
    for key, value in meta.items():
        if key != "user_id" and value is not None:
            raise _refuse(f"metadata.{key}", "cannot be translated for a deployment that is not Anthropic")
    user = meta.get("user_id")
    if user is not None:
        if not isinstance(user, str):
            raise InvalidRequest("'metadata.user_id' must be a string", param="metadata.user_id")
        if user:
            out["user"] = user


def _system(system: Any) -> str | list[dict[str, Any]]:
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise InvalidRequest("'system' must be a string or an array of text blocks", param="system")
    return [_text_part(b, f"system[{j}]") for j, b in enumerate(system)]


def _block(b: Any, param: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(b, dict) or not isinstance(b.get("type"), str):
        raise InvalidRequest(f"'{param}' must be a content block with a 'type'", param=param)
    return b["type"], b


def _check_keys(b: Mapping[str, Any], allowed: frozenset[str], param: str) -> None:
    for key, value in b.items():
        if key not in allowed and key not in IGNORED and value is not None:
            raise _refuse(f"{param}.{key}", "cannot be translated for a deployment that is not Anthropic")


_TEXT_KEYS = frozenset({"type", "text"})
_IMAGE_KEYS = frozenset({"type", "source"})
_TOOL_USE_KEYS = frozenset({"type", "id", "name", "input"})
_TOOL_RESULT_KEYS = frozenset({"type", "tool_use_id", "content", "is_error"})


def _text_part(b: Any, param: str) -> dict[str, Any]:
    kind, b = _block(b, param)
    if kind != "text":
        raise _refuse(f"{param}.type", f"= {kind!r} is not available here (text blocks only)")
    _check_keys(b, _TEXT_KEYS, param)
    text = b.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"'{param}.text' must be a string", param=f"{param}.text")
    return {"type": "text", "text": text}


def _image_part(b: Mapping[str, Any], param: str) -> dict[str, Any]:
    _check_keys(b, _IMAGE_KEYS, param)
    src = b.get("source")
    kind = src.get("type") if isinstance(src, dict) else None
    if kind not in _IMAGE_SOURCES:
        raise _refuse(f"{param}.source", "must be a base64 or url image source on this route")
    assert isinstance(src, dict)
    _check_keys(src, frozenset({"type", "media_type", "data"} if kind == "base64" else {"type", "url"}),
                f"{param}.source")
    if kind == "url":
        url = src.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f"'{param}.source.url' must be a URL", param=f"{param}.source.url")
    else:
        mime, data = src.get("media_type"), src.get("data")
        if not isinstance(mime, str) or not isinstance(data, str) or not data:
            raise InvalidRequest(f"'{param}.source' needs media_type and data strings", param=f"{param}.source")
        url = f"data:{mime};base64,{data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _message(m: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(m, dict):
        raise InvalidRequest(f"'{param}' must be an object", param=param)
    for key, value in m.items():
        if key not in ("role", "content") and value is not None:
            raise _refuse(f"{param}.{key}", "is not a field of a message")
    role = m.get("role")
    content = m.get("content")
    if role not in ("user", "assistant"):
        raise InvalidRequest(f"'{param}.role' must be 'user' or 'assistant'", param=f"{param}.role")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}.content' must be a string or an array of blocks", param=f"{param}.content")
    if role == "assistant":
        return [_assistant(content, param)]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, raw in enumerate(content):
        p = f"{param}.content[{j}]"
        kind, b = _block(raw, p)
        if kind == "text":
            parts.append(_text_part(b, p))
        elif kind == "image":
            parts.append(_image_part(b, p))
        elif kind == "tool_result":
            if parts:  # keep the order the client wrote
                out.append({"role": "user", "content": parts})
                parts = []
            out.append(_tool_result(b, p))
        else:
            raise _refuse(f"{p}.type", f"= {kind!r} cannot be translated for a deployment that is not Anthropic")
    if parts or not out:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(content: list[Any], param: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, raw in enumerate(content):
        p = f"{param}.content[{j}]"
        kind, b = _block(raw, p)
        if kind == "text":
            texts.append(_text_part(b, p)["text"])
        elif kind == "tool_use":
            _check_keys(b, _TOOL_USE_KEYS, p)
            call_id, name, args = b.get("id"), b.get("name"), b.get("input")
            if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(args, dict):
                raise InvalidRequest(f"'{p}' needs an id, a name and an object input", param=p)
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": name, "arguments": orjson.dumps(args).decode()}})
        else:
            raise _refuse(f"{p}.type", f"= {kind!r} cannot be translated for a deployment that is not Anthropic")
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        out["tool_calls"] = calls
    return out


def _tool_result(b: Mapping[str, Any], param: str) -> dict[str, Any]:
    _check_keys(b, _TOOL_RESULT_KEYS, param)
    call_id = b.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"'{param}.tool_use_id' must be a non-empty string", param=f"{param}.tool_use_id")
    content = b.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "".join(_text_part(c, f"{param}.content[{k}]")["text"] for k, c in enumerate(content))
    else:
        raise InvalidRequest(f"'{param}.content' must be a string or text blocks", param=f"{param}.content")
    is_error = b.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise InvalidRequest(f"'{param}.is_error' must be a boolean", param=f"{param}.is_error")
    if is_error:
        text = TOOL_ERROR_PREFIX + text
    return {"role": "tool", "tool_call_id": call_id, "content": text}


_TOOL_KEYS = frozenset({"name", "description", "input_schema", "type", "strict"})


def _tools(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("'tools' must be an array", param="tools")
        fns = []
        for i, tool in enumerate(tools):
            p = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise InvalidRequest(f"'{p}' must be an object", param=p)
            if tool.get("type") not in (None, "custom"):
                raise _refuse(f"{p}.type", f"= {tool['type']!r} (a server tool) runs only on Anthropic")
            _check_keys(tool, _TOOL_KEYS, p)
            name, schema = tool.get("name"), tool.get("input_schema")
            if not isinstance(name, str) or not name or not isinstance(schema, dict):
                raise InvalidRequest(f"'{p}' needs a name and an input_schema object", param=p)
            fn: dict[str, Any] = {"name": name, "parameters": schema}
            if isinstance(tool.get("description"), str):
                fn["description"] = tool["description"]
            if tool.get("strict") is True:
                fn["strict"] = True
            fns.append({"type": "function", "function": fn})
        if fns:
            out["tools"] = fns
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise InvalidRequest("'tool_choice' must be an object", param="tool_choice")
    kind = choice.get("type")
    keys = {"type", "disable_parallel_tool_use"} | ({"name"} if kind == "tool" else set())
    _check_keys(choice, frozenset(keys), "tool_choice")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise InvalidRequest("'tool_choice.type' must be auto, any, tool (with a name) or none",
                             param="tool_choice")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False


# --------------------------------------------------------------------------- answers


def message_id(upstream_id: Any, fallback: str) -> str:
    value = upstream_id if isinstance(upstream_id, str) and upstream_id else fallback
    return value if value.startswith("msg_") else f"msg_{value}"


def usage_of(u: Any) -> dict[str, int]:
    """OpenAI usage → Anthropic's: cached prompt tokens counted apart, as Anthropic does."""
    if not isinstance(u, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    details = u.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = cached if type(cached) is int else 0
    prompt = u.get("prompt_tokens")
    completion = u.get("completion_tokens")
    out = {
        "input_tokens": max((prompt if type(prompt) is int else 0) - cached, 0),
        "output_tokens": completion if type(completion) is int else 0,
    }
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def stop_of(finish: Any, matched: Any) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for an OpenAI finish_reason; ``matched`` is
    the stop string an upstream reports (vLLM's ``stop_reason``), if any."""
    if finish == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    return STOP_REASON.get(finish, "end_turn") if isinstance(finish, str) else "end_turn", None


def _tool_input(arguments: Any) -> Any:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("upstream answered a tool call whose arguments are not JSON") from None


def from_completion(data: bytes, model: str, fallback_id: str) -> bytes:
    """An OpenAI ``chat.completion`` (bytes) → an Anthropic ``message`` (bytes)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("upstream answered with a body that is not JSON") from None
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamProtocolError("upstream answered without a choice")
    choice = choices[0]
    msg: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    text = msg.get("content")
    if isinstance(text, list):  # some compatible servers answer with parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    refusal = msg.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "text", "text": refusal})
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        content.append({"type": "tool_use", "id": str(call.get("id") or f"toolu_{len(content)}"),
                        "name": str(fn.get("name", "")), "input": _tool_input(fn.get("arguments"))})
    finish = choice.get("finish_reason")
    if isinstance(refusal, str) and refusal:
        finish = "content_filter"
    reason, sequence = stop_of(finish, choice.get("stop_reason"))
    out = {
        "id": message_id(doc.get("id"), fallback_id), "type": "message", "role": "assistant",
        "model": doc.get("model") if isinstance(doc.get("model"), str) else model,
        "content": content, "stop_reason": reason, "stop_sequence": sequence,
        "usage": usage_of(doc.get("usage")),
    }
    return orjson.dumps(out)


# --------------------------------------------------------------------------- streams


def event(kind: str, doc: dict[str, Any]) -> bytes:
    """One Anthropic SSE event; the SDK skips events without an ``event:`` line."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(doc) + b"\n\n"


class MessagesStream:
    """The internal OpenAI chunk stream (SSE bytes) → Anthropic's event sequence.

    ``message_start`` goes out with the first chunk; each text run and each
    tool call is one content block (opened on its first delta, closed when
    another block opens or the stream ends), and tool arguments go out as
    ``input_json_delta`` pieces the moment they arrive. ``[DONE]`` closes the
    message (``message_delta`` with stop reason and usage, ``message_stop``);
    an error chunk becomes an ``error`` event. Whole events only, so each
    output piece can be screened on its own.
    """

    __slots__ = ("_decoder", "_model", "_id", "_started", "_block", "_kind", "_tools", "_finish",
                 "_matched", "_usage", "done")

    def __init__(self, model: str, fallback_id: str, max_event_size: int = DEFAULT_MAX_EVENT) -> None:
        self._decoder = SSEDecoder(max_event_size)
        self._model = model
        self._id = fallback_id
        self._started = False
        self._block = -1  # the open block's index; -1: none open
        self._kind: Any = None  # "text" or the OpenAI tool index of the open block
        self._tools: dict[Any, int] = {}  # OpenAI tool_calls index → block index
        self._finish: Any = None
        self._matched: Any = None
        self._usage: Any = None
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        out: list[bytes] = []
        for _, payload in self._decoder.feed(data):
            if self.done:
                break
            self._chunk(payload, out)
        return b"".join(out)

    def finish(self) -> bytes:
        out: list[bytes] = []
        if not self.done:
            for _, payload in self._decoder.finish():
                self._chunk(payload, out)
        if not self.done:
            raise UpstreamProtocolError("upstream stream ended before its end")
        return b"".join(out)

    def _start(self, doc: Mapping[str, Any], out: list[bytes]) -> None:
        self._started = True
        model = doc.get("model")
        out.append(event("message_start", {"type": "message_start", "message": {
            "id": message_id(doc.get("id"), self._id), "type": "message", "role": "assistant",
            "model": model if isinstance(model, str) and model else self._model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
        }}))

    def _close_block(self, out: list[bytes]) -> None:
        if self._kind is not None:
            out.append(event("content_block_stop", {"type": "content_block_stop", "index": self._block}))
            self._kind = None

    def _open(self, kind: Any, block: dict[str, Any], out: list[bytes]) -> int:
        self._close_block(out)
        self._block += 1
        self._kind = kind
        out.append(event("content_block_start",
                         {"type": "content_block_start", "index": self._block, "content_block": block}))
        return self._block

    def _chunk(self, payload: bytes, out: list[bytes]) -> None:
        if payload[:6] == b"[DONE]":
            self._end(out)
            return
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("upstream stream sent an event that is not JSON") from None
        if not isinstance(doc, dict):
            raise UpstreamProtocolError("upstream stream sent an event that is not a JSON object")
        if isinstance(doc.get("error"), dict):
            out.append(event("error", error_doc_from(doc["error"])))
            self.done = True
            return
        if not self._started:
            self._start(doc, out)
        if isinstance(doc.get("usage"), dict):
            self._usage = doc["usage"]
        for choice in doc.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                self._matched = choice.get("stop_reason")

    def _delta(self, delta: Mapping[str, Any], out: list[bytes]) -> None:
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                if self._kind != "text":
                    self._open("text", {"type": "text", "text": ""}, out)
                out.append(event("content_block_delta", {"type": "content_block_delta", "index": self._block,
                                                         "delta": {"type": "text_delta", "text": text}}))
        for tc in delta.get("tool_calls") or ():
            if not isinstance(tc, dict):
                continue
            k = tc.get("index", 0)
            fn: dict[str, Any] = tc["function"] if isinstance(tc.get("function"), dict) else {}
            index = self._tools.get(k)
            if index is None:
                index = self._tools[k] = self._open(("tool", k), {
                    "type": "tool_use", "id": str(tc.get("id") or f"toolu_{k}"),
                    "name": str(fn.get("name") or ""), "input": {}}, out)
            args = fn.get("arguments")
            if isinstance(args, str) and args:
                out.append(event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                         "delta": {"type": "input_json_delta", "partial_json": args}}))

    def _end(self, out: list[bytes]) -> None:
        if not self._started:
            self._start({}, out)
        self._close_block(out)
        reason, sequence = stop_of(self._finish, self._matched)
        if reason == "end_turn" and self._tools:
            reason = "tool_use"
        out.append(event("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": reason, "stop_sequence": sequence},
                                           "usage": usage_of(self._usage)}))
        out.append(event("message_stop", {"type": "message_stop"}))
        self.done = True


# --------------------------------------------------------------------------- errors


def error_type(status: int) -> str:
    known = _ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "api_error" if status >= 500 else "invalid_request_error"


def render_error(exc: ProxyError) -> tuple[int, dict[str, Any]]:
    """(status, body) in Anthropic's shape; an upstream's overload is a 529 as Anthropic sends it."""
    status = exc.status
    if exc.code == "overloaded_error":
        status = 529
    return status, {"type": "error", "error": {"type": error_type(status), "message": exc.message}}


def error_doc_from(err: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI error object seen mid-stream → Anthropic's ``error`` event body."""
    etype = err.get("type")
    known = set(_ERROR_TYPES.values()) | {"api_error", "invalid_request_error"}
    return {"type": "error", "error": {
        "type": etype if etype in known else "api_error",
        "message": str(err.get("message") or "upstream reported an error mid-stream"),
    }}


def error_event(exc: ProxyError) -> bytes:
    return event("error", render_error(exc)[1])

"""Pieces shared by the adapters that translate to a provider's native format.

Reading the client's OpenAI request (message text, data-URL images, tool-call
arguments, which fields a provider cannot honour) and writing OpenAI answers
(``chat.completion``, ``chat.completion.chunk``, usage, embeddings lists).
Pure functions over dicts; nothing here mutates its input.

The "nothing the client sent is silently dropped" rule (DESIGN.md rule 4) is
``reject_unsupported``: a field the target provider has no equivalent for is
a 400 naming the field, unless its value is the neutral default (``n: 1``,
``logprobs: false``, a zero penalty, ``null``) or it does not change the
answer (``user``, ``metadata``, ...).
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..config import DeploymentConfig
from ..errors import InvalidRequest

# Fields every adapter handles itself or that never change the generated answer.
ALWAYS_ACCEPTED = frozenset(
    {"model", "messages", "stream", "stream_options", "user", "metadata", "store",
     "service_tier", "safety_identifier", "prompt_cache_key"}
)
# Values that ask for nothing beyond the default, so they need no equivalent.
NEUTRAL_VALUES: Mapping[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "parallel_tool_calls": (True,),
    "logit_bias": ({},),
    "response_format": ({"type": "text"},),
    "modalities": (["text"],),
}


def reject_unsupported(body: Mapping[str, Any], handled: Iterable[str], provider: str) -> None:
    handled = set(handled)
    for key, value in body.items():
        if key in handled or key in ALWAYS_ACCEPTED or value is None:
            continue
        if value in NEUTRAL_VALUES.get(key, ()):
            continue
        raise InvalidRequest(
            f"'{key}' is not supported by {provider} deployments", param=key, code="unsupported_parameter"
        )


# --------------------------------------------------------------------------- reading requests


def text_of(content: Any, where: str) -> str:
    """A message ``content`` that may only hold text (system, tool, assistant)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{where}.content[{i}] must be a text part here", param=f"{where}.content")
            texts.append(part["text"])
        return "\n".join(texts)
    raise InvalidRequest(f"{where}.content must be a string or an array of parts", param=f"{where}.content")


def content_parts(content: Any, where: str) -> list[dict[str, Any]]:
    """User content as a list of parts (a string becomes one text part)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        for i, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise InvalidRequest(f"{where}.content[{i}] must be an object with a 'type'",
                                     param=f"{where}.content")
        return content
    if content is None:
        return []
    raise InvalidRequest(f"{where}.content must be a string or an array of parts", param=f"{where}.content")


def image_url(part: Mapping[str, Any], where: str) -> str:
    raw = part.get("image_url")
    url = raw.get("url") if isinstance(raw, dict) else raw
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}.image_url.url must be a string", param=where)
    return url


def data_url(url: str, where: str, provider: str) -> tuple[str, str]:
    """``data:image/png;base64,XXXX`` → (``image/png``, ``XXXX``).

    Providers that take image bytes only (Bedrock, Ollama) get them from a
    data URL: an adapter does no I/O. An http(s) link reaches an adapter only
    when its provider does not allow ``llmproxy/fetch.py`` to download it.
    """
    if not url.startswith("data:"):
        raise InvalidRequest(
            f"{where}: {provider} deployments take images as base64 data URLs "
            "(data:image/png;base64,...); links are downloaded by the proxy only for providers "
            "with allow_image_urls: true",
            param=where, code="unsupported_image_url",
        )
    head, sep, payload = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        raise InvalidRequest(f"{where}: the data URL must be base64-encoded", param=where)
    try:
        base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where}: the data URL is not valid base64", param=where) from None
    return head[: -len(";base64")].lower(), payload


def http_image_urls(dep: DeploymentConfig, body: Mapping[str, Any]) -> list[str]:
    """The user-message image links ``llmproxy/fetch.py`` is to inline, if the provider allows it."""
    if not dep.provider.options.get("allow_image_urls"):
        return []
    urls: list[str] = []
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) and m.get("role") == "user" else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image_url":
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                if isinstance(url, str) and url.startswith(("https://", "http://")) and url not in urls:
                    urls.append(url)
    return urls


def tool_arguments(raw: Any, where: str) -> Any:
    """OpenAI's JSON-string ``arguments`` → the object native APIs want."""
    if isinstance(raw, dict):
        return raw
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise InvalidRequest(f"{where}.function.arguments must be a JSON string", param=where)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"{where}.function.arguments is not valid JSON", param=where) from None


def tool_calls_of(message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise InvalidRequest(f"{where}.tool_calls must be an array", param=f"{where}.tool_calls")
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(f"{where}.tool_calls[{i}] must have function.name",
                                 param=f"{where}.tool_calls")
    return calls


def functions_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``function`` objects of ``tools`` (only function tools exist in Chat Completions)."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict) \
                or not isinstance(fn.get("name"), str):
            raise InvalidRequest(f"tools[{i}] must be a function tool with a name", param=f"tools[{i}]")
        out.append(fn)
    return out


def tool_choice_of(body: Mapping[str, Any]) -> str | None:
    """``auto`` / ``none`` / ``required``, or the name of a forced function; None if unset."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return str(choice)
    if isinstance(choice, dict):
        fn = choice.get("function")
        if choice.get("type") == "function" and isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return "function:" + str(fn["name"])
    raise InvalidRequest("'tool_choice' must be none, auto, required or a function", param="tool_choice")


def object_field(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A provider-native pass-through field that must be a JSON object ({} if absent)."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{key}' must be an object", param=key)
    return value


def stop_list(body: Mapping[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")


def max_tokens_of(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidRequest(f"'{key}' must be a positive integer", param=key)
            return value
    return None


def embedding_texts(body: Mapping[str, Any], provider: str) -> list[str]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        return list(raw)
    if isinstance(raw, list) and raw and all(isinstance(x, (int, list)) for x in raw):
        raise InvalidRequest(f"{provider} deployments embed text, not token arrays", param="input")
    raise InvalidRequest("'input' must be a string or a non-empty array of strings", param="input")


def encoding_format_of(body: Mapping[str, Any]) -> str:
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be float or base64", param="encoding_format")
    return str(fmt)


# --------------------------------------------------------------------------- writing answers


def usage(prompt: Any, completion: Any, cached: Any = None) -> dict[str, Any]:
    p, c = _int(prompt), _int(completion)
    out: dict[str, Any] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": _int(cached)}
    return out


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def completion(
    *, id: str, created: int, model: str, content: str | None,
    tool_calls: list[dict[str, Any]], finish_reason: str, usage: dict[str, Any] | None,
) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    doc: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        doc["usage"] = usage
    return orjson.dumps(doc)


def tool_call(id: str, name: str, arguments: Any) -> dict[str, Any]:
    """A complete OpenAI tool call; object arguments become the JSON string OpenAI uses."""
    args = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return {"id": id, "type": "function", "function": {"name": name, "arguments": args}}


class Chunks:
    """Builds the ``chat.completion.chunk`` dicts of one streamed answer."""

    __slots__ = ("id", "created", "model", "include_usage")

    def __init__(self, id: str, created: int, model: str, include_usage: bool) -> None:
        self.id = id
        self.created = created
        self.model = model
        self.include_usage = include_usage

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def role(self) -> dict[str, Any]:
        return self.delta({"role": "assistant", "content": ""})

    def text(self, text: str) -> dict[str, Any]:
        return self.delta({"content": text})

    def tool_start(self, index: int, id: str, name: str, arguments: str = "") -> dict[str, Any]:
        return self.delta({"tool_calls": [{"index": index, "id": id, "type": "function",
                                           "function": {"name": name, "arguments": arguments}}]})

    def tool_arguments(self, index: int, piece: str) -> dict[str, Any]:
        return self.delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})

    def finish(self, reason: str) -> dict[str, Any]:
        return self.delta({}, reason)

    def usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage}


def requested_encoding(ctx: object) -> str:
    """The client's ``encoding_format`` for an embeddings answer.

    Read from the call context when it carries one; otherwise floats, which
    the OpenAI SDKs accept even when they asked for base64 by default.
    """
    fmt = getattr(ctx, "encoding_format", None)
    return "base64" if fmt == "base64" else "float"


def embeddings_list(
    vectors: list[list[float]], model: str, fmt: str, prompt_tokens: Any
) -> tuple[bytes, dict[str, Any]]:
    """An OpenAI embeddings list and its usage."""
    data = [
        {"object": "embedding", "index": i, "embedding": floats_to_base64(v) if fmt == "base64" else v}
        for i, v in enumerate(vectors)
    ]
    n = _int(prompt_tokens)
    usage = {"prompt_tokens": n, "total_tokens": n}
    return orjson.dumps({"object": "list", "data": data, "model": model, "usage": usage}), usage


def floats_to_base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()

"""Reading the client's OpenAI request, for every translating adapter.

Shared by ``anthropic.py``, ``gemini_*.py``, ``bedrock.py``, ``cohere.py`` and
``ollama.py`` (adapters whose provider speaks another language), so that all of
them accept and refuse the same fields the same way; ``answers.py`` is the
other half, writing OpenAI answers. Pure functions, no I/O, inputs never
mutated. Request fields follow openai-python
``types/chat/completion_create_params.py``.

Invariant: every top-level field of an OpenAI request is either translated by
the adapter (it lists it in its ``supported`` set), refused here with a 400
that names it (``refuse_unsupported``), accepted because its value is the
OpenAI default and asks for nothing (``_NEUTRAL``), or listed in ``IGNORED``
with the reason it cannot change the generated answer. Nothing else is dropped
(DESIGN.md rule 4).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..config.schema import key
from ..config.tree import DeploymentConfig, ProviderOptions
from ..errors import InvalidRequest

# Accepted and not forwarded: none of these can change what the model writes.
IGNORED: Mapping[str, str] = {
    "stream_options": "read by the proxy (include_usage)",
    "metadata": "tags for OpenAI's stored completions; nothing is stored",
    "prompt_cache_key": "an OpenAI cache-routing hint",
    "prompt_cache_retention": "an OpenAI cache-lifetime hint",
    "prompt_cache_options": "an OpenAI cache-lifetime hint",
    "user": "an end-user id for abuse monitoring (Anthropic sends it as metadata.user_id)",
    "safety_identifier": "an end-user id for abuse monitoring (as 'user')",
}

# Values equal to OpenAI's defaults: they ask for nothing, so any provider can honour them.
# Not ``reasoning_effort: "none"``: on a reasoning model it asks for reasoning to be
# switched off, which a provider without the field cannot be told.
_NEUTRAL: Mapping[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "frequency_penalty": (0,),
    "presence_penalty": (0,),
    "logit_bias": ({},),
    "modalities": (["text"],),
    "store": (False,),
    "service_tier": ("auto", "default"),
    "parallel_tool_calls": (True,),
}

_HINTS: Mapping[str, str] = {
    "functions": "; use 'tools' (the deprecated 'functions' is not translated)",
    "function_call": "; use 'tool_choice' (the deprecated 'function_call' is not translated)",
    "audio": "; audio output is not available",
    "modalities": "; only [\"text\"] is available",
    "store": "; completions are not stored",
    "n": "; send one request per completion",
}


def refuse_unsupported(body: Mapping[str, Any], supported: frozenset[str], provider: str,
                       ignored: Mapping[str, str] = IGNORED,
                       neutral_values: Mapping[str, tuple[Any, ...]] = _NEUTRAL,
                       hints: Mapping[str, str] = _HINTS) -> None:
    """A 400 naming the first field of ``body`` the provider cannot honour (see the module docstring)."""
    for key, value in body.items():
        if value is None or key in supported or key in ignored:
            continue
        neutral = neutral_values.get(key)
        if neutral is not None and type(value) is not bool and value in neutral:
            continue
        if neutral is not None and type(value) is bool and any(v is value for v in neutral):
            continue
        raise InvalidRequest(
            f"'{key}' = {_show(value)} is not supported by {provider} deployments{hints.get(key, '')}",
            param=key, code="unsupported_parameter",
        )


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- scalar fields


def number(body: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise InvalidRequest(f"'{key}' must be a number from {lo:g} to {hi:g}, got {_show(value)}", param=key)
    return value


def integer(body: Mapping[str, Any], key: str, lo: int = 1) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InvalidRequest(f"'{key}' must be an integer >= {lo}, got {_show(value)}", param=key)
    return value


def seed(body: Mapping[str, Any]) -> int | None:
    return integer(body, "seed", lo=-(2**63))


def max_tokens(body: Mapping[str, Any]) -> int | None:
    """``max_completion_tokens`` (current) wins over ``max_tokens`` (deprecated)."""
    mct = integer(body, "max_completion_tokens")
    mt = integer(body, "max_tokens")
    return mct if mct is not None else mt


def stop_sequences(body: Mapping[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop] if stop else None
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s] or None
    raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")


def end_user(body: Mapping[str, Any]) -> str | None:
    """``safety_identifier`` (current) or ``user`` (deprecated for this purpose)."""
    for key in ("safety_identifier", "user"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"'{key}' must be a string", param=key)
        if value:
            return value
    return None


REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


def reasoning_effort(body: Mapping[str, Any]) -> str | None:
    value = body.get("reasoning_effort")
    if value is None:
        return None
    if value not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"'reasoning_effort' must be one of {', '.join(REASONING_EFFORTS)}", param="reasoning_effort"
        )
    return str(value)


def response_format(body: Mapping[str, Any]) -> tuple[str, Mapping[str, Any] | None]:
    """``("text", None)``, ``("json_object", None)`` or ``("json_schema", json_schema)``.

    ``json_schema`` is the request's ``response_format.json_schema`` object
    (``name``, ``description``, ``strict``), its ``schema`` checked to be an object.
    """
    rf = body.get("response_format")
    if rf is None:
        return "text", None
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind in ("text", "json_object"):
        return kind, None
    if kind == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict) or not isinstance(js.get("schema"), dict):
            raise InvalidRequest(
                "'response_format.json_schema.schema' must be a JSON Schema object",
                param="response_format.json_schema.schema",
            )
        return "json_schema", js
    raise InvalidRequest(
        "'response_format.type' must be 'text', 'json_object' or 'json_schema'", param="response_format"
    )


def native_fields(body: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The provider-native fields the client set, to pass through as they are."""
    return {key: body[key] for key in keys if body.get(key) is not None}


def object_field(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A provider-native pass-through field that must be a JSON object ({} if absent)."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{key}' must be an object", param=key)
    return value


# --------------------------------------------------------------------------- tools


class Function:
    __slots__ = ("name", "description", "parameters", "strict")

    def __init__(self, name: str, description: str | None, parameters: dict[str, Any] | None,
                 strict: bool) -> None:
        self.name = name
        self.description = description
        self.parameters = parameters
        self.strict = strict

    def openai(self) -> dict[str, Any]:
        """As an OpenAI-style ``function`` object (name, description, parameters)."""
        fn: dict[str, Any] = {"name": self.name}
        if self.description:
            fn["description"] = self.description
        if self.parameters is not None:
            fn["parameters"] = self.parameters
        return fn


def functions(body: Mapping[str, Any]) -> list[Function]:
    """The request's tools, validated; only ``type: function`` tools translate."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    out: list[Function] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise InvalidRequest(f"{param}: only tools of type 'function' can be translated, got {kind!r}",
                                 param=param)
        fn = tool.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{param}.function.name is required", param=f"{param}.function.name")
        if name in seen:
            raise InvalidRequest(f"{param}: duplicate function name {name!r}", param=f"{param}.function.name")
        seen.add(name)
        assert isinstance(fn, dict)
        desc = fn.get("description")
        if desc is not None and not isinstance(desc, str):
            raise InvalidRequest(f"{param}.function.description must be a string",
                                 param=f"{param}.function.description")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise InvalidRequest(f"{param}.function.parameters must be a JSON Schema object",
                                 param=f"{param}.function.parameters")
        out.append(Function(name, desc or None, params, fn.get("strict") is True))
    return out


def tool_choice(body: Mapping[str, Any], tools: list[Function]) -> tuple[str, list[Function], str | None]:
    """(mode, tools offered, forced function name).

    Mode is ``auto | none | required | function``. A named choice keeps every
    tool on offer and forces one; ``allowed_tools`` narrows the offer itself,
    which is what it means: the model may call only those.
    """
    tc = body.get("tool_choice")
    if tc is None:
        return ("auto" if tools else "none"), tools, None
    if tc in ("auto", "none", "required"):
        if tc == "required" and not tools:
            raise InvalidRequest("'tool_choice' is 'required' but no 'tools' were given", param="tool_choice")
        return (str(tc) if tools else "none"), tools, None
    if isinstance(tc, dict) and tc.get("type") == "function":
        fn = tc.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not any(t.name == name for t in tools):
            raise InvalidRequest(f"'tool_choice' names function {name!r}, which is not in 'tools'",
                                 param="tool_choice")
        return "function", tools, str(name)
    if isinstance(tc, dict) and tc.get("type") == "allowed_tools":
        allowed = tc.get("allowed_tools")
        mode = allowed.get("mode") if isinstance(allowed, dict) else None
        refs = allowed.get("tools") if isinstance(allowed, dict) else None
        if mode not in ("auto", "required") or not isinstance(refs, list) or not refs:
            raise InvalidRequest("'tool_choice.allowed_tools' needs a mode ('auto' or 'required') and tools",
                                 param="tool_choice")
        names = set()
        for ref in refs:
            fn = ref.get("function") if isinstance(ref, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidRequest("'tool_choice.allowed_tools.tools' may only name functions",
                                     param="tool_choice")
            names.add(fn["name"])
        kept = [t for t in tools if t.name in names]
        if len(kept) != len(names):
            raise InvalidRequest("'tool_choice.allowed_tools' names a function that is not in 'tools'",
                                 param="tool_choice")
        return str(mode), kept, None
    raise InvalidRequest(f"'tool_choice' = {_show(tc)} cannot be translated", param="tool_choice")


def parallel_tool_calls(body: Mapping[str, Any]) -> bool:
    value = body.get("parallel_tool_calls")
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest("'parallel_tool_calls' must be a boolean", param="parallel_tool_calls")
    return value is not False


def tool_arguments(call: Any, param: str) -> tuple[str, str, dict[str, Any]]:
    """An assistant ``tool_calls[j]`` entry → (id, name, arguments as an object)."""
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise InvalidRequest(f"{param}: only function tool calls can be translated", param=param)
    call_id, fn = call.get("id"), call.get("function")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"{param}.id is required", param=f"{param}.id")
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{param}.function.name is required", param=f"{param}.function.name")
    assert isinstance(fn, dict)
    raw = fn.get("arguments")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return call_id, name, {}
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest(f"{param}.function.arguments must be a JSON object encoded as a string",
                             param=f"{param}.function.arguments")
    return call_id, name, args


# --------------------------------------------------------------------------- messages


def content_parts(content: Any, param: str) -> list[dict[str, Any]]:
    """A message's ``content`` as a list of part dicts (a string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{param} must be a string or an array of content parts", param=param)
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise InvalidRequest(f"{param}[{j}] must be an object with a 'type'", param=f"{param}[{j}]")
        if part["type"] in ("text", "refusal") and not isinstance(part.get(part["type"]), str):
            raise InvalidRequest(f"{param}[{j}].{part['type']} must be a string", param=f"{param}[{j}]")
    return content


def texts_only(content: Any, param: str, role: str) -> list[str]:
    """The non-empty texts of a message that may only hold text (system, developer, tool)."""
    out = []
    for j, part in enumerate(content_parts(content, param)):
        if part["type"] != "text":
            raise not_text(param, j, role)
        if part["text"]:
            out.append(part["text"])
    return out


def not_text(param: str, j: int, role: str) -> InvalidRequest:
    return InvalidRequest(f"{param}[{j}]: {role} messages may only contain text parts", param=f"{param}[{j}]")


def assistant_message(m: Mapping[str, Any], param: str, provider: str) -> tuple[
        list[dict[str, Any]], list[tuple[str, str, dict[str, Any]]]]:
    """An assistant message's text parts and its tool calls as (id, name, arguments object).

    Refusal parts become text parts too (other keys kept, so ``cache_control``
    survives); the message's ``refusal`` stands in for the text when there is
    none. ``audio`` and the deprecated ``function_call`` cannot be translated.
    """
    for key in ("audio", "function_call"):
        if m.get(key) is not None:
            raise InvalidRequest(f"{param}.{key} cannot be translated for {provider}", param=f"{param}.{key}")
    texts: list[dict[str, Any]] = []
    content = m.get("content")
    for j, part in enumerate(content_parts(content, f"{param}.content") if content is not None else ()):
        kind = part["type"]
        if kind not in ("text", "refusal"):
            raise InvalidRequest(f"{param}.content[{j}]: assistant messages may only contain text",
                                 param=f"{param}.content[{j}]")
        if part[kind]:
            texts.append(part if kind == "text" else {**part, "type": "text", "text": part[kind]})
    refusal = m.get("refusal")
    if isinstance(refusal, str) and refusal and not texts:
        texts.append({"type": "text", "text": refusal})
    calls = m.get("tool_calls")
    if calls is None:
        return texts, []
    if not isinstance(calls, list):
        raise InvalidRequest(f"{param}.tool_calls must be an array", param=f"{param}.tool_calls")
    out = []
    for j, call in enumerate(calls):
        out.append(tool_arguments(call, f"{param}.tool_calls[{j}]"))
    return texts, out


def tool_result_names(messages: Sequence[Any]) -> dict[str, str]:
    """tool_call_id → function name, from every assistant message."""
    names: dict[str, str] = {}
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("tool_calls"), list):
            for call in m["tool_calls"]:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(call, dict) and isinstance(call.get("id"), str) and isinstance(fn, dict):
                    names[call["id"]] = str(fn.get("name"))
    return names


def tool_call_id(message: Mapping[str, Any], param: str) -> str:
    tcid = message.get("tool_call_id")
    if not isinstance(tcid, str) or not tcid:
        raise InvalidRequest(f"{param}.tool_call_id is required for tool messages", param=f"{param}.tool_call_id")
    return tcid


# (role, items, tool results) of one message, in the provider's own shapes.
TurnEntry = tuple[str, Sequence[dict[str, Any]], Sequence[dict[str, Any]]]


def alternate(entries: list[TurnEntry], key: str) -> list[dict[str, Any]]:
    """Messages merged into alternating turns, for providers that insist on them.

    Consecutive messages of one role become one turn, and within a turn the
    tool results come first, so every result of a parallel call sits in the
    turn right after the call (Anthropic, Gemini and Converse all require it).
    Messages with nothing to send are skipped: they would break the alternation.
    ``key`` is what the provider calls a turn's list (``content``, ``parts``).
    """
    turns: list[dict[str, Any]] = []
    role: str | None = None
    results: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for turn_role, new_items, new_results in entries:
        if not new_items and not new_results:
            continue
        if turn_role != role:
            if role is not None:
                turns.append({"role": role, key: results + items})
            role, results, items = turn_role, [], []
        results += new_results
        items += new_items
    if role is None:
        raise InvalidRequest("messages must include a user or assistant message with content", param="messages")
    turns.append({"role": role, key: results + items})
    return turns


def unknown_role(m: Mapping[str, Any], param: str, provider: str) -> InvalidRequest:
    return InvalidRequest(f"{param}.role {m.get('role')!r} cannot be translated for {provider}",
                          param=f"{param}.role")


def unknown_part(part: Mapping[str, Any], param: str, provider: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: content parts of type {part['type']!r} cannot be sent to {provider}",
                          param=param)


# --------------------------------------------------------------------------- images


def image_url(part: Mapping[str, Any], param: str) -> str:
    ref = part.get("image_url")
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{param}.image_url.url is required", param=f"{param}.image_url.url")
    return url


_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=[^;,]*)*);base64,", re.ASCII)


def parse_data_url(url: str, param: str) -> tuple[str, str]:
    """``data:<mime>;base64,<data>`` → (mime, base64 data), checked to be base64."""
    m = _DATA_URL.match(url)
    if m is None:
        raise InvalidRequest(f"{param}: expected a base64 data URL (data:<type>;base64,...)", param=param)
    data = url[m.end():]
    # A prefix of 4096 characters is whole base64 quanta: checked strictly, cheaply.
    # All of a 4 MB image would cost ~15 ms on the event loop; the provider checks the rest.
    try:
        binascii.a2b_base64(data[:4096].encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidRequest(f"{param}: the data URL is not valid base64", param=param) from None
    return m.group(1).lower(), data


def is_http_url(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def refuse_image_link(param: str, provider: str) -> InvalidRequest:
    """An image link for a provider that takes image bytes only (an adapter does no I/O)."""
    return InvalidRequest(
        f"{param}: {provider} deployments take images as base64 data URLs (data:image/png;base64,...); "
        "links are downloaded by the proxy only for providers with allow_image_urls: true",
        param=param, code="unsupported_image_url",
    )


def image_data(part: Mapping[str, Any], param: str, provider: str) -> tuple[str, str]:
    """An ``image_url`` part whose provider wants the bytes → (mime type, base64 data)."""
    url = image_url(part, param)
    if not url.startswith("data:"):
        raise refuse_image_link(param, provider)
    return parse_data_url(url, f"{param}.image_url.url")


@dataclass(frozen=True, slots=True)
class ImageUrlOptions(ProviderOptions):
    """The keys of types whose adapters can inline user image URLs."""

    allow_image_urls: bool | None = key(None, kind="bool",
                                        help="fetch http(s) image URLs of user messages and send them inline "
                                             "(default false: such a request is refused)")
    image_url_max_bytes: int | None = key(None, kind="int", help="largest image fetched, bytes (default 5 MiB)")
    image_url_allow_private: bool | None = key(None, kind="bool",
                                               help="let image URLs reach private and loopback addresses")


def allows_image_urls(dep: DeploymentConfig) -> bool:
    o = dep.provider.options
    return isinstance(o, ImageUrlOptions) and o.allow_image_urls is True


def image_urls_to_fetch(dep: DeploymentConfig, body: Mapping[str, Any]) -> list[str]:
    """The user-message image links ``llmproxy/upstream/images.py`` is to inline, if the provider allows it."""
    if not allows_image_urls(dep):
        return []
    urls: list[str] = []
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) and m.get("role") == "user" else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image_url":
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                if isinstance(url, str) and is_http_url(url) and url not in urls:
                    urls.append(url)
    return urls


def file_data(part: Mapping[str, Any], param: str) -> tuple[str, str, str | None]:
    """A ``file`` part sent inline (``file_data``, a data URL) → (mime, base64 data, filename)."""
    f = part.get("file")
    url = f.get("file_data") if isinstance(f, dict) else None
    if not isinstance(url, str):
        raise InvalidRequest(f"{param}: only files sent inline as file_data (a data URL) can be translated",
                             param=param)
    assert isinstance(f, dict)
    mime, data = parse_data_url(url, f"{param}.file.file_data")
    name = f.get("filename")
    return mime, data, name if isinstance(name, str) and name else None


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_id(value: str) -> str:
    """An id reduced to ``[A-Za-z0-9_-]`` (what Anthropic accepts for tool_use ids)."""
    return _ID_UNSAFE.sub("_", value) if _ID_UNSAFE.search(value) else value


# --------------------------------------------------------------------------- embeddings

# openai-python types/embedding_create_params.py; ``user`` is the only field that changes nothing.
EMBEDDING_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions"})
_EMBEDDING_IGNORED: Mapping[str, str] = {"user": IGNORED["user"]}


def embedding_texts(body: Mapping[str, Any], provider: str) -> list[str]:
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        return list(raw)
    if isinstance(raw, list) and raw and all(isinstance(x, (int, list)) for x in raw):
        raise InvalidRequest(f"{provider} deployments embed text, not token arrays", param="input")
    raise InvalidRequest("'input' must be a string or a non-empty array of strings", param="input")


def encoding_format(body: Mapping[str, Any]) -> str:
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    return str(fmt)


def embedding_input(body: Mapping[str, Any], supported: frozenset[str], provider: str) -> list[str]:
    """The texts of an embeddings request, once every field is known to be honoured."""
    refuse_unsupported(body, supported, provider, _EMBEDDING_IGNORED, {}, {})
    encoding_format(body)
    return embedding_texts(body, provider)

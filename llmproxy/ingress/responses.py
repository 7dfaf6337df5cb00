"""OpenAI Responses API ⇄ the internal OpenAI chat form (pure).

Requests follow openai-python ``types/responses/response_create_params.py``;
answers ``types/responses/response.py``; the mapping is the one
shared/reference/responses-api.md §6 sets out (OpenAI's own Agents SDK
converter, LiteLLM and vLLM agree on it).

Invariants:
- every top-level field of a Responses request is translated (``to_chat``),
  kept by the proxy (``store``, ``previous_response_id``, ``metadata``: echoed,
  never sent upstream), accepted at a value that asks for nothing
  (``_NEUTRAL``), or refused with a 400 that names it; unknown fields are
  refused too, since no chat field can carry them;
- input items are translated or refused by name, with one exception:
  ``reasoning`` items (a model's own earlier scratch work, replayed when a
  client sends back a previous output) are accepted and not forwarded, as no
  chat upstream takes them (LiteLLM does the same);
- ids come in as arguments (``Ids``), so the same input gives the same output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import InvalidRequest, UpstreamProtocolError

# Kept by the proxy, not sent upstream (previous_response_id and store: §6.6).
_PROXY_FIELDS = frozenset({"model", "input", "instructions", "stream", "stream_options", "store",
                           "previous_response_id", "metadata"})
_TRANSLATED = frozenset({"tools", "tool_choice", "parallel_tool_calls", "text", "max_output_tokens",
                         "temperature", "top_p", "user", "safety_identifier", "prompt_cache_key",
                         "reasoning", "service_tier"})
# Values that ask for nothing a chat upstream could not give.
_NEUTRAL: Mapping[str, tuple[Any, ...]] = {
    "background": (False,),
    "truncation": ("disabled",),
    "include": ([],),
}
_HINTS: Mapping[str, str] = {
    "background": "; background responses need OpenAI's own queue",
    "conversation": "; use previous_response_id (conversations are not stored by this proxy)",
    "include": "; none of the includable outputs exists on a chat upstream",
    "truncation": "; only \"disabled\" is available",
    "prompt": "; prompt templates live on OpenAI",
    "top_logprobs": "; logprobs are not translated",
}
BUILTIN_TOOLS = frozenset({
    "file_search", "computer", "computer_use", "computer_use_preview", "web_search", "web_search_2025_08_26",
    "web_search_preview", "web_search_preview_2025_03_11", "mcp", "code_interpreter", "image_generation",
    "local_shell", "shell", "apply_patch", "tool_search", "namespace", "programmatic_tool_calling", "custom",
})
_FUNCTION_TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})
_DETAILS = {"auto": "auto", "low": "low", "high": "high", "original": "high"}


@dataclass(frozen=True, slots=True)
class Ids:
    """Where every id of one response comes from: ``resp_<base>``, ``msg_<base>_<n>``, ..."""

    base: str

    @property
    def response(self) -> str:
        return f"resp_{self.base}"

    def item(self, prefix: str, n: int) -> str:
        return f"{prefix}_{self.base}_{n}"


@dataclass(frozen=True, slots=True)
class Echo:
    """What a Response repeats of its request (the SDK's model requires some of it)."""

    model: str
    instructions: str | None = None
    tools: list[Any] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    text: Mapping[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}})
    previous_response_id: str | None = None
    user: str | None = None
    store: bool = True
    reasoning: Mapping[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "instructions": self.instructions, "metadata": dict(self.metadata), "model": self.model,
            "parallel_tool_calls": self.parallel_tool_calls, "temperature": self.temperature,
            "tool_choice": self.tool_choice, "tools": self.tools, "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens, "previous_response_id": self.previous_response_id,
            "text": dict(self.text), "truncation": "disabled", "user": self.user, "store": self.store,
            "reasoning": dict(self.reasoning) if self.reasoning is not None else {"effort": None, "summary": None},
        }


# --------------------------------------------------------------------------- requests


def check_fields(body: Mapping[str, Any]) -> None:
    """A 400 naming the first field that cannot be honoured on a chat upstream."""
    for name, value in body.items():
        if value is None or name in _PROXY_FIELDS or name in _TRANSLATED:
            continue
        neutral = _NEUTRAL.get(name)
        if neutral is not None and any(value == v and type(value) is type(v) for v in neutral):
            continue
        raise InvalidRequest(f"'{name}' is not available for this model (it is answered through chat "
                             f"completions){_HINTS.get(name, '')}", param=name)


def input_items(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items (a string is one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'input' is required: a string or a non-empty array of items", param="input")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"input[{i}] must be an object", param=f"input[{i}]")
    return value


def to_chat(body: Mapping[str, Any], history: Sequence[Mapping[str, Any]] = (), *,
            stream: bool = False) -> dict[str, Any]:
    """The chat body for a Responses request; ``history``: the earlier turns' items (§6.6)."""
    check_fields(body)
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("'instructions' must be a string", param="instructions")
        messages.append({"role": "system", "content": instructions})
    items = input_items(body)
    _items_to_messages(history, messages, "previous_response_id")
    _items_to_messages(items, messages, "input")
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    tools = _tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    for name in ("parallel_tool_calls", "temperature", "top_p", "user", "safety_identifier",
                 "prompt_cache_key", "service_tier"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    _text(body.get("text"), chat)
    _reasoning(body.get("reasoning"), chat)
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def echo_of(body: Mapping[str, Any]) -> Echo:
    """The request fields a Response repeats (the defaults OpenAI's spec names otherwise)."""
    meta = body.get("metadata")
    text = body.get("text")
    store = body.get("store")
    return Echo(
        model=body["model"],
        instructions=body.get("instructions"),
        tools=list(body.get("tools") or []),
        tool_choice=body.get("tool_choice") if body.get("tool_choice") is not None else "auto",
        parallel_tool_calls=body.get("parallel_tool_calls") is not False,
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        max_output_tokens=body.get("max_output_tokens"),
        metadata=meta if isinstance(meta, dict) else {},
        text=text if isinstance(text, dict) and text else {"format": {"type": "text"}},
        previous_response_id=body.get("previous_response_id"),
        user=body.get("user"),
        store=store is not False,
        reasoning=body.get("reasoning") if isinstance(body.get("reasoning"), dict) else None,
    )


def _items_to_messages(items: Sequence[Mapping[str, Any]], out: list[dict[str, Any]], where: str) -> None:
    for i, item in enumerate(items):
        param = f"{where}[{i}]"
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            out.append(_message(item, param))
        elif kind == "function_call":
            call = _function_call(item, param)
            last = out[-1] if out else None
            # One assistant turn holds the text and every call (Anthropic
            # refuses two assistant messages in a row).
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(f"{param}.call_id is required", param=f"{param}.call_id")
            out.append({"role": "tool", "tool_call_id": call_id,
                        "content": _tool_output(item.get("output"), f"{param}.output")})
        elif kind == "reasoning":
            continue  # see the module docstring
        else:
            raise InvalidRequest(f"{param}: input items of type {kind!r} are not available through "
                                 f"chat completions", param=param)


def _message(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    content = item.get("content")
    if role == "assistant":
        if isinstance(content, str):
            return {"role": "assistant", "content": content}
        if not isinstance(content, list):
            raise InvalidRequest(f"{param}.content must be a string or an array", param=f"{param}.content")
        texts: list[str] = []
        for j, part in enumerate(content):
            ptype = part.get("type") if isinstance(part, dict) else None
            if ptype in ("output_text", "input_text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif ptype == "refusal" and isinstance(part.get("refusal"), str):
                texts.append(part["refusal"])  # what the assistant said, as it said it
            else:
                raise InvalidRequest(f"{param}.content[{j}]: assistant content of type {ptype!r} is not "
                                     f"available through chat completions", param=f"{param}.content[{j}]")
        return {"role": "assistant", "content": "\n".join(texts)}
    if role not in ("user", "system", "developer"):
        raise InvalidRequest(f"{param}.role must be user, assistant, system or developer", param=f"{param}.role")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(f"{param}.content must be a string or an array", param=f"{param}.content")
    return {"role": role, "content": [_input_part(p, f"{param}.content[{j}]") for j, p in enumerate(content)]}


def _input_part(part: Any, param: str) -> dict[str, Any]:
    ptype = part.get("type") if isinstance(part, dict) else None
    if ptype == "input_text" and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if ptype == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f"{param}: only images given by image_url (a URL or a data: URL) are "
                                 f"available (file_id is not)", param=param)
        detail = _DETAILS.get(part.get("detail") or "auto")
        if detail is None:
            raise InvalidRequest(f"{param}.detail must be auto, low, high or original", param=f"{param}.detail")
        return {"type": "image_url", "image_url": {"url": url, "detail": detail}}
    if ptype == "input_file":
        if part.get("file_url") is not None:
            raise InvalidRequest(f"{param}.file_url is not available; send file_data", param=f"{param}.file_url")
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k) is not None}
        return {"type": "file", "file": file}
    raise InvalidRequest(f"{param}: content of type {ptype!r} is not available through chat completions",
                         param=param)


def _function_call(item: Mapping[str, Any], param: str) -> dict[str, Any]:
    for name in ("call_id", "name"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise InvalidRequest(f"{param}.{name} is required", param=f"{param}.{name}")
    args = item.get("arguments")
    if not isinstance(args, str):
        raise InvalidRequest(f"{param}.arguments must be a string", param=f"{param}.arguments")
    return {"id": item["call_id"], "type": "function",
            "function": {"name": item["name"], "arguments": args or "{}"}}


def _tool_output(output: Any, param: str) -> Any:
    if isinstance(output, str):
        return output
    if not isinstance(output, list):
        raise InvalidRequest(f"{param} must be a string or an array", param=param)
    return [_input_part(p, f"{param}[{j}]") for j, p in enumerate(output)]


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        ttype = tool.get("type") if isinstance(tool, dict) else None
        if ttype != "function":
            what = "a built-in tool" if ttype in BUILTIN_TOOLS else "not a function tool"
            raise InvalidRequest(f"{param}: {ttype!r} is {what}, not available through chat completions; "
                                 f"only function tools are", param=param)
        extra = sorted(set(tool) - _FUNCTION_TOOL_KEYS)
        if extra:
            raise InvalidRequest(f"{param}.{extra[0]} is not available through chat completions",
                                 param=f"{param}.{extra[0]}")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest(f"{param}.name is required", param=f"{param}.name")
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("none", "auto", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    what = choice.get("type") if isinstance(choice, dict) else choice
    raise InvalidRequest(f"'tool_choice' {what!r} is not available through chat completions; use none, "
                         f"auto, required or {{\"type\": \"function\", \"name\": ...}}", param="tool_choice")


def _text(text: Any, chat: dict[str, Any]) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise InvalidRequest("'text' must be an object", param="text")
    for name in text:
        if name not in ("format", "verbosity"):
            raise InvalidRequest(f"text.{name} is not available through chat completions", param=f"text.{name}")
    if text.get("verbosity") is not None:
        chat["verbosity"] = text["verbosity"]
    fmt = text.get("format")
    if fmt is None:
        return
    ftype = fmt.get("type") if isinstance(fmt, dict) else None
    if ftype == "text":
        return
    if ftype == "json_object":
        chat["response_format"] = {"type": "json_object"}
        return
    if ftype == "json_schema":
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise InvalidRequest("text.format json_schema needs 'name' and 'schema'", param="text.format")
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
        return
    raise InvalidRequest(f"text.format type {ftype!r} is not available; use text, json_object or json_schema",
                         param="text.format")


def _reasoning(reasoning: Any, chat: dict[str, Any]) -> None:
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise InvalidRequest("'reasoning' must be an object", param="reasoning")
    for name, value in reasoning.items():
        if name == "effort":
            if value is not None:
                chat["reasoning_effort"] = value
        elif value is not None:
            raise InvalidRequest(f"reasoning.{name} is not available through chat completions (only "
                                 f"reasoning.effort is)", param=f"reasoning.{name}")


# --------------------------------------------------------------------------- answers


def usage_of(chat_usage: Any) -> dict[str, Any] | None:
    """Chat usage → Responses usage, always in full (strict SDKs require every key, §3.3)."""
    if not isinstance(chat_usage, dict):
        return None
    p = _count(chat_usage.get("prompt_tokens"))
    c = _count(chat_usage.get("completion_tokens"))
    pd = chat_usage.get("prompt_tokens_details") or {}
    cd = chat_usage.get("completion_tokens_details") or {}
    total = chat_usage.get("total_tokens")
    return {
        "input_tokens": p,
        "input_tokens_details": {"cached_tokens": _count(pd.get("cached_tokens")),
                                 "cache_write_tokens": _count(pd.get("cache_write_tokens"))},
        "output_tokens": c,
        "output_tokens_details": {"reasoning_tokens": _count(cd.get("reasoning_tokens"))},
        "total_tokens": _count(total) if isinstance(total, int) else p + c,
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def envelope(echo: Echo, ids: Ids, created: int, status: str, output: list[dict[str, Any]],
             usage: dict[str, Any] | None, *, error: dict[str, Any] | None = None,
             incomplete: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": ids.response, "object": "response", "created_at": created, "status": status,
                           "error": error,
                           "incomplete_details": {"reason": incomplete} if incomplete else None}
    doc.update(echo.fields())
    doc["output"] = output
    doc["usage"] = usage
    return doc


def finish_status(finish_reason: Any) -> tuple[str, str | None]:
    """A chat ``finish_reason`` → the Response's status and incomplete reason (§6.3)."""
    if finish_reason == "length":
        return "incomplete", "max_output_tokens"
    if finish_reason == "content_filter":
        return "incomplete", "content_filter"
    return "completed", None


def response_from_chat(data: bytes, echo: Echo, ids: Ids, created: int) -> dict[str, Any]:
    """An internal ``chat.completion`` → a Response (items: reasoning, message, then calls)."""
    try:
        doc = orjson.loads(data)
        choice = doc["choices"][0]
        message = choice["message"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        raise UpstreamProtocolError("upstream answered 200 without a chat completion choice") from None
    status, reason = finish_status(choice.get("finish_reason"))
    item_status = "incomplete" if status == "incomplete" else "completed"
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        output.append(reasoning_item(ids.item("rs", 0), reasoning))
    parts: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append(text_part(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append(message_item(ids.item("msg", len(output)), parts, item_status))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        output.append(call_item(ids.item("fc", len(output)), call.get("id") or "", fn.get("name") or "",
                                fn.get("arguments") or "", "completed"))
    return envelope(echo, ids, created, status, output, usage_of(doc.get("usage")), incomplete=reason)


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}], "status": "completed"}


def chat_usage_of(usage: Any) -> dict[str, Any] | None:
    """A Responses usage → the chat shape the limits and metrics count (native passthrough)."""
    if not isinstance(usage, dict):
        return None
    p, c = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": _count(usage.get("total_tokens")) or p + c}

"""A fake Anthropic Messages API for integration tests.

``AnthropicFake`` is a ``FakeUpstream`` responder: it rejects what the real
API rejects (a missing ``max_tokens`` or ``anthropic-version``, a ``system``
role inside ``messages``, roles that do not alternate, a ``tool_result``
without its ``tool_use`` and the reverse, unknown fields), with the real
error body, and otherwise answers with the scripted message, unary or as the
real SSE event sequence (``message_start`` … ``message_stop``, with pings).
Error texts follow the ones the API returns (seen in public issue reports).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .fakes import Reply, Seen, sse

TOP_LEVEL = {
    "model", "max_tokens", "messages", "system", "temperature", "top_p", "top_k", "stop_sequences",
    "metadata", "tools", "tool_choice", "stream", "output_config", "thinking", "service_tier",
}
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
COUNTED = 1234  # what count_tokens answers, whatever it is asked
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}


def error(status: int, etype: str, message: str) -> Reply:
    return Reply(status=status, json={"type": "error", "error": {"type": etype, "message": message},
                                      "request_id": "req_fake01"})


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", *, input_tokens: int = 25,
            output_tokens: int = 42, cache_read: int = 0, cache_write: int = 0,
            model: str = "claude-sonnet-4-5-20250929", id: str = "msg_01XFDUDYJgAACzvnptvVoYEL") -> dict[str, Any]:
    return {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read},
    }


def stream_events(msg: dict[str, Any], *, piece: int = 7, pings: bool = True) -> list[bytes]:
    """The SSE events the API sends for ``msg``, text and tool input cut into pieces."""
    usage = msg["usage"]
    start = {**msg, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**usage, "output_tokens": 1}}
    events = [sse({"type": "message_start", "message": start}, "message_start")]
    for i, block in enumerate(msg["content"]):
        if block["type"] == "text":
            events.append(sse({"type": "content_block_start", "index": i,
                               "content_block": {"type": "text", "text": ""}}, "content_block_start"))
            if pings and i == 0:
                events.append(sse({"type": "ping"}, "ping"))
            text = block["text"]
            for k in range(0, len(text), piece):
                events.append(sse({"type": "content_block_delta", "index": i,
                                   "delta": {"type": "text_delta", "text": text[k:k + piece]}},
                                  "content_block_delta"))
        elif block["type"] == "tool_use":
            events.append(sse({"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}},
                "content_block_start"))
            raw = orjson.dumps(block["input"]).decode()
            pieces = [""] + [raw[k:k + piece] for k in range(0, len(raw), piece)]
            for p in pieces:
                events.append(sse({"type": "content_block_delta", "index": i,
                                   "delta": {"type": "input_json_delta", "partial_json": p}},
                                  "content_block_delta"))
        events.append(sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
    events.append(sse({"type": "message_delta",
                       "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                       "usage": {"output_tokens": usage["output_tokens"]}}, "message_delta"))
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return events


def check(seen: Seen) -> Reply | None:
    """The error the real API would answer ``seen`` with, or None if it is valid."""
    headers = {k.lower(): v for k, v in seen.headers.items()}
    if not headers.get("x-api-key"):
        return error(401, "authentication_error", "x-api-key header is required")
    if not headers.get("anthropic-version"):
        return error(400, "invalid_request_error", "anthropic-version: header is required")
    if seen.path not in ("/v1/messages", "/v1/messages/count_tokens"):
        return error(404, "not_found_error", f"Not Found: {seen.path}")
    body = seen.json
    problem = _check_body(body, count=seen.path.endswith("/count_tokens"))
    return error(400, "invalid_request_error", problem) if problem else None


def _check_body(body: Any, count: bool = False) -> str | None:
    if not isinstance(body, dict):
        return "body must be an object"
    for key in body:
        if key not in TOP_LEVEL:
            return f"{key}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    mt = body.get("max_tokens")
    if mt is None and not count:
        return "max_tokens: Field required"
    if mt is not None and (not isinstance(mt, int) or mt < 1):
        return "max_tokens: Input should be a valid integer greater than 0"
    temp = body.get("temperature")
    if temp is not None and not 0 <= temp <= 1:
        return "temperature: Input should be less than or equal to 1"
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list) or not all(
            isinstance(b, dict) and b.get("type") == "text" and b.get("text") for b in system
        ):
            return "system: Input should be a valid string or a list of text blocks"
    problem = _check_tools(body)
    if problem:
        return problem
    return _check_messages(body.get("messages"))


def _check_tools(body: dict[str, Any]) -> str | None:
    tools = body.get("tools")
    names = set()
    for i, tool in enumerate(tools or []):
        if set(tool) - {"name", "description", "input_schema", "strict", "cache_control", "type"}:
            return f"tools.{i}: Extra inputs are not permitted"
        if not isinstance(tool.get("name"), str) or not isinstance(tool.get("input_schema"), dict):
            return f"tools.{i}: name and input_schema are required"
        if tool["input_schema"].get("type") != "object":
            return f"tools.{i}.input_schema.type: Input should be 'object'"
        names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        kind = choice.get("type")
        if kind not in ("auto", "any", "tool", "none"):
            return "tool_choice.type: Input tag does not match any of the expected tags"
        if kind == "tool" and choice.get("name") not in names:
            return f"tool_choice: tool {choice.get('name')!r} not found in tools"
        if kind == "none" and "disable_parallel_tool_use" in choice:
            return "tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted"
    return None


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    previous_role = None
    previous_uses: list[str] = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role == "system":
            return ('messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                    'parameter, not "system" as an input message role.')
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if role == previous_role:
            return f"messages.{i}: roles must alternate between \"user\" and \"assistant\""
        content = m.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return f"messages.{i}: all messages must have non-empty content"
        uses, results, seen_other = [], [], False
        for j, b in enumerate(blocks):
            kind = b.get("type")
            where = f"messages.{i}.content.{j}"
            if kind == "text":
                if not b.get("text"):
                    return f"{where}: text content blocks must be non-empty"
                seen_other = True
            elif kind == "image":
                src = b.get("source") or {}
                if src.get("type") == "base64" and src.get("media_type") not in IMAGE_TYPES:
                    return f"{where}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                if src.get("type") not in ("base64", "url"):
                    return f"{where}.source: Input tag does not match any of the expected tags"
                seen_other = True
            elif kind == "document":
                seen_other = True
            elif kind == "tool_use":
                if role != "assistant":
                    return f"{where}: tool_use blocks may only appear in assistant messages"
                if not _TOOL_ID.match(str(b.get("id"))) or not isinstance(b.get("input"), dict):
                    return f"{where}: tool_use needs an id matching ^[a-zA-Z0-9_-]+$ and an object input"
                uses.append(b["id"])
            elif kind == "tool_result":
                if role != "user":
                    return f"{where}: tool_result blocks may only appear in user messages"
                if seen_other:
                    return f"{where}: tool_result blocks must come before any other content in the message"
                if b.get("tool_use_id") not in previous_uses:
                    return (f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                            f"{b.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                            "`tool_use` block in the previous message.")
                results.append(b["tool_use_id"])
            else:
                return f"{where}.type: Input tag {kind!r} does not match any of the expected tags"
        missing = [u for u in previous_uses if u not in results]
        if missing:
            return (f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message.")
        previous_role, previous_uses = role, uses
    if previous_uses:
        return (f"messages.{len(messages) - 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(previous_uses)}.")
    return None


class AnthropicFake:
    """Responder: validate like the API, then answer with the scripted messages in turn."""

    def __init__(self, *messages: dict[str, Any], piece: int = 7) -> None:
        self.messages = list(messages) or [message([{"type": "text", "text": "Hello!"}])]
        self.piece = piece
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, seen: Seen) -> Reply:
        problem = check(seen)
        if problem is not None:
            return problem
        body = seen.json
        self.bodies.append(body)
        if seen.path.endswith("/count_tokens"):
            return Reply(json={"input_tokens": COUNTED})
        msg = self.messages.pop(0) if len(self.messages) > 1 else self.messages[0]
        if body.get("stream"):
            return Reply(stream=stream_events(msg, piece=self.piece),
                         headers={"request-id": "req_fake01"})
        return Reply(json=msg, headers={"request-id": "req_fake01"})


# --------------------------------------------------------------------------- OpenAI stream helpers
# (shared by the Anthropic and Gemini tests)


def parse_sse(data: bytes) -> tuple[list[dict[str, Any]], bool]:
    """OpenAI SSE bytes → (chunks, saw [DONE]); asserts the framing is clean."""
    chunks, done = [], False
    for event in data.split(b"\n\n"):
        if not event:
            continue
        assert event.startswith(b"data: "), event
        payload = event[6:]
        assert not done, "data after [DONE]"
        if payload == b"[DONE]":
            done = True
        else:
            chunks.append(orjson.loads(payload))
    return chunks, done


def accumulate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge chunks the way the openai SDK does: per choice, content joined, tool calls by index."""
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in chunks:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk["choices"]:
            acc = choices.setdefault(c["index"], {"content": None, "tool_calls": {}, "finish_reason": None,
                                                  "role": None, "refusal": None})
            d = c["delta"]
            if d.get("role"):
                acc["role"] = d["role"]
            if d.get("content") is not None:
                acc["content"] = (acc["content"] or "") + d["content"]
            if d.get("refusal"):
                acc["refusal"] = (acc["refusal"] or "") + d["refusal"]
            for tc in d.get("tool_calls") or []:
                slot = acc["tool_calls"].setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
                if tc.get("id"):
                    slot["id"] = tc["id"]
                fn = tc.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
            if c.get("finish_reason"):
                assert acc["finish_reason"] is None, "two finish reasons for one choice"
                acc["finish_reason"] = c["finish_reason"]
    for acc in choices.values():
        acc["tool_calls"] = [acc["tool_calls"][k] for k in sorted(acc["tool_calls"])]
    return {"choices": choices, "usage": usage}


def feed_split(make: Any, data: bytes, at: int) -> bytes:
    """Feed ``data`` to a fresh translator in two pieces split at ``at``; return all output."""
    tr = make()
    return tr.feed(data[:at]) + tr.feed(data[at:]) + tr.finish()

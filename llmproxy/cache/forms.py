"""A stored answer (``Entry``), whether an answer may be stored, and its other form.

Sans-IO. An entry holds the bytes the client received: a non-stream answer
as one body, a stream as the pieces written to the client (so a replay has
the same chunk boundaries, ``[DONE]`` included). Each format (``keying``'s
CHAT, MESSAGES, RESPONSES, EMBEDDINGS) says here when an answer finished
normally, how a stream reads as one answer and how one answer reads as a
stream, so a streamed answer serves a later non-stream request of the same
body and the other way round.

Invariants:
- ``finished`` is True only for an answer that ended the way a model ends
  (stop / end_turn / length / max_tokens / tool calls / completed): never
  an error event, an error body, a cut stream or a filtered answer;
- conversions return None when they cannot say the same thing in the other
  form (the caller treats that as a miss): never a half answer.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ..sse import DONE, SSEDecoder, encode_data
from .keying import CHAT, EMBEDDINGS, MESSAGES, RESPONSES

# Per-entry bookkeeping counted against max_bytes on top of the answer's bytes.
ENTRY_OVERHEAD = 256
_CHAT_DONE = frozenset({"stop", "length", "tool_calls", "function_call"})
_MESSAGES_DONE = frozenset({"end_turn", "max_tokens", "stop_sequence", "tool_use"})


@dataclass(frozen=True, slots=True)
class Entry:
    model: str  # the public model name (``DELETE /admin/cache?model=``)
    stream: bool
    chunks: tuple[bytes, ...]  # a non-stream answer: one body

    @property
    def size(self) -> int:
        return ENTRY_OVERHEAD + sum(map(len, self.chunks))

    def encode(self) -> bytes:
        """Compressed, for a shared store: a JSON head line, then the pieces back to back."""
        head = orjson.dumps({"m": self.model, "s": self.stream, "n": [len(c) for c in self.chunks]})
        return zlib.compress(head + b"\n" + b"".join(self.chunks), 1)

    @classmethod
    def decode(cls, data: bytes, limit: int) -> Entry | None:
        """The entry, or None for bytes that are not one (or inflate past ``limit``)."""
        try:
            d = zlib.decompressobj()
            raw = d.decompress(data, limit + 4096)
            if d.unconsumed_tail:
                return None
            head_end = raw.index(b"\n")
            head = orjson.loads(raw[:head_end])
            chunks, at = [], head_end + 1
            for n in head["n"]:
                chunks.append(raw[at:at + n])
                at += n
            if at != len(raw):
                return None
            return cls(str(head["m"]), bool(head["s"]), tuple(chunks))
        except (zlib.error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None


def _events(chunks: Iterable[bytes]) -> list[tuple[str | None, Any]]:
    """The stream's events as (event name, parsed data); ``[DONE]`` as (None, None)."""
    decoder = SSEDecoder(1 << 30)  # our own output, already bounded by max_entry_bytes
    out: list[tuple[str | None, Any]] = []
    for c in chunks:
        for name, payload in decoder.feed(c):
            if payload == b"[DONE]":
                out.append((None, None))
                continue
            try:
                out.append((name, orjson.loads(payload)))
            except orjson.JSONDecodeError:
                out.append((name, {"error": "not JSON"}))
    return out


# --------------------------------------------------------------------------- finished normally


def finished(fmt: str, entry: Entry) -> bool:
    """Whether this answer ended normally (the only answers that are stored)."""
    try:
        if not entry.stream:
            doc = orjson.loads(entry.chunks[0])
            return isinstance(doc, dict) and _unary_finished(fmt, doc)
        if fmt == CHAT:
            return _chat_stream_finished(entry.chunks)
        return _stream_finished(fmt, _events(entry.chunks))
    except (orjson.JSONDecodeError, IndexError, AttributeError, TypeError):
        return False


def _unary_finished(fmt: str, doc: dict[str, Any]) -> bool:
    if doc.get("error"):  # a Response carries "error": null
        return False
    if fmt == EMBEDDINGS:
        return isinstance(doc.get("data"), list)
    if fmt == CHAT:
        choices = doc.get("choices")
        return isinstance(choices, list) and bool(choices) and all(c.get("finish_reason") in _CHAT_DONE for c in choices)
    if fmt == MESSAGES:
        return doc.get("type") == "message" and doc.get("stop_reason") in _MESSAGES_DONE
    if fmt == RESPONSES:
        return doc.get("status") == "completed"
    return False


# A chat chunk's finish_reason as the bytes we relayed spell it (compact, as
# OpenAI and orjson write it, or with one space). Chat streams, the most
# stored kind, are judged on their bytes: parsing every event to read it
# cost more than the rest of the request.
_FINISH_REASON = re.compile(rb'"finish_reason": ?(null|"[a-z_]*")')


def _chat_stream_finished(chunks: tuple[bytes, ...]) -> bool:
    """``_stream_finished`` for CHAT without parsing: the pieces are whole
    events (forward._relay writes no other), so the last one ends with
    ``[DONE]``; any ``"error"`` (an error event, a chunk naming one) or a
    finish_reason in a form not read here means not stored."""
    if not chunks or not chunks[-1].endswith(DONE):
        return False
    data = b"".join(chunks)
    if b'"error"' in data:
        return False
    ends = _FINISH_REASON.findall(data)
    if len(ends) != data.count(b'"finish_reason"'):
        return False
    reasons = {v[1:-1].decode() for v in set(ends) if v != b"null"}
    return bool(reasons & _CHAT_DONE) and not (reasons - _CHAT_DONE)


def _stream_finished(fmt: str, events: list[tuple[str | None, Any]]) -> bool:
    """The other formats' streams, parsed (CHAT: ``_chat_stream_finished``)."""
    if any(isinstance(d, dict) and (d.get("error") or d.get("type") == "error") for _, d in events):
        return False
    if fmt == MESSAGES:
        stops = [d["delta"].get("stop_reason") for _, d in events
                 if d and d.get("type") == "message_delta" and isinstance(d.get("delta"), dict)]
        return (bool(stops) and stops[-1] in _MESSAGES_DONE and bool(events)
                and isinstance(events[-1][1], dict) and events[-1][1].get("type") == "message_stop")
    if fmt == RESPONSES:
        return bool(events) and isinstance(events[-1][1], dict) and events[-1][1].get("type") == "response.completed"
    return False


# --------------------------------------------------------------------------- the other form


def as_unary(fmt: str, entry: Entry) -> bytes | None:
    """A stored stream as the one answer a non-stream request gets."""
    events = _events(entry.chunks)
    if fmt == RESPONSES:
        last = events[-1][1] if events else None
        response = last.get("response") if isinstance(last, dict) else None
        return orjson.dumps(response) if isinstance(response, dict) else None
    if fmt == CHAT:
        return _chat_unary([d for _, d in events if isinstance(d, dict)])
    if fmt == MESSAGES:
        return _messages_unary([d for _, d in events if isinstance(d, dict)])
    return None


def as_stream(fmt: str, entry: Entry, include_usage: bool = False) -> list[bytes] | None:
    """A stored answer as the stream a streaming request gets (one event per
    piece); a chat stream ends with the usage chunk only if ``include_usage``."""
    doc = orjson.loads(entry.chunks[0])
    if fmt == CHAT:
        return _chat_stream(doc, include_usage)
    if fmt == MESSAGES:
        return _messages_stream(doc)
    if fmt == RESPONSES:
        return _responses_stream(doc)
    return None


def _chat_unary(chunks: list[dict[str, Any]]) -> bytes | None:
    if not chunks:
        return None
    first = chunks[0]
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for c in chunks:
        if isinstance(c.get("usage"), dict):
            usage = c["usage"]
        for ch in c.get("choices") or ():
            i = ch.get("index", 0)
            acc = choices.setdefault(i, {"index": i, "message": {"role": "assistant", "content": None},
                                         "finish_reason": None, "logprobs": None, "_text": [], "_tools": {}})
            delta = ch.get("delta") or {}
            if delta.get("content"):
                acc["_text"].append(delta["content"])
            if delta.get("refusal"):
                acc["message"]["refusal"] = acc["message"].get("refusal", "") + delta["refusal"]
            for tc in delta.get("tool_calls") or ():
                t = acc["_tools"].setdefault(tc.get("index", 0), {"id": None, "type": "function",
                                                                  "function": {"name": "", "arguments": ""}})
                if tc.get("id"):
                    t["id"] = tc["id"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    t["function"]["name"] += fn["name"]
                if fn.get("arguments"):
                    t["function"]["arguments"] += fn["arguments"]
            if ch.get("finish_reason"):
                acc["finish_reason"] = ch["finish_reason"]
    out_choices = []
    for i in sorted(choices):
        acc = choices[i]
        text, tools = acc.pop("_text"), acc.pop("_tools")
        if text:
            acc["message"]["content"] = "".join(text)
        if tools:
            acc["message"]["tool_calls"] = [tools[k] for k in sorted(tools)]
        out_choices.append(acc)
    doc: dict[str, Any] = {"id": first.get("id"), "object": "chat.completion", "created": first.get("created"),
                           "model": first.get("model"), "choices": out_choices}
    if first.get("system_fingerprint") is not None:
        doc["system_fingerprint"] = first["system_fingerprint"]
    if usage is not None:
        doc["usage"] = usage
    return orjson.dumps(doc)


def _chat_stream(doc: dict[str, Any], include_usage: bool) -> list[bytes] | None:
    base = {"id": doc.get("id"), "object": "chat.completion.chunk", "created": doc.get("created"),
            "model": doc.get("model")}
    out: list[bytes] = []
    for ch in doc.get("choices") or ():
        i = ch.get("index", 0)
        msg = ch.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant", "content": msg.get("content") or ""}
        if msg.get("tool_calls"):
            delta["tool_calls"] = [{"index": k, **tc} for k, tc in enumerate(msg["tool_calls"])]
        if msg.get("refusal"):
            delta["refusal"] = msg["refusal"]
        out.append(encode_data(orjson.dumps({**base, "choices": [{"index": i, "delta": delta,
                                                                   "finish_reason": None}]})))
        out.append(encode_data(orjson.dumps({**base, "choices": [{"index": i, "delta": {},
                                                                   "finish_reason": ch.get("finish_reason")}]})))
    if include_usage and isinstance(doc.get("usage"), dict):
        out.append(encode_data(orjson.dumps({**base, "choices": [], "usage": doc["usage"]})))
    out.append(DONE)
    return out


def without_usage_chunk(chunks: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """A stored chat stream for a client that did not ask for usage
    (``stream_options`` is not in the key): the usage-only chunk
    (``"choices":[]``) left out, every other piece as it was."""
    if not any(b'"choices":[]' in c for c in chunks):
        return chunks
    out = []
    for c in chunks:
        if b'"choices":[]' in c:
            events = c.split(b"\n\n")
            c = b"\n\n".join(e for e in events if not (b'"choices":[]' in e and b'"usage":' in e))
            if not c.strip():
                continue
        out.append(c)
    return tuple(out)


def _messages_unary(events: list[dict[str, Any]]) -> bytes | None:
    message: dict[str, Any] | None = None
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    for d in events:
        t = d.get("type")
        if t == "message_start" and isinstance(d.get("message"), dict):
            message = dict(d["message"])
        elif t == "content_block_start" and isinstance(d.get("content_block"), dict):
            blocks[d.get("index", 0)] = dict(d["content_block"])
        elif t == "content_block_delta":
            i, delta = d.get("index", 0), d.get("delta") or {}
            block = blocks.setdefault(i, {"type": "text", "text": ""})
            kind = delta.get("type")
            if kind == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif kind == "input_json_delta":
                partial.setdefault(i, []).append(delta.get("partial_json", ""))
            elif kind == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            elif kind == "signature_delta":
                block["signature"] = block.get("signature", "") + delta.get("signature", "")
        elif t == "message_delta" and message is not None:
            message.update(d.get("delta") or {})
            if isinstance(d.get("usage"), dict):
                message["usage"] = {**(message.get("usage") or {}), **d["usage"]}
    if message is None:
        return None
    for i, pieces in partial.items():
        joined = "".join(pieces)
        try:
            blocks[i]["input"] = orjson.loads(joined) if joined else {}
        except orjson.JSONDecodeError:
            return None
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return orjson.dumps(message)


def _messages_stream(doc: dict[str, Any]) -> list[bytes] | None:
    def ev(kind: str, body: dict[str, Any]) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **body}) + b"\n\n"

    usage = doc.get("usage") or {}
    start = {k: v for k, v in doc.items() if k not in ("content", "stop_reason", "stop_sequence", "usage")}
    start.update(content=[], stop_reason=None, stop_sequence=None,
                 usage={**usage, "output_tokens": min(1, usage.get("output_tokens", 0))})
    out = [ev("message_start", {"message": start})]
    for i, block in enumerate(doc.get("content") or ()):
        kind = block.get("type")
        if kind == "text":
            out.append(ev("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}}))
            out.append(ev("content_block_delta", {"index": i, "delta": {"type": "text_delta",
                                                                        "text": block.get("text", "")}}))
        elif kind == "tool_use":
            out.append(ev("content_block_start", {"index": i, "content_block": {**block, "input": {}}}))
            out.append(ev("content_block_delta", {"index": i, "delta": {
                "type": "input_json_delta", "partial_json": orjson.dumps(block.get("input", {})).decode()}}))
        elif kind == "thinking":
            out.append(ev("content_block_start", {"index": i, "content_block": {"type": "thinking", "thinking": ""}}))
            out.append(ev("content_block_delta", {"index": i, "delta": {"type": "thinking_delta",
                                                                        "thinking": block.get("thinking", "")}}))
            if block.get("signature"):
                out.append(ev("content_block_delta", {"index": i, "delta": {"type": "signature_delta",
                                                                            "signature": block["signature"]}}))
        else:
            return None  # a block type whose stream form is not spelled out here: a miss
        out.append(ev("content_block_stop", {"index": i}))
    out.append(ev("message_delta", {"delta": {"stop_reason": doc.get("stop_reason"),
                                              "stop_sequence": doc.get("stop_sequence")},
                                    "usage": {"output_tokens": usage.get("output_tokens", 0)}}))
    out.append(ev("message_stop", {}))
    return out


def _responses_stream(doc: dict[str, Any]) -> list[bytes] | None:
    """A finished Response as the event sequence OpenAI streams for it
    (shared/reference/responses-api.md §4.2: created, in_progress, each item
    added → its parts' deltas and dones → done, completed), ``sequence_number`` from 0."""
    out: list[bytes] = []

    def ev(kind: str, body: dict[str, Any]) -> None:
        data = orjson.dumps({"type": kind, "sequence_number": len(out), **body})
        out.append(b"event: " + kind.encode() + b"\n" + encode_data(data))

    shell = {**doc, "status": "in_progress", "output": [], "usage": None}
    ev("response.created", {"response": shell})
    ev("response.in_progress", {"response": shell})
    for i, item in enumerate(doc.get("output") or ()):
        if not isinstance(item, dict):
            return None
        kind, item_id = item.get("type"), item.get("id")
        ids = {"item_id": item_id, "output_index": i}
        if kind == "message":
            ev("response.output_item.added", {"output_index": i, "item": {**item, "status": "in_progress",
                                                                          "content": []}})
            for c, part in enumerate(item.get("content") or ()):
                ptype = part.get("type")
                if ptype == "output_text":
                    text = part.get("text", "")
                    ev("response.content_part.added", {**ids, "content_index": c, "part": {**part, "text": ""}})
                    ev("response.output_text.delta", {**ids, "content_index": c, "delta": text, "logprobs": []})
                    ev("response.output_text.done", {**ids, "content_index": c, "text": text, "logprobs": []})
                elif ptype == "refusal":
                    text = part.get("refusal", "")
                    ev("response.content_part.added", {**ids, "content_index": c, "part": {**part, "refusal": ""}})
                    ev("response.refusal.delta", {**ids, "content_index": c, "delta": text})
                    ev("response.refusal.done", {**ids, "content_index": c, "refusal": text})
                else:
                    return None  # a part whose stream form is not spelled out here: a miss
                ev("response.content_part.done", {**ids, "content_index": c, "part": part})
        elif kind == "function_call":
            args = item.get("arguments", "")
            ev("response.output_item.added", {"output_index": i, "item": {**item, "status": "in_progress",
                                                                          "arguments": ""}})
            ev("response.function_call_arguments.delta", {**ids, "delta": args})
            ev("response.function_call_arguments.done", {**ids, "name": item.get("name"), "arguments": args})
        elif kind == "reasoning":
            ev("response.output_item.added", {"output_index": i, "item": item})
        else:
            return None  # built-in tool items (web search, file search...): not rebuilt here
        ev("response.output_item.done", {"output_index": i, "item": item})
    ev("response.completed", {"response": doc})
    return out

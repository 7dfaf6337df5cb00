"""The internal OpenAI chat stream → the Responses event sequence (sans-IO).

``ResponsesStream.feed(bytes)`` takes OpenAI ``chat.completion.chunk`` SSE
bytes (what every adapter's stream translator hands out) and returns the
Responses SSE bytes they complete; ``finish()`` the rest. The sequence is
the one shared/reference/responses-api.md §4.2/§4.3/§6.5 describe and the
openai SDK's accumulators check (§4.5).

Invariants:
- ``response.created`` is the first event and exactly one terminal event
  (``response.completed`` / ``.incomplete`` / ``.failed``) is the last, all
  carrying the same response id; the terminal one holds the full output;
- ``output_index`` counts 0, 1, 2, ... in the order items are added; every
  item has an id, used as ``item_id`` on its events and unchanged in its
  ``.done``; every added item is done before the terminal event;
- ``sequence_number`` counts every event from 0;
- each returned piece holds whole events only (the redactor screens pieces).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import ProxyError, UpstreamProtocolError
from ..sse import DEFAULT_MAX_EVENT, SSEDecoder
from .responses import (
    Echo,
    Ids,
    call_item,
    envelope,
    finish_status,
    message_item,
    reasoning_item,
    text_part,
    usage_of,
)


class _Item:
    __slots__ = ("doc", "done", "index", "kind", "text")

    def __init__(self, index: int, doc: dict[str, Any], kind: str) -> None:
        self.index = index
        self.doc = doc
        self.kind = kind  # message, refusal (a message whose part is a refusal), reasoning, function_call
        self.text: list[str] = []  # text, reasoning text or call arguments so far
        self.done = False


class ResponsesStream:
    """One Response's events from one chat stream; ``response`` is the final Response once ended."""

    __slots__ = (
        "_calls",
        "_created",
        "_decoder",
        "_echo",
        "_finish",
        "_ids",
        "_items",
        "_open",
        "_seq",
        "_usage",
        "ended",
        "response",
        "started",
    )

    def __init__(self, echo: Echo, ids: Ids, created: int, max_event_size: int = DEFAULT_MAX_EVENT) -> None:
        self._echo = echo
        self._ids = ids
        self._created = created
        self._decoder = SSEDecoder(max_event_size)
        self._seq = 0
        self._items: list[_Item] = []
        self._open: _Item | None = None  # the message or reasoning item text goes to
        self._calls: dict[int, _Item] = {}  # chat tool_calls index → its item
        self._finish: Any = None
        self._usage: dict[str, Any] | None = None
        self.started = False
        self.ended = False
        self.response: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for _, payload in self._decoder.feed(data):
            if self.ended:
                break
            if payload[:6] == b"[DONE]":
                self._end(out)
                continue
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise UpstreamProtocolError("upstream stream sent an event that is not JSON") from None
            if isinstance(chunk, dict):
                self._chunk(chunk, out)
        return b"".join(out)

    def finish(self) -> bytes:
        out = [self.feed(b"\n\n")] if self._decoder.pending else []
        if not self.ended:
            raise UpstreamProtocolError("upstream stream ended before [DONE]")
        return b"".join(out)

    def failed(self, exc: ProxyError) -> bytes:
        """The closing event for a stream that failed after its first byte (§4.6)."""
        if self.ended:
            return b""
        out: list[bytes] = []
        if not self.started:
            self._start(out)
        code = "rate_limit_exceeded" if exc.status == 429 else "server_error"
        self._terminal(out, "failed", error={"code": code, "message": exc.message})
        return b"".join(out)

    # ----------------------------------------------------------------- internals

    def _emit(self, out: list[bytes], etype: str, doc: dict[str, Any]) -> None:
        doc = {"type": etype, "sequence_number": self._seq, **doc}
        self._seq += 1
        out.append(b"event: " + etype.encode() + b"\ndata: " + orjson.dumps(doc) + b"\n\n")

    def _start(self, out: list[bytes]) -> None:
        self.started = True
        shell = envelope(self._echo, self._ids, self._created, "in_progress", [], None)
        self._emit(out, "response.created", {"response": shell})
        self._emit(out, "response.in_progress", {"response": shell})

    def _chunk(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        if not self.started:
            self._start(out)
        err = chunk.get("error")
        if isinstance(err, dict):  # an upstream error relayed as a chunk
            message = str(err.get("message") or "upstream stream failed")
            self._terminal(out, "failed", error={"code": "server_error", "message": message})
            return
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                self._text(out, "reasoning", reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text(out, "message", content)
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._text(out, "refusal", refusal)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._call(out, call)
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]

    def _add(self, out: list[bytes], doc: dict[str, Any], kind: str) -> _Item:
        item = _Item(len(self._items), doc, kind)
        self._items.append(item)
        self._emit(out, "response.output_item.added", {"output_index": item.index, "item": doc})
        return item

    def _text(self, out: list[bytes], kind: str, text: str) -> None:
        item = self._open
        if item is None or item.kind != kind:
            if item is not None:
                self._close(out, item)
            n = len(self._items)
            if kind == "message":
                item = self._add(out, message_item(self._ids.item("msg", n), [], "in_progress"), kind)
                part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
            elif kind == "refusal":  # §6.5: delta.refusal → a refusal content part
                item = self._add(out, message_item(self._ids.item("msg", n), [], "in_progress"), kind)
                part = {"type": "refusal", "refusal": ""}
            else:
                doc = {"id": self._ids.item("rs", n), "type": "reasoning", "summary": [], "content": [],
                       "status": "in_progress"}
                item = self._add(out, doc, kind)
                part = {"type": "reasoning_text", "text": ""}
            self._emit(out, "response.content_part.added",
                       {"item_id": item.doc["id"], "output_index": item.index, "content_index": 0, "part": part})
            self._open = item
        item.text.append(text)
        if kind == "message":
            self._emit(out, "response.output_text.delta", {"item_id": item.doc["id"], "output_index": item.index,
                                                           "content_index": 0, "delta": text, "logprobs": []})
        elif kind == "refusal":
            self._emit(out, "response.refusal.delta", {"item_id": item.doc["id"], "output_index": item.index,
                                                       "content_index": 0, "delta": text})
        else:
            self._emit(out, "response.reasoning_text.delta", {"item_id": item.doc["id"], "output_index": item.index,
                                                              "content_index": 0, "delta": text})

    def _call(self, out: list[bytes], call: dict[str, Any]) -> None:
        index = call.get("index", 0)
        fn: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        item = self._calls.get(index)
        if item is None:
            if self._open is not None:
                self._close(out, self._open)
                self._open = None
            doc = call_item(self._ids.item("fc", len(self._items)), str(call.get("id") or ""),
                            str(fn.get("name") or ""), "", "in_progress")
            item = self._calls[index] = self._add(out, doc, "function_call")
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            item.text.append(args)
            self._emit(out, "response.function_call_arguments.delta",
                       {"item_id": item.doc["id"], "output_index": item.index, "delta": args})

    def _close(self, out: list[bytes], item: _Item) -> None:
        if item.done:
            return
        item.done = True
        status = "incomplete" if finish_status(self._finish)[0] == "incomplete" else "completed"
        text = "".join(item.text)
        ids = {"item_id": item.doc["id"], "output_index": item.index}
        kind = item.kind
        if kind == "message":
            self._emit(out, "response.output_text.done", {**ids, "content_index": 0, "text": text, "logprobs": []})
            part = text_part(text)
            self._emit(out, "response.content_part.done", {**ids, "content_index": 0, "part": part})
            item.doc = message_item(item.doc["id"], [part], status)
        elif kind == "refusal":
            self._emit(out, "response.refusal.done", {**ids, "content_index": 0, "refusal": text})
            part = {"type": "refusal", "refusal": text}
            self._emit(out, "response.content_part.done", {**ids, "content_index": 0, "part": part})
            item.doc = message_item(item.doc["id"], [part], status)
        elif kind == "reasoning":
            self._emit(out, "response.reasoning_text.done", {**ids, "content_index": 0, "text": text})
            part = {"type": "reasoning_text", "text": text}
            self._emit(out, "response.content_part.done", {**ids, "content_index": 0, "part": part})
            item.doc = reasoning_item(item.doc["id"], text)
        else:
            d = item.doc
            self._emit(out, "response.function_call_arguments.done", {**ids, "name": d["name"], "arguments": text})
            item.doc = call_item(d["id"], d["call_id"], d["name"], text, "completed")
        self._emit(out, "response.output_item.done", {"output_index": item.index, "item": item.doc})

    def _end(self, out: list[bytes]) -> None:
        if not self.started:
            self._start(out)
        for item in self._items:
            self._close(out, item)
        status, reason = finish_status(self._finish)
        self._terminal(out, status, incomplete=reason)

    def _terminal(self, out: list[bytes], status: str, *, error: dict[str, Any] | None = None,
                  incomplete: str | None = None) -> None:
        # A failed stream's items stay as far as they got (in_progress), as OpenAI's do.
        output = [item.doc for item in self._items]
        doc = envelope(self._echo, self._ids, self._created, status, output, usage_of(self._usage),
                       error=error, incomplete=incomplete)
        self.response = doc
        self.ended = True
        self._emit(out, f"response.{status}", {"response": doc})

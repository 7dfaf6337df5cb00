"""Fake upstreams: small real aiohttp servers speaking a provider's wire format.

A ``FakeUpstream`` records every request it receives (``Seen``) and answers
from a queue of scripted ``Reply``s (the last one repeats). Behaviours cover
the ways a real provider answers or fails: JSON, an SSE stream (optionally
paced by an event the test sets), an error status, garbage, a hang, a
connection dropped mid-stream. ``disconnected`` is set when the proxy closes
the connection while a reply is still being written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # A stream: raw chunks written one by one (each already framed).
    stream: list[bytes] | None = None
    content_type: str = "text/event-stream"
    # Block before the first chunk until the test sets this event.
    hold: asyncio.Event | None = None
    # Pause after this many stream chunks until `resume` is set.
    pause_after: int | None = None
    resume: asyncio.Event | None = None
    # Close the connection after this many stream chunks (no end marker).
    drop_after: int | None = None
    # Never answer (until the client gives up).
    hang: bool = False


def sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def openai_completion(content: str = "hi", model: str = "gpt-4o", usage: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
             "logprobs": None}
        ],
    }
    if usage:
        doc["usage"] = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    return doc


def openai_stream(pieces: list[str], model: str = "gpt-4o", usage: bool = False) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        c: dict[str, Any] = {
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            c["usage"] = None
        return c

    out = [sse(chunk({"role": "assistant", "content": ""}))]
    out += [sse(chunk({"content": p})) for p in pieces]
    out.append(sse(chunk({}, "stop")))
    if usage:
        out.append(sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
                        "model": model, "choices": [],
                        "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces),
                                  "total_tokens": 5 + len(pieces)}}))
    out.append(b"data: [DONE]\n\n")
    return out


class FakeUpstream:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.replies: list[Reply] = [Reply(json=openai_completion())]
        self.disconnected = asyncio.Event()
        self.received = asyncio.Event()
        self.server: TestServer | None = None
        self.responder: Callable[[Seen], Reply] | None = None

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def start(self) -> FakeUpstream:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1", handler_cancellation=True)
        await self.server.start_server()
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def _next_reply(self, seen: Seen) -> Reply:
        if self.responder is not None:
            return self.responder(seen)
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=await request.read(),
        )
        self.seen.append(seen)
        self.received.set()
        reply = self._next_reply(seen)
        try:
            return await self._answer(request, reply)
        except asyncio.CancelledError:
            self.disconnected.set()
            raise

    async def _answer(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.hang:
            await asyncio.Event().wait()
        if reply.hold is not None:
            await reply.hold.wait()
        if reply.stream is None:
            body = reply.body if reply.body is not None else orjson.dumps(reply.json)
            ctype = "application/json" if reply.body is None else reply.content_type
            return web.Response(status=reply.status, body=body, headers={"Content-Type": ctype, **reply.headers})
        resp = web.StreamResponse(status=reply.status, headers={"Content-Type": reply.content_type, **reply.headers})
        await resp.prepare(request)
        for i, chunk in enumerate(reply.stream):
            if reply.drop_after is not None and i == reply.drop_after:
                assert request.transport is not None
                request.transport.close()
                return resp
            if reply.pause_after is not None and i == reply.pause_after and reply.resume is not None:
                await reply.resume.wait()
            await resp.write(chunk)
        await resp.write_eof()
        return resp


def openai_tool_stream(text: str, name: str, args_pieces: list[str], call_id: str = "call_abc",
                       model: str = "gpt-4o") -> list[bytes]:
    """A chat stream: some text, then one tool call whose arguments arrive in pieces, then usage."""
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = [sse(chunk({"role": "assistant", "content": text}))]
    out.append(sse(chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                          "function": {"name": name, "arguments": ""}}]})))
    out += [sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})) for p in args_pieces]
    out.append(sse(chunk({}, "tool_calls")))
    out.append(sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
                    "model": model, "choices": [],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}))
    out.append(b"data: [DONE]\n\n")
    return out


def openai_response(text: str = "native hi", rid: str = "resp_native1", model: str = "gpt-4o") -> dict[str, Any]:
    """A Response object as OpenAI's own /v1/responses answers it."""
    return {
        "id": rid, "object": "response", "created_at": 1741290958, "status": "completed", "error": None,
        "incomplete_details": None, "instructions": None, "model": model,
        "output": [{"type": "message", "id": "msg_native", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "temperature": 1.0, "top_p": 1.0,
        "usage": {"input_tokens": 3, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 5},
        "metadata": {},
    }


def responses_stream(text: str = "native hi", rid: str = "resp_native1") -> list[bytes]:
    """The SSE events OpenAI's /v1/responses streams for a text answer."""
    done = openai_response(text, rid)
    shell = {**done, "status": "in_progress", "output": [], "usage": None}
    item = {"type": "message", "id": "msg_native", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    ids = {"item_id": "msg_native", "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": shell}),
        ("response.in_progress", {"response": shell}),
        ("response.output_item.added", {"output_index": 0, "item": item}),
        ("response.content_part.added", {**ids, "part": part}),
        ("response.output_text.delta", {**ids, "delta": text, "logprobs": []}),
        ("response.output_text.done", {**ids, "text": text, "logprobs": []}),
        ("response.content_part.done", {**ids, "part": {**part, "text": text}}),
        ("response.output_item.done", {"output_index": 0, "item": done["output"][0]}),
        ("response.completed", {"response": done}),
    ]
    return [sse({"type": t, "sequence_number": i, **d}, t) for i, (t, d) in enumerate(events)]

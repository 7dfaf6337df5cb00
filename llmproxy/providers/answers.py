"""Writing OpenAI answers, for every translating adapter.

The other half of ``translate.py`` (which reads the client's OpenAI request):
``chat.completion`` documents, ``chat.completion.chunk`` streams, usage,
embeddings lists, and ``EventStream``, the skeleton of a stream translator
that turns whole provider events into chunks. Shared by ``anthropic.py``,
``gemini_*.py``, ``bedrock.py``, ``cohere.py`` and ``ollama.py``, so that they
all answer alike. Shapes follow openai-python ``types/chat/chat_completion.py``,
``chat_completion_chunk.py`` and ``create_embedding_response.py``. Pure: no
I/O, inputs never mutated.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..errors import UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout
from ..sse import DONE
from .base import CallContext, encode_chunks

# --------------------------------------------------------------------------- chat.completion


def count(d: Mapping[str, Any], key: str) -> int:
    """A token count from a provider's usage object; 0 when absent or not a number."""
    value = d.get(key)
    if type(value) is int:  # the usual case, first: this runs for every usage field of every answer
        return value
    return int(value) if type(value) is float else 0


def usage(prompt: int, completion: int, total: int | None = None, *, cached: int | None = None,
          reasoning: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if total is not None else prompt + completion,
    }
    if cached is not None:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def finish_reason(table: Mapping[str, str], reason: Any, has_tool_calls: bool) -> str:
    """A provider's stop reason → OpenAI's; a plain stop with tool calls is ``tool_calls``."""
    out = table.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if has_tool_calls and out == "stop" else out


def completion(id: str, created: int, model: str, choices: list[dict[str, Any]],
               usage: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": id, "object": "chat.completion", "created": created, "model": model,
                           "choices": choices}
    if usage is not None:
        doc["usage"] = usage
    return doc


def one_choice(ctx: CallContext, model: str, text: str | None, tool_calls: list[dict[str, Any]],
               finish: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    """A one-choice ``chat.completion`` for providers that send no answer id of their own."""
    return completion(f"chatcmpl-{ctx.request_id}", ctx.created, model,
                      [choice(message(text, tool_calls), finish)], usage)


def choice(message: dict[str, Any], finish: str, index: int = 0,
           logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}


def message(text: str | None, tool_calls: list[dict[str, Any]], reasoning: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    if reasoning:
        msg["reasoning_content"] = reasoning
    return msg


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """A complete OpenAI tool call; object arguments become the JSON string OpenAI uses."""
    args = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


# --------------------------------------------------------------------------- streams


class Chunks:
    """Builds ``chat.completion.chunk`` dicts for one stream.

    With ``include_usage`` every chunk carries ``"usage": null`` and the usage
    chunk (empty ``choices``) comes last, as OpenAI sends them.
    """

    __slots__ = ("id", "created", "model", "include_usage")

    def __init__(self, id: str, created: int, model: str, include_usage: bool) -> None:
        self.id = id
        self.created = created
        self.model = model
        self.include_usage = include_usage

    def delta(self, delta: dict[str, Any], index: int = 0, finish: str | None = None,
              logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

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
        return self.delta({}, finish=reason)

    def usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage}

    def usage_if_asked(self, usage: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The closing usage chunk, when the client asked for it and usage is known."""
        return [self.usage(usage)] if self.include_usage and usage is not None else []


class EventStream:
    """A stream translator that turns each whole provider event into chunks.

    Subclasses decode (``_decode``) and translate one event (``_event``, which
    returns ``DONE`` at the end of the answer). An upstream error met after
    some chunks of one read is held back so those chunks reach the client
    first, and raised by the next call.
    """

    __slots__ = ("_chunks", "_error", "done", "usage")

    def __init__(self, chunks: Chunks) -> None:
        self._chunks = chunks
        self._error: UpstreamStatusError | UpstreamTimeout | None = None
        self.done = False
        self.usage: dict[str, Any] | None = None

    def _decode(self, data: bytes) -> Iterable[Any]:
        raise NotImplementedError

    def _event(self, event: Any, out: list[dict[str, Any]]) -> bytes:
        raise NotImplementedError

    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        out: list[dict[str, Any]] = []
        tail = b""
        try:
            for event in self._decode(data):
                if self.done:
                    break
                tail = self._event(event, out)
        except (UpstreamStatusError, UpstreamTimeout) as exc:
            if not out:
                raise
            self._error = exc  # deliver what came before it first
        return encode_chunks(out) + tail

    def _end(self, out: list[dict[str, Any]], finish: str | None, usage: dict[str, Any] | None) -> bytes:
        """The finish chunk (if any), the usage chunk (if asked for), then ``[DONE]``."""
        if finish is not None:
            out.append(self._chunks.finish(finish))
        self.usage = usage
        out += self._chunks.usage_if_asked(usage)
        self.done = True
        return DONE

    def _finished(self, ended_early: str) -> None:
        if self._error is not None:
            raise self._error
        if not self.done:
            raise UpstreamProtocolError(ended_early)


# --------------------------------------------------------------------------- embeddings


def requested_encoding(ctx: object) -> str:
    """The client's ``encoding_format`` for an embeddings answer.

    Read from the call context when it carries one; otherwise floats, which
    the OpenAI SDKs accept even when they asked for base64 by default.
    """
    return "base64" if getattr(ctx, "encoding_format", None) == "base64" else "float"


def embeddings_list(vectors: list[Any], model: str, fmt: str, prompt_tokens: int) -> tuple[bytes, dict[str, Any]]:
    """An OpenAI embeddings ``list`` and its usage."""
    data = [
        {"object": "embedding", "index": i, "embedding": floats_to_base64(v) if fmt == "base64" else v}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return orjson.dumps({"object": "list", "data": data, "model": model, "usage": usage}), usage


def floats_to_base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()

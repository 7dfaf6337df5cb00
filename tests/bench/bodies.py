"""Static bodies for the benchmark: what the upstream answers and what clients send.

The upstream answers are byte-for-byte what OpenAI sends for a short reply:
one ``chat.completion`` object, and a stream of ``STREAM_CHUNKS`` ``data:``
events (role chunk, content chunks, finish chunk) followed by ``data: [DONE]``.
Run as a script to print them (``python tests/bench/bodies.py plain|sse``).
"""

from __future__ import annotations

import json
import sys

STREAM_CHUNKS = 50
CREATED = 1_735_689_600
COMPLETION_ID = "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
MODEL = "gpt-4o-mini-2024-07-18"
FINGERPRINT = "fp_0ba0d124f1"

# A 48-token reply: one per content chunk, so the stream has exactly 50 events.
WORDS = (
    "The quick brown fox jumps over the lazy dog while the proxy relays every token "
    "as soon as it arrives, adding as little latency as it can, so that the client "
    "sees the stream almost exactly as the provider sent it, one small chunk at a time "
    "until the end."
).split()


def _dumps(doc: object) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def reply_tokens() -> list[str]:
    n = STREAM_CHUNKS - 2
    words = (WORDS * (n // len(WORDS) + 1))[:n]
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def chat_completion() -> bytes:
    doc = {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(reply_tokens()), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 25,
            "completion_tokens": STREAM_CHUNKS - 2,
            "total_tokens": 25 + STREAM_CHUNKS - 2,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "system_fingerprint": FINGERPRINT,
    }
    return _dumps(doc).encode()


def _chunk(delta: dict, finish: str | None) -> str:
    return _dumps(
        {
            "id": COMPLETION_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


def sse_stream() -> bytes:
    events = [_chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    events += [_chunk({"content": tok}, None) for tok in reply_tokens()]
    events.append(_chunk({}, "stop"))
    assert len(events) == STREAM_CHUNKS
    return "".join(f"data: {e}\n\n" for e in events).encode() + b"data: [DONE]\n\n"


def request_body(model: str, stream: bool) -> bytes:
    """A typical small chat request: model, a system and a user message, temperature."""
    doc: dict = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
            {"role": "user", "content": "Write one sentence about a fox and a dog."},
        ],
        "temperature": 0.7,
    }
    if stream:
        doc["stream"] = True
    return _dumps(doc).encode()


def nginx_string(data: bytes) -> str:
    """``data`` as an nginx single-quoted string."""
    text = data.decode()
    if "$" in text:
        raise ValueError("nginx would expand '$' in a return body")
    text = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{text}'"


def nginx_return(data: bytes, var: str, piece: int = 3000) -> str:
    """nginx directives answering 200 with ``data``.

    One config token must fit nginx's 4 KiB parse buffer, so a longer body is
    split over ``set $<var>N '...';`` variables and ``return 200 "$<var>0$<var>1..."``.
    """
    if len(data) <= piece:
        return f"return 200 {nginx_string(data)};"
    parts = [data[i : i + piece] for i in range(0, len(data), piece)]
    lines = [f"set ${var}{i} {nginx_string(p)};" for i, p in enumerate(parts)]
    joined = "".join(f"${{{var}{i}}}" for i in range(len(parts)))
    lines.append(f'return 200 "{joined}";')
    return "\n            ".join(lines)


def count_events(body: bytes) -> tuple[int, bool]:
    """(number of JSON ``data:`` events, whether ``data: [DONE]`` came last) of an SSE body."""
    events = [e for e in body.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]
    data = [e[6:] for e in events if e.startswith(b"data: ")]
    done = bool(data) and data[-1] == b"[DONE]"
    n = 0
    for payload in data:
        if payload != b"[DONE]":
            json.loads(payload)
            n += 1
    return n, done


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "plain"
    out = {"plain": chat_completion, "sse": sse_stream}[which]()
    sys.stdout.buffer.write(out)

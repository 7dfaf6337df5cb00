"""The OpenAI relay's byte fast path (``OpenAIStreamRelay._canonical``) must be
invisible: for any stream and any split into reads, the relay gives the same
bytes, usage, error and end as the event path alone."""

from __future__ import annotations

import random

import pytest

from llmproxy.errors import UpstreamError
from llmproxy.providers.openai import OpenAIStreamRelay

EVENTS = [
    b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n',
    b'data: {"choices":[{"delta":{"content":"a\\nb"}}],"usage":null}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n',
    b'data: {"choices": [], "usage": {"prompt_tokens": 1}}\n\n',
    b'data: {"choices":[]}\n\n',
    b'data: {"error":{"message":"boom"}}\n\n',
    b": keep-alive\n\n",
    b'data: {"choices":[{"delta":{}}]}\r\n\r\n',
    b'data: {"choices":\ndata: [{"delta":{}}]}\n\n',
    b"\n\n",
    b'event: x\ndata: {"choices":[]}\n\n',
    b"data: [DONE]\n\n",
]


class EventsOnly(OpenAIStreamRelay):
    def _canonical(self, data: bytes) -> bool:
        return False


class FastOnly(OpenAIStreamRelay):
    def _feed_events(self, data: bytes) -> bytes:
        raise AssertionError("the event path was taken")


def run(pieces: list[bytes], fast: bool, drop_empty: bool, drop_usage: bool) -> tuple[object, ...]:
    cls = OpenAIStreamRelay if fast else EventsOnly
    relay = cls(drop_empty_choices=drop_empty, drop_usage_chunk=drop_usage)
    out = []
    try:
        for p in pieces:
            out.append(relay.feed(p))
        out.append(relay.finish())
        ended: object = "ok"
    except UpstreamError as exc:
        ended = type(exc).__name__
    return b"".join(out), relay.usage, relay.error, relay.done, ended


@pytest.mark.parametrize("seed", range(300))
def test_the_fast_path_changes_nothing(seed: int) -> None:
    rng = random.Random(seed)
    stream = b"".join(rng.choice(EVENTS[:-1]) for _ in range(rng.randint(0, 8)))
    if rng.random() < 0.8:
        stream += EVENTS[-1]
    if rng.random() < 0.2:
        stream += rng.choice(EVENTS)  # after [DONE]
    cuts = sorted(rng.sample(range(1, len(stream)), min(rng.randint(0, 4), max(len(stream) - 1, 0))))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])] if stream else []
    flags = (rng.random() < 0.5, rng.random() < 0.5)
    assert run(pieces, True, *flags) == run(pieces, False, *flags)


def test_a_clean_read_takes_the_fast_path() -> None:
    relay = FastOnly()
    data = EVENTS[0] * 3 + EVENTS[1] + EVENTS[-1]
    assert relay.feed(data) is data and relay.done

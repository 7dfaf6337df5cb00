"""The native Responses relay (``providers.openai.ResponsesRelay``), pure: the
bytes out are the bytes in, whole events at a time, however the reads fall."""

from __future__ import annotations

import pytest

from llmproxy.errors import UpstreamProtocolError, UpstreamTooLarge
from llmproxy.providers.openai import ResponsesRelay

from .fakes import responses_stream


def relay_all(pieces: list[bytes], max_event: int = 1 << 20) -> tuple[bytes, list[bytes], ResponsesRelay]:
    relay = ResponsesRelay(max_event)
    outs = [relay.feed(p) for p in pieces]
    outs.append(relay.finish())
    return b"".join(outs), outs, relay


def framed(stream: bytes, framing: bytes) -> bytes:
    return stream.replace(b"\n", framing)


@pytest.mark.parametrize("framing", [b"\n", b"\r\n", b"\r"])
def test_every_split_offset_relays_the_same_bytes_and_usage(framing: bytes) -> None:
    stream = framed(b"".join(responses_stream("hello there")), framing)
    whole, _, relay = relay_all([stream])
    assert whole == stream and relay.done
    usage = relay.usage
    assert usage is not None and usage["completion_tokens"] > 0
    for cut in range(1, len(stream)):
        out, outs, r = relay_all([stream[:cut], stream[cut:]])
        assert out == stream, cut
        assert r.usage == usage, cut
        # Pieces end at event boundaries: each but the tail ends with a blank line.
        for piece in outs[:-1]:
            assert not piece or piece.endswith(framing * 2), (cut, piece[-8:])


def test_one_byte_reads() -> None:
    stream = b"".join(responses_stream("byte by byte"))
    out, _, relay = relay_all([stream[i:i + 1] for i in range(len(stream))])
    assert out == stream and relay.done and relay.usage is not None


def test_a_stream_cut_before_its_terminal_event_is_an_error() -> None:
    events = responses_stream("cut")
    relay = ResponsesRelay()
    for e in events[:-1]:
        relay.feed(e)
    with pytest.raises(UpstreamProtocolError, match="terminal event"):
        relay.finish()


def test_an_error_event_ends_the_stream() -> None:
    relay = ResponsesRelay()
    relay.feed(b'event: error\ndata: {"type": "error", "code": "server_error", "message": "boom"}\n\n')
    assert relay.done and relay.finish() == b""


def test_an_event_larger_than_the_bound_is_refused_in_small_reads() -> None:
    relay = ResponsesRelay(max_event_size=4096)
    relay.feed(b'data: {"type":"response.output_text.delta","delta":"')
    with pytest.raises(UpstreamTooLarge):
        for _ in range(100):
            relay.feed(b"x" * 100)

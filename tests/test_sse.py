"""The SSE decoder, split at every byte offset (STYLE: incremental decoders)."""

from __future__ import annotations

import pytest

from llmproxy.errors import UpstreamTooLarge
from llmproxy.sse import SSEDecoder, SSEEvent

STREAM = (
    b": keep-alive\n\n"
    b"event: message_start\ndata: {\"a\":1}\n\n"
    b"data: {\"multi\":\ndata: \"line\"}\r\n\r\n"
    b"data:{\"no_space\":true}\r\r"
    b"id: 7\nretry: 100\ndata: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent("message_start", b'{"a":1}'),
    SSEEvent(None, b'{"multi":\n"line"}'),
    SSEEvent(None, b'{"no_space":true}'),
    SSEEvent(None, b"[DONE]"),
]


def decode_in_pieces(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    start = 0
    for cut in [*cuts, len(data)]:
        events += decoder.feed(data[start:cut])
        start = cut
    return events + decoder.finish()


def test_whole_stream():
    assert decode_in_pieces(STREAM, []) == EXPECTED


def test_split_at_every_offset():
    for i in range(len(STREAM) + 1):
        assert decode_in_pieces(STREAM, [i]) == EXPECTED, i


def test_split_at_every_pair_of_offsets():
    n = len(STREAM)
    for i in range(0, n + 1, 3):
        for j in range(i, n + 1, 5):
            assert decode_in_pieces(STREAM, [i, j]) == EXPECTED, (i, j)


def test_byte_by_byte():
    assert decode_in_pieces(STREAM, list(range(1, len(STREAM)))) == EXPECTED


def test_unterminated_tail_is_flushed_by_finish():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: {\"x\":1}") == []
    assert decoder.pending
    assert decoder.finish() == [SSEEvent(None, b'{"x":1}')]


# --------------------------------------------------------------------------- limits

def test_every_event_of_the_stream_fits_a_limit_of_its_longest_event_and_split_anywhere():
    # STREAM's longest event (with its line ends, CRLF counted once) is 32 bytes.
    longest = max(len(e) + 1 for e in STREAM.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n"))
    for i in range(len(STREAM) + 1):
        decoder = SSEDecoder(max_event_size=longest)
        assert decoder.feed(STREAM[:i]) + decoder.feed(STREAM[i:]) + decoder.finish() == EXPECTED, i
    with pytest.raises(UpstreamTooLarge):
        decode_limited(STREAM, longest - 1, [])


def decode_limited(data: bytes, limit: int, cuts: list[int]) -> list[SSEEvent]:
    decoder = SSEDecoder(max_event_size=limit)
    events: list[SSEEvent] = []
    start = 0
    for cut in [*cuts, len(data)]:
        events += decoder.feed(data[start:cut])
        start = cut
    return events + decoder.finish()


def test_an_event_of_exactly_the_limit_passes_and_one_byte_more_fails_at_every_split():
    limit = 40
    ok = b"data: " + b"x" * (limit - 7) + b"\n\n"  # 39 bytes + its line end = 40
    bad = b"data: " + b"x" * (limit - 6) + b"\n\n"
    for i in range(len(ok) + 1):
        assert decode_limited(ok + ok, limit, [i]) == [SSEEvent(None, b"x" * (limit - 7))] * 2, i
    for i in range(len(bad) + 1):
        with pytest.raises(UpstreamTooLarge) as err:
            decode_limited(ok + bad, limit, [i, i + 3])
        assert err.value.code == "upstream_event_too_large" and err.value.status == 502


def test_a_line_that_never_ends_fails_once_past_the_limit_and_is_not_buffered_further():
    decoder = SSEDecoder(max_event_size=1000)
    assert decoder.feed(b"data: ") == []
    fed = 6
    with pytest.raises(UpstreamTooLarge):
        while True:
            fed += 100
            decoder.feed(b"a" * 100)
    assert 1000 < fed <= 1100


def test_each_byte_is_searched_once_however_long_the_event_grows():
    # The scan offset moves with the data: a stream of one-byte reads costs
    # linear work. Checked by the invariant, not by a clock.
    decoder = SSEDecoder(max_event_size=10_000)
    decoder.feed(b"data: ")
    for n in range(1, 2000):
        decoder.feed(b"a")
        assert decoder._scanned == len(decoder._buf) == 6 + n
    decoder.feed(b"\r")
    decoder.feed(b"\n\r\n")  # CRLF split across reads, then a blank line
    assert decoder._buf == bytearray() and decoder._scanned == 0

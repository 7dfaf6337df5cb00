"""The SSE decoder, split at every byte offset (STYLE: incremental decoders)."""

from __future__ import annotations

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

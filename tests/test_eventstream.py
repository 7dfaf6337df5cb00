"""The AWS event-stream decoder against botocore's decoder and its test vectors.

botocore has a decoder (``botocore.eventstream.EventStreamBuffer``) but no
encoder, so the cross-checks run both ways: the frames botocore's own unit
tests use (tests/unit/test_eventstream.py in boto/botocore) decode to the same
messages with ours, and frames written by ``encode_message`` below (the
layout the fake Bedrock server sends) decode identically with botocore's and
ours.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer, ParserError

from llmproxy.errors import UpstreamTooLarge
from llmproxy.providers.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    EventStreamMessage,
)


def encode_header(name: str, value: Any) -> bytes:
    raw = name.encode()
    head = struct.pack(">B", len(raw)) + raw
    if value is True:
        return head + b"\x00"
    if value is False:
        return head + b"\x01"
    if isinstance(value, int):
        return head + b"\x05" + struct.pack(">q", value)
    if isinstance(value, bytes):
        return head + b"\x06" + struct.pack(">H", len(value)) + value
    data = str(value).encode()
    return head + b"\x07" + struct.pack(">H", len(data)) + data


def encode_message(headers: dict[str, Any], payload: bytes) -> bytes:
    """One event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    hdrs = b"".join(encode_header(k, v) for k, v in headers.items())
    total = 12 + len(hdrs) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdrs))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + hdrs + payload
    return body + struct.pack(">I", zlib.crc32(body))


# botocore tests/unit/test_eventstream.py: encoded frame → (headers, payload).
BOTOCORE_POSITIVE = [
    (b"\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2H\xeb}\x98\xc8\xff", {}, b""),
    (b"\x00\x00\x00\x17\x00\x00\x00\x07)\x86\x01X\x04byte\x02\xff\xc2\xf8i\xdc", {"byte": -1}, b""),
    (b"\x00\x00\x00\x19\x00\x00\x00\tq\x0e\x92>\x05short\x03\xff\xff\xb2|\xb6\xcc", {"short": -1}, b""),
    (b"\x00\x00\x00\x1d\x00\x00\x00\r\x83\xe3\xf0\xe7\x07integer\x04\xff\xff\xff\xff\x8b\x8e\x12\xeb",
     {"integer": -1}, b""),
    (b"\x00\x00\x00\x1e\x00\x00\x00\x0e]J\xdb\x8d\x04long\x05\xff\xff\xff\xff\xff\xff\xff\xffK\xc22\xda",
     {"long": -1}, b""),
    (b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96", {}, b"{'foo':'bar'}"),
    (b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent-type\x07\x00\x10application/json{'foo':'bar'}"
     b"\x8d\x9c\x08\xb1", {"content-type": "application/json"}, b"{'foo':'bar'}"),
    (b"\x00\x00\x00\x62\x00\x00\x00\x52\x03\xb5\xcb\x9c"
     b"\x010\x00\x011\x01\x012\x02\x02\x013\x03\x00\x03"
     b"\x014\x04\x00\x00\x00\x04\x015\x05\x00\x00\x00\x00\x00\x00\x00\x05"
     b"\x016\x06\x00\x05bytes\x017\x07\x00\x04utf8"
     b"\x018\x08\x00\x00\x00\x00\x00\x00\x00\x08\x019\x090123456789abcdef"
     b"\x63\x35\x36\x71",
     {"0": True, "1": False, "2": 2, "3": 3, "4": 4, "5": 5, "6": b"bytes", "7": "utf8", "8": 8,
      "9": b"0123456789abcdef"}, b""),
    (b"\x00\x00\x00\x52\x00\x00\x00\x42\xbf\x23\x63\x7e"
     b"\x0d:message-type\x07\x00\x05error\x0b:error-code\x07\x00\x04code"
     b"\x0e:error-message\x07\x00\x07message\x6b\x6c\xea\x3d",
     {":message-type": "error", ":error-code": "code", ":error-message": "message"}, b""),
]
BOTOCORE_NEGATIVE = {
    "corrupted length": b"\x01\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96",
    "corrupted payload": b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'\x8d\xc3e96",
    "corrupted headers": (b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent+type\x07\x00\x10"
                          b"application/json{'foo':'bar'}\x8d\x9c\x08\xb1"),
    "corrupted header length": (b"\x00\x00\x00=\xff\x00\x01\x02\x07\xfd\x83\x96\x0ccontent-type\x07\x00"
                                b"\x10application/json{'foo':'bar'}\x8d\x9c\x08\xb1"),
    "duplicate header": (b"\x00\x00\x00\x24\x00\x00\x00\x14\x4b\xb9\x82\xd0"
                         b"\x04test\x04asdf\x04test\x04asdf\xf3\xf4\x75\x63"),
}


def botocore_decode(data: bytes) -> list[EventStreamMessage]:
    buf = EventStreamBuffer()
    buf.add_data(data)
    return [EventStreamMessage(m.headers, m.payload) for m in buf]


@pytest.mark.parametrize("frame, headers, payload", BOTOCORE_POSITIVE)
def test_botocore_vectors_decode(frame: bytes, headers: dict[str, Any], payload: bytes) -> None:
    assert EventStreamDecoder().feed(frame) == [EventStreamMessage(headers, payload)]
    assert botocore_decode(frame) == [EventStreamMessage(headers, payload)]


def test_botocore_vectors_split_at_every_byte() -> None:
    stream = b"".join(frame for frame, _, _ in BOTOCORE_POSITIVE)
    expected = [EventStreamMessage(h, p) for _, h, p in BOTOCORE_POSITIVE]
    for cut in range(len(stream) + 1):
        decoder = EventStreamDecoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == expected, cut
        assert decoder.pending == 0
    decoder = EventStreamDecoder()
    one_by_one = [m for i in range(len(stream)) for m in decoder.feed(stream[i : i + 1])]
    assert one_by_one == expected


@pytest.mark.parametrize("name", sorted(BOTOCORE_NEGATIVE))
def test_botocore_negative_vectors_are_errors(name: str) -> None:
    frame = BOTOCORE_NEGATIVE[name]
    with pytest.raises(ParserError):
        botocore_decode(frame)
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(frame)


def test_frames_we_encode_decode_the_same_in_botocore() -> None:
    frames = [
        encode_message({":message-type": "event", ":event-type": "contentBlockDelta",
                        ":content-type": "application/json"},
                       '{"contentBlockIndex":0,"delta":{"text":"héllo ✓"},"p":"abcdefgh"}'.encode()),
        encode_message({":message-type": "exception", ":exception-type": "throttlingException"},
                       b'{"message":"Too many requests"}'),
        encode_message({"flag": True, "off": False, "n": -(2**40), "raw": b"\x00\xff"}, b""),
        encode_message({}, b"x" * 70000),
    ]
    stream = b"".join(frames)
    theirs = botocore_decode(stream)
    assert EventStreamDecoder().feed(stream) == theirs
    assert len(theirs) == 4 and theirs[2].headers["n"] == -(2**40)


def test_corrupted_prelude_fails_at_once_without_waiting_for_the_body() -> None:
    frame = bytearray(encode_message({":event-type": "messageStop"}, b'{"stopReason":"end_turn"}'))
    frame[3] ^= 0xFF  # total length now wrong, prelude CRC no longer matches
    decoder = EventStreamDecoder()
    assert decoder.feed(bytes(frame[:11])) == []  # not a whole prelude yet
    with pytest.raises(EventStreamError, match="prelude checksum"):
        decoder.feed(bytes(frame[11:12]))


def test_corrupted_message_crc_is_an_error() -> None:
    frame = bytearray(encode_message({":event-type": "messageStop"}, b'{"stopReason":"end_turn"}'))
    frame[-1] ^= 0x01
    with pytest.raises(EventStreamError, match="message checksum"):
        EventStreamDecoder().feed(bytes(frame))


def test_impossible_lengths_are_rejected_even_with_a_valid_prelude_crc() -> None:
    for total, headers_len in ((10, 0), (20, 8), (1 << 31, 0), (200_000, 140_000)):
        prelude = struct.pack(">II", total, headers_len)
        prelude += struct.pack(">I", zlib.crc32(prelude))
        with pytest.raises(EventStreamError):
            EventStreamDecoder().feed(prelude)


def test_pending_reports_a_partial_message() -> None:
    frame = encode_message({":event-type": "metadata"}, b"{}")
    decoder = EventStreamDecoder()
    decoder.feed(frame[:-1])
    assert decoder.pending == len(frame) - 1
    assert len(decoder.feed(frame[-1:])) == 1 and decoder.pending == 0


def test_a_declared_length_above_max_event_size_is_refused_from_the_prelude() -> None:
    frame = encode_message({":event-type": "contentBlockDelta"}, b"x" * 500)
    # The frame fits a limit of its own size, split anywhere.
    for cut in range(len(frame) + 1):
        decoder = EventStreamDecoder(max_message_size=len(frame))
        assert len(decoder.feed(frame[:cut]) + decoder.feed(frame[cut:])) == 1, cut
    # One byte less: refused as soon as the 12-byte prelude is in, body unread.
    for cut in range(12, len(frame) + 1):
        with pytest.raises(UpstreamTooLarge) as err:
            EventStreamDecoder(max_message_size=len(frame) - 1).feed(frame[:cut])
        assert err.value.code == "upstream_event_too_large"
    assert EventStreamDecoder(max_message_size=len(frame) - 1).feed(frame[:11]) == []

"""AWS binary event-stream decoding (``application/vnd.amazon.eventstream``).

Sans-IO: ``EventStreamDecoder.feed(bytes)`` returns the messages those bytes
complete. The wire layout, big-endian (botocore ``eventstream.py``, and the
"Event stream encoding" page of the AWS Transcribe/Bedrock docs)::

    total_length:u32  headers_length:u32  prelude_crc:u32   (CRC32 of the first 8 bytes)
    headers: (name_len:u8 name:utf8 type:u8 value)*
    payload: total_length - headers_length - 16 bytes
    message_crc:u32                                         (CRC32 of everything before it)

Invariants: a corrupted prelude is rejected as soon as its 12 bytes have
arrived, before its length is trusted, so a damaged frame is an error at
once, never a wait for bytes that will not come; a message is only returned
once its CRC checked out; lengths are bounded like botocore bounds them,
and a declared total length above ``max_message_size`` (the provider's
``limits.max_event_size``) is refused from the prelude, before buffering it.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple, Union

from ..errors import UpstreamProtocolError, UpstreamTooLarge
from ..sse import DEFAULT_MAX_EVENT

# Types 0/1 → bool, 2-5 → int, 8 (timestamp) → int milliseconds, 6 and 9
# (uuid) → bytes, 7 → str: the same values botocore's decoder returns.
HeaderValue = Union[bool, int, bytes, str]

PRELUDE_LENGTH = 12
MIN_MESSAGE_LENGTH = 16  # prelude + message CRC
MAX_HEADERS_LENGTH = 128 * 1024  # botocore _MAX_HEADERS_LENGTH
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024  # botocore _MAX_PAYLOAD_LENGTH

_PRELUDE = struct.Struct(">III")
_U16 = struct.Struct(">H")
# type byte → (struct for fixed-size values, or None)
_FIXED = {2: struct.Struct(">b"), 3: struct.Struct(">h"), 4: struct.Struct(">i"),
          5: struct.Struct(">q"), 8: struct.Struct(">q")}


class EventStreamMessage(NamedTuple):
    headers: dict[str, HeaderValue]
    payload: bytes


class EventStreamError(UpstreamProtocolError):
    """The event stream is corrupt: bad CRC, impossible length, bad header."""


class EventStreamDecoder:
    __slots__ = ("_buf", "_checked", "_max")

    def __init__(self, max_message_size: int = DEFAULT_MAX_EVENT) -> None:
        self._buf = bytearray()
        self._checked = False  # the prelude at the head of _buf passed its CRC
        self._max = max_message_size

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        buf = self._buf
        buf += data
        out: list[EventStreamMessage] = []
        while len(buf) >= PRELUDE_LENGTH:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf)
            if not self._checked:
                _check_prelude(buf, total, headers_len, prelude_crc)
                if total > self._max:
                    raise UpstreamTooLarge(
                        f"upstream sent an event-stream message of {total} bytes; the limit is {self._max}"
                        " (limits.max_event_size)",
                        code="upstream_event_too_large",
                    )
                self._checked = True
            if len(buf) < total:
                break
            message = bytes(buf[:total])
            del buf[:total]
            self._checked = False
            out.append(_decode(message, headers_len))
        return out

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message (0 at a clean message boundary)."""
        return len(self._buf)


def _check_prelude(buf: bytearray, total: int, headers_len: int, crc: int) -> None:
    actual = zlib.crc32(memoryview(buf)[:8])
    if actual != crc:
        raise EventStreamError(
            f"event stream prelude checksum mismatch (expected {crc:#010x}, computed {actual:#010x})"
        )
    if headers_len > MAX_HEADERS_LENGTH:
        raise EventStreamError(f"event stream headers length {headers_len} exceeds {MAX_HEADERS_LENGTH}")
    payload_len = total - headers_len - MIN_MESSAGE_LENGTH
    if payload_len < 0 or payload_len > MAX_PAYLOAD_LENGTH:
        raise EventStreamError(
            f"event stream message length {total} is impossible with {headers_len} bytes of headers"
        )


def _decode(message: bytes, headers_len: int) -> EventStreamMessage:
    (crc,) = struct.unpack_from(">I", message, len(message) - 4)
    actual = zlib.crc32(memoryview(message)[:-4])
    if actual != crc:
        raise EventStreamError(
            f"event stream message checksum mismatch (expected {crc:#010x}, computed {actual:#010x})"
        )
    headers_end = PRELUDE_LENGTH + headers_len
    headers = _headers(message, PRELUDE_LENGTH, headers_end)
    return EventStreamMessage(headers, message[headers_end:-4])


def _headers(data: bytes, pos: int, end: int) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    try:
        while pos < end:
            name_len = data[pos]
            name = data[pos + 1 : pos + 1 + name_len].decode("utf-8")
            pos += 1 + name_len
            vtype = data[pos]
            pos += 1
            value: HeaderValue
            if vtype == 0 or vtype == 1:
                value = vtype == 0
            elif vtype in _FIXED:
                fixed = _FIXED[vtype]
                (value,) = fixed.unpack_from(data, pos)
                pos += fixed.size
            elif vtype == 6 or vtype == 7:
                (length,) = _U16.unpack_from(data, pos)
                raw = data[pos + 2 : pos + 2 + length]
                if len(raw) != length:
                    raise EventStreamError("event stream header value runs past the headers")
                value = raw if vtype == 6 else raw.decode("utf-8")
                pos += 2 + length
            elif vtype == 9:
                raw = data[pos : pos + 16]
                if len(raw) != 16:
                    raise EventStreamError("event stream header value runs past the headers")
                value = raw
                pos += 16
            else:
                raise EventStreamError(f"event stream header {name!r} has unknown value type {vtype}")
            if name in headers:
                raise EventStreamError(f"event stream header {name!r} appears twice")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError):
        raise EventStreamError("event stream headers are malformed") from None
    if pos != end:
        raise EventStreamError("event stream headers run past their declared length")
    return headers

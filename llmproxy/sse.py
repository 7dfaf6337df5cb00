"""Server-sent events: an incremental decoder and the encoder helpers.

Sans-IO: ``SSEDecoder.feed(bytes)`` returns the events completed by those
bytes; nothing here reads a socket. The decoder keeps one ``bytearray`` for the
unfinished tail and reuses it across calls. It follows the WHATWG
event-stream rules that matter to LLM providers: ``\\n``, ``\\r\\n`` and ``\\r``
line ends, multi-line ``data:`` joined with ``\\n``, ``:`` comment lines
(DeepSeek's ``: keep-alive``, OpenRouter's ``: OPENROUTER PROCESSING``)
ignored, a blank line ends an event.
"""

from __future__ import annotations

from typing import NamedTuple

DONE = b"data: [DONE]\n\n"


class SSEEvent(NamedTuple):
    event: str | None
    data: bytes


class SSEDecoder:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[SSEEvent]:
        buf = self._buf
        held_cr = bool(buf) and buf[-1] == 13
        buf += data
        if held_cr or b"\r" in data:
            _normalize_newlines(buf)
        end = buf.rfind(b"\n\n")
        if end < 0:
            return []
        block = bytes(buf[: end + 2])
        del buf[: end + 2]
        return _parse_block(block)

    def finish(self) -> list[SSEEvent]:
        """Flush an event the stream ended without terminating (lenient, like browsers are not)."""
        if not self._buf.strip():
            self._buf.clear()
            return []
        block = bytes(self._buf) + b"\n\n"
        self._buf.clear()
        return _parse_block(block)

    @property
    def empty(self) -> bool:
        """Nothing buffered: the next feed starts at an event boundary."""
        return not self._buf

    @property
    def pending(self) -> bool:
        return bool(self._buf.strip())


def _normalize_newlines(buf: bytearray) -> None:
    # A trailing "\r" may be the first half of a "\r\n" split across reads:
    # leave it for the next feed.
    tail = buf.endswith(b"\r")
    if tail:
        del buf[-1]
    buf[:] = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if tail:
        buf += b"\r"


def _parse_block(block: bytes) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    for raw in block.split(b"\n\n"):
        if not raw:
            continue
        # Fast path: the usual single-line "data: {...}" event.
        if raw.startswith(b"data: ") and b"\n" not in raw:
            events.append(SSEEvent(None, raw[6:]))
            continue
        name: str | None = None
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value.decode("utf-8", "replace")
            # "id" and "retry" are not used by any LLM provider we relay.
        if data or name is not None:
            events.append(SSEEvent(name, b"\n".join(data)))
    return events


def encode_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"

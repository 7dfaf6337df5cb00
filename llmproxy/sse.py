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

from .errors import UpstreamTooLarge

DONE = b"data: [DONE]\n\n"
DEFAULT_MAX_EVENT = 1024 * 1024  # limits.max_event_size's default (config.BodyLimits)


class SSEEvent(NamedTuple):
    event: str | None
    data: bytes


class SSEDecoder:
    """Invariants: ``_buf`` holds only ``\\n`` line ends (a CR is turned into
    LF as it arrives; ``_cr`` remembers that one just was, so the LF of its
    CRLF is dropped), and ``_buf[:_scanned]`` holds no ``\\n\\n``: each byte is
    normalised and searched once, so a stream that never ends an event costs
    linear time, and ``max_event_size`` bounds the buffer."""

    __slots__ = ("_buf", "_scanned", "_cr", "_max")

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT) -> None:
        self._buf = bytearray()
        self._scanned = 0
        self._cr = False
        self._max = max_event_size

    def feed(self, data: bytes) -> list[SSEEvent]:
        if not data:
            return []
        buf = self._buf
        if self._cr and data[:1] == b"\n":
            data = data[1:]  # the LF of a CRLF whose CR ended the last read
        self._cr = data[-1:] == b"\r"
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf += data
        # Back one byte: the "\n\n" may straddle the previous read.
        end = buf.rfind(b"\n\n", max(self._scanned - 1, 0))
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > self._max:
                raise self._too_large()
            return []
        block = bytes(buf[: end + 2])
        del buf[: end + 2]
        self._scanned = len(buf)  # rfind found the last "\n\n": none is left
        if len(buf) > self._max:
            raise self._too_large()
        return _parse_block(block, self._max)

    def _too_large(self) -> UpstreamTooLarge:
        return too_large_event("server-sent event", self._max)

    def finish(self) -> list[SSEEvent]:
        """Flush an event the stream ended without terminating (lenient, like browsers are not)."""
        if not self._buf.strip():
            self._buf.clear()
            self._scanned = 0
            return []
        block = bytes(self._buf) + b"\n\n"
        self._buf.clear()
        self._scanned = 0
        return _parse_block(block, self._max)

    @property
    def empty(self) -> bool:
        """Nothing buffered: the next feed starts at an event boundary."""
        return not self._buf and not self._cr

    @property
    def pending(self) -> bool:
        return bool(self._buf.strip())


def too_large_event(what: str, limit: int) -> UpstreamTooLarge:
    return UpstreamTooLarge(
        f"upstream sent a {what} larger than {limit} bytes (limits.max_event_size)", code="upstream_event_too_large"
    )


def _parse_block(block: bytes, limit: int) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    for raw in block.split(b"\n\n"):
        if not raw:
            continue
        if len(raw) >= limit:  # the event with its last line end is past the limit
            raise too_large_event("server-sent event", limit)
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

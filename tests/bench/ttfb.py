"""Time to first chunk of a streaming chat completion, over one keep-alive connection.

For each of N sequential requests: the time from just before the request is
written to the moment the first ``data:`` event's bytes are in hand, then the
rest of the answer is read (Content-Length or chunked) before the next request.
A plain blocking socket with TCP_NODELAY is used rather than an asyncio client:
the client's own overhead is in both the direct and the proxied figure, and a
blocking recv() adds the least jitter to it.

    python tests/bench/ttfb.py --url http://127.0.0.1:8080/v1/chat/completions \\
        --model bench-stream -n 2000

prints p50/p90/p99 in milliseconds (``--json`` for a machine-readable line).
Only stdlib; used by bench.py as a module (``measure``).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from urllib.parse import urlsplit

try:  # as a script from the repo root or from tests/bench
    from bodies import request_body
except ImportError:  # pragma: no cover - imported as tests.bench.ttfb
    from .bodies import request_body


class BadResponse(Exception):
    pass


def _request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: text/event-stream\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        + f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise BadResponse(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _chunked_end(buf: bytes | bytearray, pos: int) -> int:
    """Index just past a complete chunked body starting at ``pos``, or -1."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return -1
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)  # no trailers expected: "0\r\n\r\n"
            return -1 if end < 0 else end + 4
        pos = eol + 2 + size + 2
        if pos > len(buf):
            return -1


class Client:
    """One keep-alive HTTP/1.1 connection that times each streaming request."""

    def __init__(self, url: str, body: bytes, timeout: float = 10.0, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.headers = headers
        self.request = _request(self.host, self.port, self.path, body, headers)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf.clear()
        return sock

    def set_body(self, body: bytes) -> None:
        """The next requests send ``body`` (e.g. a new one each time, past a cache)."""
        self.request = _request(self.host, self.port, self.path, body, self.headers)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def one(self) -> tuple[float, float, bytes]:
        """(seconds to first data event, seconds to the whole answer, body)."""
        if self.sock is None:
            self.sock = self._connect()
        sock, buf = self.sock, self.buf
        recv = sock.recv
        t0 = time.perf_counter()
        sock.sendall(self.request)
        first = total = 0.0
        head_end = -1
        status = 0
        headers: dict[str, str] = {}
        body_start = 0
        while True:
            data = recv(65536)
            if not data:
                raise BadResponse("connection closed mid-answer")
            buf += data
            if head_end < 0:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    continue
                status, headers = _parse_head(bytes(buf[:head_end]))
                body_start = head_end + 4
            if not first and buf.find(b"data:", body_start) >= 0:
                first = time.perf_counter() - t0
            if "content-length" in headers:
                end = body_start + int(headers["content-length"])
                if len(buf) < end:
                    continue
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                end = _chunked_end(buf, body_start)
                if end < 0:
                    continue
            else:
                raise BadResponse("answer has neither Content-Length nor chunked encoding")
            total = time.perf_counter() - t0
            break
        raw = bytes(buf[body_start:end])
        del buf[:end]
        if status != 200:
            raise BadResponse(f"HTTP {status}: {raw[:300]!r}")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            raw = _dechunk(raw)
        if not first:
            raise BadResponse("answer had no data: event")
        if headers.get("connection", "").lower() == "close":
            self.close()
        return first, total, raw


def _dechunk(raw: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = raw.index(b"\r\n", pos)
        size = int(raw[pos:eol].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += raw[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def summarize(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    ms = 1000.0
    return {
        "n": len(s),
        "p50_ms": percentile(s, 50) * ms,
        "p90_ms": percentile(s, 90) * ms,
        "p99_ms": percentile(s, 99) * ms,
        "mean_ms": statistics.fmean(s) * ms,
        "min_ms": s[0] * ms,
        "max_ms": s[-1] * ms,
    }


def measure(url: str, body: bytes, n: int, warmup: int = 100, check=None) -> dict[str, object]:
    """Time ``n`` sequential streaming requests after ``warmup`` untimed ones.

    ``check(body_bytes)`` is called on the first answer (raise to reject it).
    """
    client = Client(url, body)
    firsts: list[float] = []
    totals: list[float] = []
    try:
        for i in range(warmup + n):
            first, total, raw = client.one()
            if i == 0 and check is not None:
                check(raw)
            if i >= warmup:
                firsts.append(first)
                totals.append(total)
    finally:
        client.close()
    return {"first_chunk": summarize(firsts), "whole_stream": summarize(totals)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="full URL of a chat/completions endpoint")
    ap.add_argument("--model", default="bench-stream")
    ap.add_argument("-n", type=int, default=2000, help="timed requests (default 2000)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args(argv)
    result = measure(args.url, request_body(args.model, stream=True), args.n, args.warmup)
    if args.json:
        print(json.dumps(result))
    else:
        for name, s in result.items():
            print(
                f"{name:13s} n={s['n']}  p50 {s['p50_ms']:.3f} ms  p90 {s['p90_ms']:.3f} ms  "
                f"p99 {s['p99_ms']:.3f} ms  mean {s['mean_ms']:.3f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

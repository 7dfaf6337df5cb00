"""Upstream bodies are bounded: whole answers by ``limits.max_response_size``
(inflated size included), one stream event by ``limits.max_event_size``.

Every test goes through the real proxy to a real fake upstream on loopback
that offers far more than the limit: a 512 MiB body declared by
Content-Length, a gzip bomb, a stream that never ends its line. The fakes
send lazily (a 64 KiB chunk at a time) and count what they managed to send
before the proxy hung up, so "bounded" is checked in bytes and in RSS, never
in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from .fakes import openai_completion, openai_stream

MiB = 1024 * 1024
CHUNK = bytes(64 * 1024)
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


# --------------------------------------------------------------------------- memory


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


@contextlib.asynccontextmanager
async def peak_rss_growth() -> AsyncIterator[list[int]]:
    """Yields a one-item list that holds, on exit, the peak VmRSS growth in bytes.

    The peak is the kernel's VmHWM after resetting it (``clear_refs`` 5) when
    that is allowed, else the highest VmRSS seen by a sampler on the loop
    (the proxy runs on this loop, so it samples between the proxy's reads).
    """
    out = [0]
    base = _status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        hwm = True
    except OSError:
        hwm = False
    peak = base
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _status("VmRSS"))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.002)

    task = asyncio.create_task(sample())
    try:
        yield out
    finally:
        stop.set()
        await task
        peak = max(peak, _status("VmRSS"), _status("VmHWM") if hwm else 0)
        out[0] = peak - base


# --------------------------------------------------------------------------- fakes


@dataclass
class Sent:
    bytes: int = 0  # over every request the fake answered
    gone: bool = False  # the proxy hung up before the fake finished


Handler = Callable[[web.Request, Sent], Awaitable[web.StreamResponse]]


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[str, Sent]]]]:
    """A real HTTP server whose every POST is answered by ``handler``."""
    servers: list[TestServer] = []

    async def start(handler: Handler) -> tuple[str, Sent]:
        sent = Sent()

        async def answer(request: web.Request) -> web.StreamResponse:
            await request.read()
            return await handler(request, sent)

        app = web.Application()
        app.router.add_post("/{tail:.*}", answer)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/"), sent

    yield start
    for s in servers:
        await s.close()


async def stream_out(
    request: web.Request, sent: Sent, head: bytes, filler: bytes, total: int, *,
    content_type: str, headers: dict[str, str] | None = None, content_length: int | None = None,
) -> web.StreamResponse:
    """Write ``head`` then ``filler`` repeatedly until ``total`` bytes or the proxy hangs up."""
    resp = web.StreamResponse(headers={"Content-Type": content_type, **(headers or {})})
    if content_length is not None:
        resp.content_length = content_length
    await resp.prepare(request)
    n = 0
    try:
        await resp.write(head)
        n = len(head)
        while n < total:
            piece = filler[: total - n]
            await resp.write(piece)
            n += len(piece)
        await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        sent.gone = True
    sent.bytes += n
    return resp


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """512 MiB of JSON-looking zeros gzipped into about half a MiB, built once."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [z.compress(b'{"choices": [], "pad": "')]
    block = b"0" * MiB
    parts += [z.compress(block) for _ in range(512)]
    parts.append(z.compress(b'"}') + z.flush())
    return b"".join(parts)


def yaml_for(url: str, provider_type: str = "openai", extra: str = "", provider_extra: str = "") -> str:
    base = f"{url}/v1" if provider_type == "openai" else url
    return f"""
providers:
  up: {{type: {provider_type}, base_url: "{base}", api_key: k{provider_extra}}}
models:
  gpt-4o:
    deployments: [{{provider: up, model: m}}]
defaults:
  retry: {{retries: 0}}
{extra}
"""


async def post(proxy_url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy_url + "/v1/chat/completions", json=body) as r:
            return r.status, await r.read()


def sse_payloads(raw: bytes) -> list[Any]:
    out: list[Any] = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: "):
            data = block[6:]
            out.append(data.decode() if data == b"[DONE]" else orjson.loads(data))
    return out


def error_code(raw: bytes) -> str:
    return orjson.loads(raw)["error"]["code"]


# --------------------------------------------------------------------------- whole answers


async def test_declared_512_mib_answer_is_refused_unread_with_bounded_rss(start_proxy, upstream):
    async def huge(request: web.Request, sent: Sent) -> web.StreamResponse:
        return await stream_out(request, sent, b"", CHUNK, 512 * MiB, content_type="application/json",
                                content_length=512 * MiB)

    url, sent = await upstream(huge)
    proxy = await start_proxy(yaml_for(url))
    async with peak_rss_growth() as growth:
        status, raw = await post(proxy.url, CHAT)
    assert status == 502, raw
    doc = orjson.loads(raw)["error"]
    assert doc["code"] == "upstream_response_too_large" and doc["type"] == "upstream_error"
    assert "max_response_size" in doc["message"]
    assert growth[0] < 100 * MiB, growth[0] / MiB
    assert sent.bytes < 64 * MiB  # refused from the header, not read


async def test_gzip_bomb_is_cut_at_the_inflated_limit_with_bounded_rss(start_proxy, upstream):
    bomb = gzip_bomb()
    assert len(bomb) < MiB  # under every limit on the wire: only the inflated count can stop it

    async def gzipped(request: web.Request, sent: Sent) -> web.StreamResponse:
        return await stream_out(request, sent, b"", bomb, len(bomb), content_type="application/json",
                                headers={"Content-Encoding": "gzip"}, content_length=len(bomb))

    url, sent = await upstream(gzipped)
    proxy = await start_proxy(yaml_for(url))
    async with peak_rss_growth() as growth:
        status, raw = await post(proxy.url, CHAT)
    assert status == 502, raw
    assert error_code(raw) == "upstream_response_too_large"
    assert growth[0] < 100 * MiB, growth[0] / MiB


async def test_small_configured_limit_applies_and_a_gzipped_answer_under_it_still_works(start_proxy, upstream):
    answer = orjson.dumps(openai_completion("x" * 3000))  # ~3.2 KB

    async def gzipped(request: web.Request, sent: Sent) -> web.StreamResponse:
        body = zlib.compress(answer, wbits=31)
        return await stream_out(request, sent, b"", body, len(body), content_type="application/json",
                                headers={"Content-Encoding": "gzip"})

    url, _ = await upstream(gzipped)
    small = await start_proxy(yaml_for(url, extra="  limits: {max_response_size: 2KiB}"))
    status, raw = await post(small.url, CHAT)
    assert status == 502 and error_code(raw) == "upstream_response_too_large", raw
    assert "2048 bytes" in orjson.loads(raw)["error"]["message"]
    # The same answer fits the default, and a provider may raise its own limit.
    for yaml_text in (yaml_for(url), yaml_for(url, extra="  limits: {max_response_size: 2KiB}",
                                              provider_extra=", limits: {max_response_size: 4KiB}")):
        proxy = await start_proxy(yaml_text)
        status, raw = await post(proxy.url, CHAT)
        assert status == 200, raw
        assert orjson.loads(raw)["choices"][0]["message"]["content"] == "x" * 3000


# --------------------------------------------------------------------------- streams


async def run_endless_line(start_proxy, upstream, provider_type: str, first: bytes, line_start: bytes,
                           content_type: str) -> tuple[list[Any], Sent]:
    offered = 64 * MiB

    async def endless(request: web.Request, sent: Sent) -> web.StreamResponse:
        return await stream_out(request, sent, first + line_start, b"a" * len(CHUNK), offered,
                                content_type=content_type)

    url, sent = await upstream(endless)
    proxy = await start_proxy(yaml_for(url, provider_type))
    status, raw = await post(proxy.url, {**CHAT, "stream": True})
    assert status == 200, raw
    return sse_payloads(raw), sent


async def test_sse_stream_without_newline_ends_with_an_error_event_after_about_1_mib(start_proxy, upstream):
    first = openai_stream(["hello"])[0]
    events, sent = await run_endless_line(start_proxy, upstream, "openai", first,
                                          b'data: {"choices": [{"delta": {"content": "', "text/event-stream")
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["error"]["code"] == "upstream_event_too_large", events[-1]
    assert "[DONE]" not in events
    # Bounded by bytes: the proxy hung up near 1 MiB (plus socket buffers), not at the end.
    assert sent.gone and sent.bytes < 24 * MiB, sent


async def test_ollama_ndjson_line_without_newline_ends_with_an_error_event(start_proxy, upstream):
    first = b'{"message": {"role": "assistant", "content": "hello"}, "done": false}\n'
    events, sent = await run_endless_line(start_proxy, upstream, "ollama", first,
                                          b'{"message": {"content": "', "application/x-ndjson")
    assert events[1]["choices"][0]["delta"]["content"] == "hello"
    assert events[-1]["error"]["code"] == "upstream_event_too_large", events[-1]
    assert sent.gone and sent.bytes < 24 * MiB, sent


async def test_event_just_under_the_limit_is_relayed_whole(start_proxy, upstream):
    chunks = openai_stream(["x"])
    big = orjson.loads(chunks[1][6:])
    big["choices"][0]["delta"]["content"] = ""
    room = MiB - 1 - len(b"data: " + orjson.dumps(big))  # the event and its line end: exactly 1 MiB
    big["choices"][0]["delta"]["content"] = "y" * room
    event = b"data: " + orjson.dumps(big) + b"\n\n"
    assert len(event) == MiB + 1
    body = b"".join([chunks[0], event, *chunks[2:]])

    # Written in small pieces so the decoder, not one read, sees the event grow.
    async def pieces(request: web.Request, sent: Sent) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(0, len(body), 4096):
            await resp.write(body[i : i + 4096])
        await resp.write_eof()
        return resp

    url, _ = await upstream(pieces)
    proxy = await start_proxy(yaml_for(url))
    status, raw = await post(proxy.url, {**CHAT, "stream": True})
    assert status == 200
    events = sse_payloads(raw)
    assert events[-1] == "[DONE]", events[-1]
    assert events[1]["choices"][0]["delta"]["content"] == "y" * room


async def test_configured_event_limit_applies_to_the_canonical_fast_path(start_proxy, upstream):
    # Whole canonical events in one read take the OpenAI relay's byte fast
    # path; a 5 KB event must still meet a 4 KiB limit there.
    chunks = openai_stream(["z" * 5000])
    body = b"".join(chunks)

    async def whole(request: web.Request, sent: Sent) -> web.StreamResponse:
        return await stream_out(request, sent, body, b"", len(body), content_type="text/event-stream")

    url, _ = await upstream(whole)
    proxy = await start_proxy(yaml_for(url, provider_extra=", limits: {max_event_size: 4KiB}"))
    status, raw = await post(proxy.url, {**CHAT, "stream": True})
    # Nothing was relayed before the oversized event when it all came in one
    # read (the usual case): a clean 502. Split reads: an error event.
    if status == 502:
        assert error_code(raw) == "upstream_event_too_large", raw
    else:
        assert sse_payloads(raw)[-1]["error"]["code"] == "upstream_event_too_large", raw
    ok = await start_proxy(yaml_for(url))
    status, raw = await post(ok.url, {**CHAT, "stream": True})
    assert status == 200 and sse_payloads(raw)[-1] == "[DONE]"


async def test_an_answer_read_piece_by_piece_still_returns_its_connection_to_the_pool(start_proxy, upstream):
    peers: list[Any] = []
    answer = orjson.dumps(openai_completion("pooled"))

    async def json_answer(request: web.Request, sent: Sent) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(body=answer, content_type="application/json")

    url, _ = await upstream(json_answer)
    proxy = await start_proxy(yaml_for(url))
    for _ in range(3):
        status, raw = await post(proxy.url, CHAT)
        assert status == 200, raw
    assert len(peers) == 3 and len(set(peers)) == 1, peers

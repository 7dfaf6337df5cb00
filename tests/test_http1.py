"""The deployments' HTTP/1.1 client (llmproxy/upstream/http1.py) against real sockets.

A raw asyncio server plays the upstream, so each test says byte for byte what
the upstream sends and sees what the client sent and on which connection:
keep-alive reuse, answers that end the connection, stale pooled connections,
pool limits, idle expiry, header injection, 1xx answers, close-delimited
bodies, TLS. The proxy-level behaviour (errors, bombs, limits, streams) is
covered through the real app by the rest of the suite, which runs on this client.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from llmproxy.config.tree import Timeouts
from llmproxy.errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from llmproxy.upstream.deadlines import Deadlines
from llmproxy.upstream.http1 import ConnectionPool, parse_target, request_head

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Seen:
    def __init__(self, conn: int, head: bytes, body: bytes) -> None:
        self.conn, self.head, self.body = conn, head, body

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == name.lower().encode():
                return v.strip().decode()
        return None


Handler = Callable[[Seen, asyncio.StreamWriter], Awaitable[bool]]  # True: keep the connection


class RawUpstream:
    """Accepts connections, reads each request whole, lets ``handler`` answer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Seen] = []
        self.connections = 0
        self.open = 0
        self.closed = asyncio.Condition()
        self.server: asyncio.Server | None = None

    async def start(self, ssl_ctx: ssl.SSLContext | None = None) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_ctx)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if ssl_ctx else 'http'}://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        conn = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                seen = Seen(conn, head, b"")
                length = int(seen.header("content-length") or 0)
                seen.body = await reader.readexactly(length)
                self.requests.append(seen)
                if not await self.handler(seen, writer):
                    return
        finally:
            writer.close()
            async with self.closed:
                self.open -= 1
                self.closed.notify_all()

    async def wait_open(self, n: int) -> None:
        async with self.closed:
            await asyncio.wait_for(self.closed.wait_for(lambda: self.open == n), 10)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


def reply(raw: bytes, *, keep: bool = True) -> Handler:
    """A handler that answers every request with ``raw``, then keeps or closes the connection."""

    async def answer(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        await writer.drain()
        return keep

    return answer


answer_ok = reply(OK)


@pytest.fixture
async def pools():
    made: list[ConnectionPool] = []

    def make(**kw: object) -> ConnectionPool:
        opts: dict = {"limit": 100, "limit_per_host": 0, "keepalive_timeout": 30.0, **kw}
        pool = ConnectionPool(**opts)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()


@pytest.fixture
async def upstreams():
    made: list[RawUpstream] = []

    async def make(handler: Handler = answer_ok, ssl_ctx: ssl.SSLContext | None = None) -> tuple[RawUpstream, str]:
        up = RawUpstream(handler)
        made.append(up)
        return up, await up.start(ssl_ctx)

    yield make
    for up in made:
        await up.stop()


_deadlines = Deadlines()


async def send(pool: ConnectionPool, url: str, *, method: str = "POST", headers: dict[str, str] | None = None,
               body: bytes = b"{}", timeouts: Timeouts | None = None, max_size: int = 1 << 20) -> tuple[int, bytes]:
    deadline = _deadlines.start(timeouts or Timeouts())
    resp = await pool.request(method, url, headers or {"Content-Type": "application/json"}, body, deadline,
                              5.0, max_size)
    try:
        return resp.status, await resp.read()
    finally:
        resp.close()


# -- the request on the wire


def test_target_and_head_are_what_the_url_says():
    t = parse_target("http://u%40x:p%3Aw@example.com:8080/v1/chat?api-version=1")
    head = request_head("POST", t, {"Content-Type": "application/json"}, 12).decode()
    lines = head.split("\r\n")
    assert lines[0] == "POST /v1/chat?api-version=1 HTTP/1.1"
    assert "Host: example.com:8080" in lines
    assert "Authorization: Basic dUB4OnA6dw==" in lines  # base64("u@x:p:w")
    assert "Content-Length: 12" in lines and "Accept-Encoding: gzip, deflate" in lines
    assert head.endswith("\r\n\r\n")
    assert parse_target("https://api.openai.com/v1").host == "api.openai.com"
    assert parse_target("http://[::1]:9000/x").host == "[::1]:9000"
    assert parse_target("https://[::1]/x").host == "[::1]"
    # The request's own headers win over ours, in any case.
    own = request_head("GET", t, {"host": "other", "user-agent": "me", "Authorization": "Bearer k"}, 0).decode()
    assert "Host: example.com" not in own and "host: other" in own
    assert "llmproxy" not in own and "Basic" not in own
    with pytest.raises(ValueError):
        parse_target("ftp://example.com/")


@pytest.mark.parametrize("bad", [{"X-A": "v\r\nX-Injected: 1"}, {"X-A\r\nX-B": "v"}, {"X-A": "v\n"},
                                 {"X-A": "a\rb"}, {"X-A": "nul\0"}])
def test_a_header_with_cr_lf_or_nul_is_refused(bad):
    with pytest.raises(UpstreamUnreachable, match="CR, LF or NUL"):
        request_head("POST", parse_target("http://h/x"), bad, 0)


# -- connections


async def test_sequential_requests_share_one_keep_alive_connection(pools, upstreams):
    up, url = await upstreams()
    pool = pools()
    for _ in range(5):
        assert await send(pool, url + "/v1/x", body=b'{"a":1}') == (200, b"{}")
    assert up.connections == 1 and len(up.requests) == 5
    first = up.requests[0]
    assert first.head.startswith(b"POST /v1/x HTTP/1.1\r\n") and first.body == b'{"a":1}'
    assert first.header("host") == url.removeprefix("http://")
    assert first.header("user-agent") == "llmproxy"
    assert pool.idle_count() == 1


async def test_an_answer_that_says_connection_close_is_not_reused(pools, upstreams):
    # The client is the one to close.
    up, url = await upstreams(reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"))
    pool = pools()
    for _ in range(3):
        assert await send(pool, url) == (200, b"{}")
    assert up.connections == 3
    await up.wait_open(0)
    assert pool.idle_count() == 0


async def test_a_body_that_runs_to_the_close_is_read_whole(pools, upstreams):
    up, url = await upstreams(reply(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n", keep=False))
    pool = pools()
    assert await send(pool, url) == (200, b"data: 1\n\ndata: 2\n\n")
    assert await send(pool, url) == (200, b"data: 1\n\ndata: 2\n\n")
    assert up.connections == 2


async def test_informational_answers_are_skipped(pools, upstreams):
    _, url = await upstreams(reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK))
    pool = pools()
    assert await send(pool, url) == (200, b"{}")
    assert await send(pool, url) == (200, b"{}")


async def test_a_stream_abandoned_half_read_closes_its_connection(pools, upstreams):
    release = asyncio.Event()

    async def slow_stream(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.body == b"short":
            writer.write(OK)
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\ndata: 1\r\n")
        await writer.drain()
        await release.wait()
        return False

    up, url = await upstreams(slow_stream)
    pool = pools()
    resp = await pool.request("POST", url, {}, b"long", _deadlines.start(Timeouts()), 5.0, 1 << 20)
    chunks = resp.chunks()
    assert await chunks.__anext__() == b"data: 1"
    await chunks.aclose()
    resp.close()
    assert pool.idle_count() == 0
    assert await send(pool, url, body=b"short") == (200, b"{}")
    assert up.connections == 2  # the half-read one was not handed out again
    release.set()


async def test_an_idle_connection_the_upstream_closed_is_dropped_from_the_pool(pools, upstreams):
    up, url = await upstreams(reply(OK, keep=False))  # closes after answering, without saying so
    pool = pools()
    assert await send(pool, url) == (200, b"{}")
    await up.wait_open(0)
    for _ in range(100):  # the client sees the FIN on its next loop turns
        if pool.idle_count() == 0:
            break
        await asyncio.sleep(0)
    assert pool.idle_count() == 0
    assert await send(pool, url) == (200, b"{}")
    assert up.connections == 2


async def test_a_get_on_a_connection_closed_under_it_is_retried_once_a_post_is_not(pools, upstreams):
    """The race a pool cannot see coming: the upstream closes a kept-alive
    connection just as the next request goes out (here: on purpose)."""

    async def drop_second(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.conn == 1 and len([r for r in up.requests if r.conn == 1]) == 2:
            return False  # the second request on the first connection: closed unanswered
        writer.write(OK)
        await writer.drain()
        return True

    up, url = await upstreams(drop_second)
    pool = pools()
    assert await send(pool, url, method="GET", body=b"") == (200, b"{}")
    assert await send(pool, url, method="GET", body=b"") == (200, b"{}")  # retried on connection 2
    assert [r.conn for r in up.requests] == [1, 1, 2]

    up2, url2 = await upstreams(drop_second)
    up = up2
    assert await send(pool, url2) == (200, b"{}")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(pool, url2)
    assert [r.conn for r in up2.requests] == [1, 1]


async def test_the_pool_limit_holds_requests_until_a_connection_is_free(pools, upstreams):
    gate = asyncio.Event()
    peak = 0

    async def held(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        nonlocal peak
        peak = max(peak, up.open)
        await gate.wait()
        writer.write(OK)
        await writer.drain()
        return True

    up, url = await upstreams(held)
    pool = pools(limit=2)
    tasks = [asyncio.create_task(send(pool, url)) for _ in range(5)]
    while len(up.requests) < 2:
        await asyncio.sleep(0.01)  # polling the fake's own state; bounded by the test timeout
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(up.requests) == 2 and up.connections == 2  # three wait for a slot
    gate.set()
    assert [await t for t in tasks] == [(200, b"{}")] * 5
    assert up.connections == 2 and peak <= 2


async def test_a_request_cancelled_while_waiting_for_a_slot_passes_its_turn_on(pools, upstreams):
    gate = asyncio.Event()

    async def held(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        await gate.wait()
        writer.write(OK)
        await writer.drain()
        return True

    up, url = await upstreams(held)
    pool = pools(limit=1)
    first = asyncio.create_task(send(pool, url))
    while not up.requests:
        await asyncio.sleep(0.01)
    waiting = asyncio.create_task(send(pool, url))
    third = asyncio.create_task(send(pool, url))
    for _ in range(10):
        await asyncio.sleep(0)
    waiting.cancel()
    gate.set()
    assert await first == (200, b"{}")
    assert await third == (200, b"{}")
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert up.connections == 1


async def test_idle_connections_are_closed_after_keepalive_timeout(pools, upstreams):
    up, url = await upstreams()
    pool = pools(keepalive_timeout=0.2)
    assert await send(pool, url) == (200, b"{}")
    assert up.open == 1
    await up.wait_open(0)  # closed by the pool's sweep, not by the upstream
    assert pool.idle_count() == 0
    assert await send(pool, url) == (200, b"{}")


async def test_a_garbled_answer_is_a_protocol_error_and_its_connection_is_dropped(pools, upstreams):
    async def garbage(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SMTP READY\r\n\r\n" if seen.body == b"bad" else OK)
        await writer.drain()
        return True

    up, url = await upstreams(garbage)
    pool = pools()
    with pytest.raises(UpstreamProtocolError, match="malformed HTTP response"):
        await send(pool, url, body=b"bad")
    assert await send(pool, url) == (200, b"{}")
    assert up.connections == 2


async def test_a_cut_body_is_a_protocol_error(pools, upstreams):
    _, url = await upstreams(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial", keep=False))
    pool = pools()
    with pytest.raises(UpstreamProtocolError, match="cut short.*received 9 of 100"):
        await send(pool, url)


async def test_refused_and_unresolvable_hosts_say_so(pools, upstreams):
    up, url = await upstreams()
    await up.stop()
    await up.server.wait_closed()
    pool = pools()
    with pytest.raises(UpstreamUnreachable, match="cannot connect to upstream 127.0.0.1"):
        await send(pool, url)


async def test_the_connect_timeout_is_an_upstream_timeout(pools):
    # A listening socket whose accept queue is full never completes a handshake in time.
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the backlog so the next SYN is dropped
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(s)
        pool = pools()
        deadline = _deadlines.start(Timeouts())
        try:
            await pool.request("POST", f"http://127.0.0.1:{port}/", {}, b"", deadline, 0.2, 1 << 20)
        except UpstreamTimeout as exc:
            assert "timed out connecting" in exc.message
        except UpstreamUnreachable:
            pytest.skip("this kernel refuses instead of dropping SYNs past the backlog")
        else:
            pytest.skip("this kernel accepted past the backlog")
    finally:
        for s in fillers:
            s.close()
        listener.close()


def _self_signed(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client = ssl.create_default_context(cafile=str(tmp / "cert.pem"))
    return server, client


async def test_https_verifies_the_upstream_and_keeps_the_connection(pools, upstreams, tmp_path):
    server_ctx, client_ctx = await asyncio.to_thread(_self_signed, tmp_path)
    up, url = await upstreams(ssl_ctx=server_ctx)
    pool = pools(ssl_context=client_ctx)
    assert await send(pool, url) == (200, b"{}")
    assert await send(pool, url) == (200, b"{}")
    assert up.connections == 1
    # A context that does not trust the certificate: refused, and said why.
    strict = pools(ssl_context=await asyncio.to_thread(ssl.create_default_context))
    with pytest.raises(UpstreamUnreachable, match="TLS"):
        await send(strict, url)

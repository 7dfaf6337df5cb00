"""The door: keys on every upstream route, client time bounds, JSON depth,
Origin/Host checks with CORS, framing errors as OpenAI errors, start-up
failure. Misbehaving clients are raw sockets against the real proxy."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import orjson
import pytest

from .fakes import Reply, openai_stream

ROOT = Path(__file__).resolve().parent.parent
# Generous: these wait for a timer of a fraction of a second on a busy machine.
PATIENCE = 30.0

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def config(url: str, server: str = "") -> str:
    return f"""
    providers:
      up: {{type: openai, base_url: "{url}/v1", api_key: sk-upstream-secret-key-123}}
      local: {{type: mock}}
    models:
      gpt-4o:
        deployments: [{{provider: up, model: gpt-4o}}]
      embed:
        deployments: [{{provider: local, model: mock-embed}}]
    server: {{{server}}}
    """


def assert_openai_error(doc: dict) -> dict:
    err = doc["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    return err


async def request(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, data=body, headers=headers or {}) as r:
            return r.status, dict(r.headers), await r.read()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body, off a raw socket."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def wait_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the proxy still sends until it closes the connection."""
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


# -- 1. every upstream route is authenticated

@pytest.mark.parametrize("path, body", [
    ("/chat/completions", CHAT),
    ("/v1/chat/completions", CHAT),
    ("/embeddings", {"model": "embed", "input": "x"}),
    ("/v1/embeddings", {"model": "embed", "input": "x"}),
])
async def test_every_upstream_route_needs_a_key(start_proxy, fake_upstream, path, body):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, "api_keys: [team-key]"))
    status, _, raw = await request("POST", proxy.url + path, body=orjson.dumps(body))
    assert status == 401, raw
    assert assert_openai_error(orjson.loads(raw))["code"] == "invalid_api_key"
    status, _, raw = await request("POST", proxy.url + path, body=orjson.dumps(body),
                                   headers={"Authorization": "Bearer team-key"})
    assert status == 200, raw
    assert len(fake.seen) == (1 if "chat" in path else 0)


async def test_only_probes_metrics_and_admin_are_open_without_a_key(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, "api_keys: [team-key]"))
    open_paths = {"/healthz", "/readyz", "/metrics", "/admin/config", "/admin/reload",
                  "/admin/deployments", "/admin/models", "/admin/keys", "/admin/cache", "/admin/requests",
                  "/admin/requests/stream", "/admin/config/history", "/admin/config/history/{sha}",
                  "/admin/config/diff", "/admin/config/rollback", "/ui", "/ui/{name}"}
    # Every route the app has, so a route added later is checked too.
    for route in proxy.app.router.routes():
        if route.method == "HEAD" or route.resource.canonical == "/admin/requests/stream":
            continue  # the live tail never ends: it is admin-guarded like the rest (test_ops.py)
        path = route.resource.canonical.replace("{model}", "gpt-4o").replace("{sha}", "0" * 64).replace(
            "{name}", "app.js")
        status, _, raw = await request(route.method, proxy.url + path, body=b"{}")
        if route.resource.canonical in open_paths:
            assert status != 401, path
        else:
            assert status == 401, (route.method, path, raw)
    assert fake.seen == []


# -- 8. client timeouts

async def test_a_trickled_request_head_is_closed_after_header_timeout(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, "header_timeout: 0.5"))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

    async def trickle() -> None:  # one byte every 0.1 s: the head would take minutes
        try:
            for _ in range(3000):
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.1)
        except (ConnectionError, OSError):
            pass

    slow = asyncio.create_task(trickle())
    try:
        assert await asyncio.wait_for(wait_closed(reader), PATIENCE) == b""  # closed, no answer
    finally:
        slow.cancel()
        writer.close()
    assert fake.seen == []


async def test_a_connection_that_sends_nothing_is_closed_after_header_timeout(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, "header_timeout: 0.5"))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    try:
        assert await asyncio.wait_for(wait_closed(reader), PATIENCE) == b""
    finally:
        writer.close()


async def test_a_stalled_body_gets_408_and_the_connection_closes(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, "body_timeout: 0.5"))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":")
        await writer.drain()
        status, headers, body = await asyncio.wait_for(read_response(reader), PATIENCE)
        assert status == 408
        assert headers["content-type"].startswith("application/json")
        assert assert_openai_error(orjson.loads(body))["code"] == "request_timeout"
        assert "server.body_timeout" in orjson.loads(body)["error"]["message"]
        assert await asyncio.wait_for(wait_closed(reader), PATIENCE) == b""
    finally:
        writer.close()
    assert fake.seen == []


async def test_a_chunked_body_that_stalls_gets_408(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, "body_timeout: 0.5"))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"mod\r\n")
        await writer.drain()
        status, _, body = await asyncio.wait_for(read_response(reader), PATIENCE)
        assert status == 408
        assert assert_openai_error(orjson.loads(body))["code"] == "request_timeout"
    finally:
        writer.close()


async def test_an_idle_keepalive_connection_is_closed_after_keepalive_timeout(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, "keepalive_timeout: 0.5"))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, _, _ = await asyncio.wait_for(read_response(reader), PATIENCE)
        assert status == 200
        assert await asyncio.wait_for(wait_closed(reader), PATIENCE) == b""
    finally:
        writer.close()


async def test_the_head_timer_does_not_cut_an_idle_keepalive_connection(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, "header_timeout: 0.2, keepalive_timeout: 60"))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    try:
        body = orjson.dumps(CHAT)
        req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
               + str(len(body)).encode() + b"\r\n\r\n" + body)
        writer.write(req)
        assert (await asyncio.wait_for(read_response(reader), PATIENCE))[0] == 200
        # Idle well past header_timeout (the scenario, not a synchronisation):
        # keep-alive idleness is keepalive_timeout's business.
        await asyncio.sleep(1.0)
        writer.write(req)
        assert (await asyncio.wait_for(read_response(reader), PATIENCE))[0] == 200
    finally:
        writer.close()


# -- 10. JSON nesting

def nested(depth: int) -> bytes:
    """A chat body nesting `depth` arrays and objects (the body is level 1);
    built as text, since orjson itself will not encode past 255."""
    extra = b"[" * (depth - 1) + b"1" + b"]" * (depth - 1)
    return orjson.dumps(CHAT)[:-1] + b',"metadata_extra":' + extra + b"}"


@pytest.mark.parametrize("depth", [129, 255, 300, 1023, 1100])
async def test_json_nested_too_deep_is_a_400_naming_the_limit(start_proxy, fake_upstream, depth):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url))
    status, _, raw = await request("POST", proxy.v1 + "/chat/completions", body=nested(depth))
    assert status == 400, raw
    err = assert_openai_error(orjson.loads(raw))
    assert err["type"] == "invalid_request_error"
    assert "nests deeper than 128 levels" in err["message"]
    assert fake.seen == []


async def test_json_at_the_depth_limit_is_served(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url))
    status, _, raw = await request("POST", proxy.v1 + "/chat/completions", body=nested(128))
    assert status == 200, raw
    assert len(fake.seen) == 1


# -- 12. Origin and Host

async def test_a_cross_site_simple_request_is_refused(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url))  # no api_keys: a developer laptop
    status, _, raw = await request(
        "POST", proxy.v1 + "/chat/completions", body=orjson.dumps(CHAT),
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
    )
    assert status == 403, raw
    assert assert_openai_error(orjson.loads(raw))["code"] == "origin_not_allowed"
    assert fake.seen == []


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "192.168.1.5:8080", "localhost.evil.example"])
async def test_a_rebound_host_is_refused_on_a_loopback_listener(start_proxy, fake_upstream, host):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url))
    for method, path, body in (("POST", "/v1/chat/completions", orjson.dumps(CHAT)), ("GET", "/v1/models", None)):
        status, _, raw = await request(method, proxy.url + path, body=body,
                                       headers={"Host": host, "Content-Type": "text/plain"})
        assert status == 403, raw
        assert assert_openai_error(orjson.loads(raw))["code"] == "host_not_allowed"
    assert fake.seen == []


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "LOCALHOST.", "app.localhost:1", "127.0.0.1",
                                  "127.0.0.2:8080", "[::1]", "[::1]:8080", "proxy.internal:9000",
                                  "a.svc.example"])
async def test_loopback_and_listed_hosts_are_served(start_proxy, fake_upstream, host):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, 'allowed_hosts: [proxy.internal, "*.svc.example"]'))
    status, _, raw = await request("GET", proxy.v1 + "/models", headers={"Host": host})
    assert status == 200, raw


async def test_a_non_loopback_listener_does_not_check_host(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy("listen: 0.0.0.0:8080\n" + textwrap.dedent(config(fake.url)))
    status, _, raw = await request("GET", proxy.v1 + "/models", headers={"Host": "llm.corp.example"})
    assert status == 200, raw


async def test_cors_preflight_and_answers_for_an_allowed_origin(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(json=None, stream=openai_stream(["a", "b"])))
    proxy = await start_proxy(config(fake.url, 'api_keys: [team-key], cors_origins: ["https://app.example"]'))
    origin = {"Origin": "https://app.example"}
    status, headers, _ = await request("OPTIONS", proxy.v1 + "/chat/completions", headers={
        **origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
    })
    assert status == 204  # no key needed: browsers send none on a preflight
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "authorization, content-type, x-stainless-os"
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in headers["Vary"]
    auth = {**origin, "Authorization": "Bearer team-key"}
    status, headers, raw = await request("POST", proxy.v1 + "/chat/completions",
                                         body=orjson.dumps({**CHAT, "stream": True}), headers=auth)
    assert status == 200 and b"[DONE]" in raw
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in headers["Vary"]
    status, headers, _ = await request("GET", proxy.v1 + "/models", headers=origin)  # no key: 401, readable
    assert status == 401 and headers["Access-Control-Allow-Origin"] == "https://app.example"
    status, headers, raw = await request("OPTIONS", proxy.v1 + "/chat/completions", headers={
        "Origin": "https://other.example", "Access-Control-Request-Method": "POST"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    assert assert_openai_error(orjson.loads(raw))["code"] == "origin_not_allowed"


async def test_a_star_origin_allows_any_origin(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, 'cors_origins: ["*"]'))
    status, headers, _ = await request("GET", proxy.v1 + "/models", headers={"Origin": "https://any.example"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://any.example"


# -- 13. framing errors

def _framing_cases() -> list[tuple[str, bytes]]:
    base = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    return [
        ("content-length-with-transfer-encoding",
         base + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("1-MB-header-line", base + b"X-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"),
        ("10000-headers", base + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n"),
    ]


@pytest.mark.parametrize("name, raw", _framing_cases(), ids=[c[0] for c in _framing_cases()])
async def test_framing_errors_are_openai_json(start_proxy, fake_upstream, name, raw):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url))
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    try:
        writer.write(raw)
        status, headers, body = await asyncio.wait_for(read_response(reader), PATIENCE)
    finally:
        writer.close()
    assert 400 <= status < 500
    assert headers["content-type"].startswith("application/json")
    err = assert_openai_error(orjson.loads(body))
    assert err["type"] == "invalid_request_error"
    assert b"aaaa" not in body  # the offending bytes are not echoed
    assert fake.seen == []


# -- a port already in use

def test_serve_on_a_port_in_use_is_one_error_and_exit_1(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(textwrap.dedent(f"""
        listen: 127.0.0.1:{port}
        reload: {{enabled: false}}
        providers:
          local: {{type: mock}}
        models:
          m:
            deployments: [{{provider: local, model: x}}]
        """))
        result = subprocess.run(
            [sys.executable, "-m", "llmproxy", "serve", "--config", str(cfg)],
            capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ},
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Unclosed" not in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- the new server keys

BASE = """
providers:
  local: {type: mock}
models:
  m:
    deployments: [{provider: local, model: x}]
"""


def test_the_new_server_keys_have_defaults_and_are_validated():
    from llmproxy.config.tree import ConfigError, parse_config
    from llmproxy.config.views import redacted_view

    s = parse_config(BASE, env={}).server
    assert (s.header_timeout, s.body_timeout, s.keepalive_timeout) == (10.0, 15.0, 75.0)
    assert s.cors_origins == () and s.allowed_hosts == ()
    good = parse_config(BASE + 'server: {cors_origins: ["https://App.example/", "*"], allowed_hosts: [x.internal]}',
                        env={})
    assert good.server.cors_origins == ("https://app.example", "*")
    assert redacted_view(good)["server"]["allowed_hosts"] == ["x.internal"]
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + textwrap.dedent("""
        server:
          header_timeout: -1
          body_timeout: [15]
          keepalive_timeout: soon
          cors_origins: app.example
          allowed_hosts: ["proxy.internal:8080", 7]
        """), env={})
    text = "\n".join(info.value.problems)
    assert "server.header_timeout: must be a positive number" in text
    assert "server.body_timeout: must be a number" in text
    assert "server.keepalive_timeout: must be a number" in text
    assert "server.cors_origins: must be a list of strings" in text
    assert "server.allowed_hosts[0]: must be a host name" in text
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + 'server: {cors_origins: ["app.example"]}', env={})
    assert "server.cors_origins[0]: must be an origin such as https://app.example.com" in info.value.problems[0]

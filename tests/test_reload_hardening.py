"""Hot reload against hostile or broken files, through the real proxy.

Wrong-typed values, unexpected exceptions, huge files, alias bombs and
rotated secrets in a rejected file: each is a 422 / a ``last_error`` that
names the problem in a few words, the watching goes on, the event loop keeps
answering, and no credential of the rejected file is shown anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from pathlib import Path

import aiohttp
import orjson

from llmproxy.config.tree import MAX_CONFIG_BYTES, load_config
from llmproxy.server.app import create_app, serve
from llmproxy.server.reload import RELOADER, supervise

from .test_reload import post, sha, two_upstreams, wait_until


async def admin_config(s: aiohttp.ClientSession, url: str) -> dict:
    async with s.get(url + "/admin/config") as r:
        assert r.status == 200
        return await r.json()


async def admin_reload(s: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with s.post(url + "/admin/reload") as r:
        return r.status, await r.text()


async def test_wrong_typed_value_is_a_rejected_reload_and_watching_goes_on(
    tmp_path: Path, start_proxy, fake_upstream
):
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(two_upstreams(a.url, b.url, "a"))
    proxy = await start_proxy.from_file(cfg)
    bad = two_upstreams(a.url, b.url, "a").replace("deployments:", "strategy: [weighted]\n    deployments:")
    assert "strategy: [weighted]" in bad
    problem = "models.gpt-4o.strategy: must be a string, got a list"
    async with aiohttp.ClientSession() as s:
        cfg.write_text(bad)
        status, body = await admin_reload(s, proxy.url)
        assert status == 422, body
        assert problem in orjson.loads(body)["error"]["message"]
        doc = await admin_config(s, proxy.url)
        assert doc["reload"]["last_error"] == [problem]
        assert (await post(s, proxy.url))[1] == "a/gpt-4o"
        # The watcher and the poller are still alive: a valid edit is picked up.
        good = two_upstreams(a.url, b.url, "b")
        cfg.write_text(good)
        await wait_until(lambda: proxy.proxy.runtime.config.sha256 == sha(good))
        assert (await post(s, proxy.url))[1] == "b/gpt-4o"


async def test_a_dying_background_task_is_logged_and_restarted(caplog):
    stop = asyncio.Event()
    runs: list[int] = []

    async def flaky(stop: asyncio.Event) -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise TypeError("boom")
        await stop.wait()

    task = asyncio.create_task(supervise("poller", flaky, stop, backoff=0.001))
    await wait_until(lambda: len(runs) == 3)
    assert not task.done()
    died = [r for r in caplog.records if r.name == "llmproxy.reload" and r.levelno == logging.ERROR]
    assert len(died) == 2 and "poller task died" in died[0].getMessage()
    assert died[0].exc_info is not None and died[0].exc_info[0] is TypeError
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_healthz_answers_while_a_large_file_is_validated(tmp_path: Path, start_proxy, fake_upstream):
    """The parse runs in a thread: a /healthz sent once the reload attempt has
    started is answered while that attempt is still running."""
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    base = two_upstreams(a.url, b.url, "a").replace(
        "reload: {debounce: 0.05, poll_interval: 0.5}", "reload: {enabled: false, poll_interval: 3600}")
    cfg.write_text(base)
    proxy = await start_proxy.from_file(cfg)
    reloader = proxy.app[RELOADER]
    # About 0.9 MB, valid (so nothing but parsing and validating stands
    # between the start of the attempt and the swap): seconds of pure-Python
    # YAML parsing, far under the size cap.
    big = base.replace("providers:\n", "providers:\n  c:\n    type: anthropic\n    beta:\n" + "".join(
        f"      - beta-{i:08d}\n" for i in range(50_000)), 1)
    cfg.write_text(big)
    async with aiohttp.ClientSession() as s:
        reload = asyncio.create_task(admin_reload(s, proxy.url))
        await wait_until(lambda: reloader.status.last_attempt_at is not None, timeout=60)
        async with s.get(proxy.url + "/healthz") as r:
            assert r.status == 200
        # The attempt that started before /healthz was sent has not finished.
        assert reloader.status.reloads == 0
        status, body = await reload
        assert status == 200, body
        assert proxy.proxy.runtime.config.sha256 == sha(big)
        assert reloader.status.reloads == 1


async def test_an_oversized_file_is_refused_before_parsing(tmp_path: Path, start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(two_upstreams(a.url, b.url, "a"))
    proxy = await start_proxy.from_file(cfg)
    with cfg.open("a") as f:
        f.write(("#" + " " * 1023 + "\n") * (30 * 1024))  # 30 MiB of comments
    async with aiohttp.ClientSession() as s:
        status, body = await admin_reload(s, proxy.url)
        assert status == 422
        assert f"larger than {MAX_CONFIG_BYTES // 2**20} MiB" in body
        assert (await post(s, proxy.url))[1] == "a/gpt-4o"


def _rss_peak_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


async def test_an_alias_bomb_is_rejected_with_a_short_message(tmp_path: Path, start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    base = two_upstreams(a.url, b.url, "a")
    cfg.write_text(base)
    proxy = await start_proxy.from_file(cfg)
    # 10**7 leaves under a key whose wrong value used to be quoted whole.
    lols = ['lol0: &lol0 "lol"'] + [
        f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 10)}]" for i in range(1, 8)
    ]
    bomb = "bombs:\n" + "".join(f"  {line}\n" for line in lols) + base + "defaults: {queue_timeout: *lol7}\n"
    cfg.write_text(bomb)
    peak = _rss_peak_reset()
    before = _status_kib("VmHWM" if peak else "VmRSS")
    async with aiohttp.ClientSession() as s:
        status, body = await admin_reload(s, proxy.url)
        after = _status_kib("VmHWM" if peak else "VmRSS")
        assert status == 422
        message = orjson.loads(body)["error"]["message"]
        assert "alias" in message and len(message) < 300, message[:500]
        doc = await admin_config(s, proxy.url)
        assert sum(len(p) for p in doc["reload"]["last_error"]) < 300
    assert (after - before) < 100 * 1024, f"peak RSS grew by {(after - before) // 1024} MiB"


async def test_a_rejected_reload_never_shows_its_own_secrets(
    tmp_path: Path, start_proxy, fake_upstream, caplog, monkeypatch
):
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    base = two_upstreams(a.url, b.url, "a")
    cfg.write_text(base)
    proxy = await start_proxy.from_file(cfg)
    monkeypatch.setenv("LLMPROXY_TEST_ROTATED", "rotated-env-credential-9876")
    secrets = ["sk-new-secret-rotated-1234", "pw-in-url-credential-5678", "rotated-env-credential-9876"]
    rejected = [
        # A wrong type under a secret-named key.
        base.replace("api_key: key-b", "api_key: [sk-new-secret-rotated-1234]"),
        # A value that is quoted (a bad URL) holding a password...
        base.replace(f'base_url: "{b.url}/v1"', 'base_url: "htp://user:pw-in-url-credential-5678@h/v1"'),
        # ...also when it comes from the environment.
        base.replace(f'base_url: "{b.url}/v1"', 'base_url: "htp://user:${LLMPROXY_TEST_ROTATED}@h/v1"'),
    ]
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as s:
        for text in rejected:
            cfg.write_text(text)
            status, body = await admin_reload(s, proxy.url)
            assert status == 422, body
            assert "providers.b." in body
            doc = orjson.dumps(await admin_config(s, proxy.url)).decode()
            assert "providers.b." in doc
            for secret in secrets:
                assert secret not in body and secret not in doc
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "rejected" in logged
    for secret in secrets:
        assert secret not in logged


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_listen_change_warning_names_the_address_really_listened_on(
    tmp_path: Path, fake_upstream, caplog
):
    """As ``serve --port`` does: the config says one port, the proxy listens on another."""
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text("listen: 127.0.0.1:1111\n" + two_upstreams(a.url, b.url, "a"))
    port = _free_port()
    app = create_app(await asyncio.to_thread(load_config, cfg), config_path=str(cfg))
    ready = asyncio.Event()
    server = asyncio.create_task(serve(app, "127.0.0.1", port, ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        new = "listen: 127.0.0.1:2222\n" + two_upstreams(a.url, b.url, "b")
        cfg.write_text(new)
        await wait_until(lambda: app[RELOADER].last_seen_sha == sha(new))
        warning = [r.getMessage() for r in caplog.records if "listen changed" in r.getMessage()]
        assert len(warning) == 1
        assert warning[0].endswith(f"still listening on 127.0.0.1:{port}"), warning
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # serve's own handler: drain and return
        await asyncio.wait_for(server, 30)

"""SharedRedis: the process's one Redis connection, against a real redis-server.

Up and down with a server of the test's own (``redis_factory``): an outage is
one WARNING, the gauge at 0, /readyz still 200 with ``redis: down``, calls
answered UNAVAILABLE without touching the network, and recovery in the
background. The URL's password never reaches a log, /metrics, /readyz or /admin.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from llmproxy.config.tree import ConfigError, parse_config
from llmproxy.state.redis import (
    SHARED_REDIS,
    UNAVAILABLE,
    SharedRedis,
    describe,
    shown_url,
)

from .redis_server import RedisServer

# Outages here are a stopped server (refused at once); a generous reply bound
# keeps a busy machine from faking one.
FAST = {"timeout": 5.0, "retry_min": 0.02, "retry_max": 0.1}


async def until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for a condition the code under test makes true in the background."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def proxy_yaml(redis_url: str) -> str:
    return f"""
providers:
  mock: {{type: mock}}
models:
  m: {{deployments: [{{provider: mock, model: echo}}]}}
state:
  redis: "{redis_url}"
"""


@pytest.fixture
async def shared() -> Any:
    opened: list[SharedRedis] = []

    async def make(url: str, **kw: Any) -> SharedRedis:
        r = SharedRedis(url, **{**FAST, **kw})
        await r.start()
        opened.append(r)
        return r

    yield make
    for r in opened:
        await r.close()


async def test_commands_get_set_with_ttl_and_scripts(redis_url: str, shared: Any) -> None:
    r = await shared(redis_url)
    assert r.up and r.detail() == "up"
    assert await r.get("absent") is None
    assert await r.set("k", b"v", ttl=60) is True
    assert await r.get("k") == b"v"
    ttl_ms = await r.call(lambda c: c.pttl("k"))
    assert 0 < ttl_ms <= 60_000
    assert await r.delete("k", "absent") == 1
    assert await r.call(lambda c: c.incrby("n", 3)) == 3


async def test_a_script_survives_a_flushed_script_cache(redis_url: str, shared: Any) -> None:
    r = await shared(redis_url)
    script = r.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await script(keys=["c"], args=[2]) == 2
    # A restarted or failed-over Redis has no scripts: EVALSHA says NOSCRIPT,
    # the script is sent again, and the caller never notices.
    assert await r.call(lambda c: c.script_flush()) is True
    assert await script(keys=["c"], args=[5]) == 7
    assert await r.call(lambda c: c.script_exists(script.sha)) == [True]


async def test_a_refused_command_is_unavailable_and_not_an_outage(redis_url: str, shared: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    r = await shared(redis_url)
    await r.set("s", b"text", ttl=60)
    with caplog.at_level(logging.WARNING, "llmproxy.state"):
        for _ in range(3):
            assert await r.call(lambda c: c.incr("s")) is UNAVAILABLE  # WRONGTYPE-like error
    assert r.up
    refused = [rec for rec in caplog.records if "refused a command" in rec.getMessage()]
    assert len(refused) == 1  # once per distinct error, not once per request


async def test_an_outage_fails_fast_warns_once_and_recovers(redis_factory: Callable[..., RedisServer],
                                                             shared: Any,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    server = redis_factory()
    health: list[bool] = []
    recovered = asyncio.Event()
    r = await shared(server.url, on_health=health.append)

    async def on_up() -> None:
        recovered.set()

    r.on_up(on_up)
    assert health == [True]
    assert await r.set("k", b"v", ttl=60) is True

    caplog.set_level(logging.INFO, "llmproxy.state")
    server.stop()
    # The first command after the server went away finds out, and is the
    # only one that touched the network: while down, fn is never called.
    assert await r.get("k") is UNAVAILABLE
    assert not r.up and r.detail() == "down" and health == [True, False]
    touched: list[int] = []

    async def count(c: Any) -> int:
        touched.append(1)
        return 1

    for _ in range(20):
        assert await r.call(count) is UNAVAILABLE
    assert touched == []
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    assert "serving on local state" in warnings[0].getMessage()

    await asyncio.to_thread(server.start)
    async with asyncio.timeout(30):
        await recovered.wait()
    assert r.up and health == [True, False, True] and r.outages == 1
    assert any(rec.levelno == logging.INFO and "reachable again" in rec.getMessage() for rec in caplog.records)
    # Fresh connections after recovery (the old ones died with the server).
    assert await r.set("k", b"again", ttl=60) is True
    assert await r.get("k") == b"again"
    assert touched == []

    # A second outage is a second WARNING.
    server.stop()
    assert await r.get("k") is UNAVAILABLE
    assert len([rec for rec in caplog.records if rec.levelno == logging.WARNING]) == 2


async def test_down_at_start_up_does_not_stop_the_process(redis_factory: Callable[..., RedisServer],
                                                           shared: Any) -> None:
    server = redis_factory()
    server.stop()  # nothing listens on its port now
    r = await shared(server.url)
    assert not r.up and r.outages == 1
    assert await r.get("k") is UNAVAILABLE
    await asyncio.to_thread(server.start)
    await until(lambda: r.up, "redis back")
    assert await r.set("k", b"v", ttl=5) is True


async def test_closing_stops_the_background_retries(redis_factory: Callable[..., RedisServer],
                                                     shared: Any) -> None:
    server = redis_factory()
    server.stop()
    r = SharedRedis(server.url, **FAST)
    await r.start()
    task = r._reconnect
    assert task is not None and not task.done()
    await r.close()
    assert task.done()
    assert await r.get("k") is UNAVAILABLE


async def test_the_proxy_reports_redis_in_readyz_and_metrics(redis_factory: Callable[..., RedisServer],
                                                              start_proxy: Any) -> None:
    server = redis_factory()
    proxy = await start_proxy(proxy_yaml(server.url))
    redis = proxy.app[SHARED_REDIS]
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["redis"] == "up"
        async with s.get(proxy.url + "/metrics") as resp:
            text = await resp.text()
            assert "# TYPE llmproxy_redis_up gauge" in text and "llmproxy_redis_up 1.0" in text
        server.stop()
        assert await redis.get("k") is UNAVAILABLE
        async with s.get(proxy.url + "/readyz") as resp:
            # Still ready: the proxy serves on local state without Redis.
            assert resp.status == 200
            assert (await resp.json())["redis"] == "down"
        async with s.get(proxy.url + "/metrics") as resp:
            assert "llmproxy_redis_up 0.0" in await resp.text()
        async with s.post(proxy.url + "/v1/chat/completions",
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}) as resp:
            assert resp.status == 200
        await asyncio.to_thread(server.start)
        await until(lambda: redis.up, "redis back")
        async with s.get(proxy.url + "/readyz") as resp:
            assert (await resp.json())["redis"] == "up"


async def test_no_redis_configured_no_detail_and_no_sample(start_proxy: Any) -> None:
    proxy = await start_proxy("""
providers:
  mock: {type: mock}
models:
  m: {deployments: [{provider: mock, model: echo}]}
""")
    assert SHARED_REDIS not in proxy.app
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/readyz") as resp:
            assert "redis" not in await resp.json()
        async with s.get(proxy.url + "/metrics") as resp:
            assert "llmproxy_redis_up" not in await resp.text()


PASSWORD = "s3cret-redis-pw"


async def test_the_password_never_leaves(redis_factory: Callable[..., RedisServer], start_proxy: Any,
                                         caplog: pytest.LogCaptureFixture) -> None:
    server = redis_factory(password=PASSWORD)
    assert PASSWORD in server.url
    caplog.set_level(logging.INFO)
    proxy = await start_proxy(proxy_yaml(server.url))
    redis = proxy.app[SHARED_REDIS]
    assert redis.up  # it authenticated
    assert await redis.set("k", b"v", ttl=60) is True
    server.stop()
    assert await redis.get("k") is UNAVAILABLE
    async with aiohttp.ClientSession() as s:
        for path in ("/readyz", "/metrics", "/admin/config"):
            async with s.get(proxy.url + path) as resp:
                assert PASSWORD not in await resp.text(), path
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(redis.__dict__.get("shown_url"))
    assert "unreachable" in caplog.text and "127.0.0.1" in caplog.text


async def test_a_wrong_password_is_an_outage_that_does_not_show_it(redis_factory: Callable[..., RedisServer],
                                                                    shared: Any,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    server = redis_factory(password=PASSWORD)
    wrong = server.url.replace(PASSWORD, "wrong-pw-123")
    with caplog.at_level(logging.WARNING, "llmproxy.state"):
        r = await shared(wrong)
    assert not r.up
    assert "wrong-pw-123" not in caplog.text and PASSWORD not in caplog.text
    assert "unreachable" in caplog.text


def test_shown_url_and_describe_mask_credentials() -> None:
    url = "redis://user:pa%40ss@redis.internal:6380/2?password=qpass"
    assert shown_url(url) == "redis://[REDACTED]@redis.internal:6380/2"
    text = describe(RuntimeError(f"cannot reach {url} with pa@ss or qpass"), url)
    assert "pa@ss" not in text and "pa%40ss" not in text and "qpass" not in text
    assert "redis.internal:6380" in text


def test_the_config_without_the_redis_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError) as err:
        parse_config(proxy_yaml("redis://:pw-in-url@127.0.0.1:6379/0"), env={})
    problems = "\n".join(err.value.problems)
    assert "state.redis" in problems and "pip install 'llmproxy[redis]'" in problems
    assert "pw-in-url" not in problems


def test_a_bad_redis_url_names_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(proxy_yaml("http://127.0.0.1:6379"), env={})
    assert any(p.startswith("state.redis") and "redis://" in p for p in err.value.problems)


async def test_cli_check_refuses_state_redis_without_the_package(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from llmproxy.__main__ import main

    path = tmp_path / "c.yaml"
    path.write_text(proxy_yaml("redis://127.0.0.1:6379/0"))
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")]:
        monkeypatch.setitem(sys.modules, name, None)
    rc: Callable[[], Awaitable[int]] | int = await asyncio.to_thread(main, ["check", str(path)])
    assert rc == 1
    assert "pip install 'llmproxy[redis]'" in capsys.readouterr().err


async def test_a_restart_while_idle_is_not_an_outage(redis_factory: Callable[..., RedisServer],
                                                     shared: Any) -> None:
    server = redis_factory()
    r = await shared(server.url)
    assert await r.set("k", b"v", ttl=60) is True  # a pooled connection now
    server.stop()
    await asyncio.to_thread(server.start)
    # The pooled connection died with the old server: its first use is
    # retried once on a new connection, not reported as an outage.
    assert await r.get("k") is None  # the new server is empty
    assert r.up and r.outages == 0

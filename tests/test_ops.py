"""Issue 18: active health checks, the request log, config history and rollback,
through the real proxy against fake upstreams that go down and come back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson

from llmproxy.server.health_checks import HEALTH_CHECKS

from .fakes import Reply, Seen, openai_completion


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for a condition, polling; the deadline is generous (a loaded CI box)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class Switch:
    """A fake upstream's responder that is up (200) or down (500) on command."""

    def __init__(self) -> None:
        self.up = True
        self.probes = 0

    def __call__(self, seen: Seen) -> Reply:
        if seen.method == "GET" and seen.path.endswith("/models"):
            self.probes += 1
            if self.up:
                return Reply(json={"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]})
            return Reply(status=500, json={"error": {"message": "down for sk-upstream-secret", "type": "server_error"}})
        return Reply(json=openai_completion("hi")) if self.up else Reply(status=500, json={"error": {"message": "down"}})


def checked_config(url: str, extra: str = "") -> str:
    return f"""
    providers:
      up: {{type: openai, base_url: "{url}", api_key: sk-upstream-secret}}
    defaults:
      breaker: {{failures: 2, cooldown: 0.2}}
    models:
      gpt-4o:
        deployments:
          - provider: up
            model: gpt-4o
            id: checked
            health_check: {{enabled: true, interval: 0.02, timeout: 2}}
    {extra}
    """


async def get_json(url: str, **kw: object) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.get(url, **kw) as r:  # type: ignore[arg-type]
        return r.status, orjson.loads(await r.read())


async def test_probes_open_the_breaker_without_traffic_and_close_it(start_proxy, fake_upstream):
    fake = await fake_upstream()
    switch = fake.responder = Switch()
    proxy = await start_proxy(checked_config(fake.url))
    state = proxy.proxy.registry.all()[0]
    await until(lambda: state.health is not None and state.health.ok is True)
    status, ready = await get_json(proxy.url + "/readyz")
    assert status == 200, ready
    switch.up = False
    await until(lambda: state.breaker.state == "open")  # no client request was sent
    assert all(s.method == "GET" for s in fake.seen)
    status, ready = await get_json(proxy.url + "/readyz")
    assert status == 503
    status, doc = await get_json(proxy.url + "/admin/deployments")
    hc = doc["deployments"][0]["health_check"]
    assert hc["ok"] is False and hc["consecutive_failures"] >= 2
    assert "sk-upstream-secret" not in orjson.dumps(doc).decode()  # the upstream's echo is redacted
    switch.up = True
    await until(lambda: state.breaker.state == "closed")  # a passing probe closed the half-open breaker
    status, ready = await get_json(proxy.url + "/readyz")
    assert status == 200
    status, doc = await get_json(proxy.url + "/admin/deployments")
    hc = doc["deployments"][0]["health_check"]
    assert hc["ok"] is True and hc["latency_ms"] is not None
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/metrics") as r:
        text = await r.text()
    assert 'llmproxy_health_checks_total{deployment="checked",result="fail"}' in text
    assert 'llmproxy_health_checks_total{deployment="checked",result="pass"}' in text


async def test_a_slow_probe_never_starts_a_second(start_proxy, fake_upstream):
    fake = await fake_upstream()
    hold = asyncio.Event()
    fake.script(Reply(json={"object": "list", "data": []}, hold=hold))
    proxy = await start_proxy(checked_config(fake.url).replace("timeout: 2", "timeout: 30"))
    await fake.received.wait()
    for _ in range(20):  # many intervals pass while the first probe hangs
        await asyncio.sleep(0.02)
    assert len(fake.seen) == 1
    hold.set()
    await until(lambda: len(fake.seen) >= 3)
    assert proxy.proxy.registry.all()[0].health.ok is True


async def test_paid_providers_are_not_probed_by_default_and_the_mock_is(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(f"""
    providers:
      paid: {{type: openai, base_url: "{fake.url}", api_key: k}}
      free: {{type: mock}}
    defaults:
      health_check: {{interval: 0.02}}
    models:
      a: {{deployments: [{{provider: paid, model: gpt-4o}}]}}
      b: {{deployments: [{{provider: free, model: m}}]}}
    """)
    checker = proxy.app[HEALTH_CHECKS]
    assert set(checker.loops()) == {"free/m"}
    mock = next(s for s in proxy.proxy.registry.all() if s.id == "free/m")
    await until(lambda: mock.health is not None and mock.health.probes >= 2)
    assert mock.health.ok is True and fake.seen == []


async def test_reload_restarts_only_changed_probe_loops(start_proxy, fake_upstream, tmp_path: Path):
    path = tmp_path / "llmproxy.yaml"
    base = """
    reload: {enabled: false}
    providers:
      m1: {type: mock}
      m2: {type: mock}
    models:
      a: {deployments: [{provider: m1, model: x, health_check: {interval: 0.05}}]}
      b: {deployments: [{provider: m2, model: y, health_check: {interval: 0.05}}]}
    """
    path.write_text(base)
    proxy = await start_proxy.from_file(str(path))
    checker = proxy.app[HEALTH_CHECKS]
    before = checker.loops()
    path.write_text(base.replace("model: y, health_check: {interval: 0.05}", "model: y, health_check: {interval: 0.07}"))
    async with aiohttp.ClientSession() as s, s.post(proxy.url + "/admin/reload") as r:
        assert r.status == 200
    after = checker.loops()
    assert after["m1/x"] is before["m1/x"]
    assert after["m2/y"] is not before["m2/y"]
    await asyncio.wait_for(asyncio.gather(before["m2/y"], return_exceptions=True), 20)  # the old loop ended
    assert not after["m2/y"].done() and not after["m1/x"].done()


def test_kind_models_needs_a_provider_with_a_models_list():
    import pytest

    from llmproxy.config.tree import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config("""
        providers: {b: {type: bedrock, region: us-east-1}}
        models: {a: {deployments: [{provider: b, model: m, health_check: {enabled: true}}]}}
        """, env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert any("health_check.kind" in p and "kind: chat" in p for p in err.value.problems)
    parse_config("""
    providers: {b: {type: bedrock, region: us-east-1}}
    models: {a: {deployments: [{provider: b, model: m, health_check: {enabled: true, kind: chat}}]}}
    """, env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})


# -- the request log

LOG_CONFIG = """
admin: {request_log: 3, request_log_bodies: true}
providers:
  m: {type: mock, api_key: sk-mock-secret-123}
  bad: {type: openai, base_url: "URL", api_key: sk-bad-secret-456}
models:
  echo: {deployments: [{provider: m, model: e, price: {input_per_mtok: 1, output_per_mtok: 2}}]}
  broken: {deployments: [{provider: bad, model: b}], retry: {retries: 0}}
"""


async def test_request_log_bound_filters_and_redaction(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(status=400, json={"error": {"message": "bad key sk-bad-secret-456", "type": "invalid_request_error"}}))
    proxy = await start_proxy(LOG_CONFIG.replace("URL", fake.url))
    client = openai_client(proxy)
    for i in range(4):
        await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": f"hello {i} sk-mock-secret-123"}])
    status, doc = await get_json(proxy.url + "/admin/requests")
    assert status == 200 and doc["size"] == 3 and len(doc["requests"]) == 3  # the bound
    newest = doc["requests"][0]
    assert newest["model"] == "echo" and newest["deployment"] == "m/e" and newest["status"] == 200
    assert newest["prompt_tokens"] and newest["cost_usd"] > 0 and newest["latency_ms"] > 0
    assert "hello 3" in newest["body"] and "sk-mock-secret-123" not in newest["body"]
    import openai
    try:
        await client.chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}])
    except openai.BadRequestError:
        pass
    status, doc = await get_json(proxy.url + "/admin/requests?status=error")
    assert [e["model"] for e in doc["requests"]] == ["broken"]
    assert "bad key" in doc["requests"][0]["error"] and "sk-bad-secret-456" not in doc["requests"][0]["error"]
    status, doc = await get_json(proxy.url + "/admin/requests?model=echo&status=2xx&limit=1")
    assert len(doc["requests"]) == 1 and doc["requests"][0]["model"] == "echo"
    status, doc = await get_json(proxy.url + f"/admin/requests?since={time.time() + 60}")
    assert doc["requests"] == []
    status, doc = await get_json(proxy.url + "/admin/requests?key=nobody")
    assert doc["requests"] == []
    for bad in ("status=abc", "limit=0", "since=yesterday"):
        status, doc = await get_json(proxy.url + "/admin/requests?" + bad)
        assert status == 400 and doc["error"]["message"], bad


async def test_request_log_live_tail_and_a_slow_subscriber_is_dropped(start_proxy, openai_client):
    from llmproxy.observe.request_log import REQUEST_LOG, SUBSCRIBER_QUEUE

    proxy = await start_proxy(LOG_CONFIG.replace("URL", "http://127.0.0.1:9"))
    client = openai_client(proxy)
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/admin/requests/stream") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        await r.content.readline()
        await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "tail me"}])
        lines = []
        while not any(line.startswith(b"data: ") for line in lines):
            lines.append(await asyncio.wait_for(r.content.readline(), 20))
        assert b"event: request\n" in lines
        entry = orjson.loads(next(line for line in lines if line.startswith(b"data: "))[6:])
        assert entry["model"] == "echo"
    log = proxy.app[REQUEST_LOG]
    slow = log.subscribe()
    assert slow is not None
    for i in range(SUBSCRIBER_QUEUE + 5):  # nobody reads this subscriber's queue
        log.add({"time": time.time(), "model": "echo", "status": 200, "key": None, "error": None})
    assert slow.dropped and slow not in log.subscribers and slow.queue.get_nowait() is None


async def test_request_log_off_costs_nothing_and_says_so(start_proxy):
    proxy = await start_proxy("""
    admin: {request_log: 0}
    providers: {m: {type: mock}}
    models: {echo: {deployments: [{provider: m, model: e}]}}
    """)
    status, doc = await get_json(proxy.url + "/admin/requests")
    assert status == 404 and doc["error"]["code"] == "request_log_off"


# -- config history, diff, rollback

HISTORY_CONFIG = """
reload: {enabled: false, poll_interval: 3600}
admin: {config_history: 3}
providers:
  m: {type: mock, api_key: sk-history-secret-1}
models:
  echo: {deployments: [{provider: m, model: e}]}
"""


async def post(url: str, body: object | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.post(url, data=None if body is None else orjson.dumps(body)) as r:
        return r.status, orjson.loads(await r.read())


async def test_history_diff_and_rollback_through_the_real_proxy(start_proxy, tmp_path: Path, caplog):
    path = tmp_path / "llmproxy.yaml"
    path.write_text(HISTORY_CONFIG)
    proxy = await start_proxy.from_file(str(path))
    first = proxy.proxy.runtime.config.sha256
    path.write_text(HISTORY_CONFIG.replace("model: e}", "model: e2}").replace("sk-history-secret-1", "sk-history-secret-2"))
    caplog.set_level("INFO", logger="llmproxy.audit")
    status, doc = await post(proxy.url + "/admin/reload")
    assert status == 200
    second = doc["sha256"]
    path.write_text("models: [not valid")
    status, doc = await post(proxy.url + "/admin/reload")
    assert status == 422
    audit = [r.getMessage() for r in caplog.records if r.name == "llmproxy.audit"]
    assert any("accepted" in a and "source=admin" in a and second in a for a in audit)
    assert any("rejected" in a and "source=admin" in a for a in audit)

    status, doc = await get_json(proxy.url + "/admin/config/history")
    assert status == 200 and doc["current"] == second
    assert [(h["sha256"], h["source"], h["current"]) for h in doc["history"]] == [
        (second, "admin", True), (first, "start", False)]
    status, doc = await get_json(proxy.url + f"/admin/config/diff?from={first[:10]}")
    assert "-      model: e\n" in doc["diff"] and "+      model: e2\n" in doc["diff"]
    text = orjson.dumps(doc).decode()
    assert "sk-history-secret" not in text
    status, doc = await get_json(proxy.url + f"/admin/config/history/{first}")
    assert doc["config"]["models"]["echo"]["deployments"][0]["model"] == "e"
    assert "sk-history-secret" not in orjson.dumps(doc).decode()

    status, doc = await post(proxy.url + "/admin/config/rollback", {"sha256": first})
    assert status == 200 and doc["sha256"] == first and doc["written"] is True, doc
    assert proxy.proxy.runtime.config.sha256 == first
    assert path.read_text() == HISTORY_CONFIG  # written back
    status, doc = await get_json(proxy.url + "/admin/config/history")
    assert doc["history"][0]["source"] == "rollback" and doc["history"][0]["current"]

    for body, code in (({"sha256": "0000000000"}, 404), ({"sha256": "ab"}, 400), ({"nope": 1}, 400)):
        status, doc = await post(proxy.url + "/admin/config/rollback", body)
        assert status == code, (body, doc)
    status, doc = await get_json(proxy.url + "/admin/config/diff")
    assert status == 400


def readonly(path: Path, on: bool) -> None:
    """A file this process cannot write: chmod, or (root ignores modes) the immutable attribute."""
    import os
    import subprocess

    import pytest

    if os.geteuid() != 0:
        path.chmod(0o444 if on else 0o644)
        return
    done = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
    if done.returncode != 0 and on:
        pytest.skip("running as root without chattr +i: no way to make a file read-only")


async def test_rollback_of_a_read_only_file_is_held_in_memory(start_proxy, tmp_path: Path):
    path = tmp_path / "llmproxy.yaml"
    path.write_text(HISTORY_CONFIG)
    proxy = await start_proxy.from_file(str(path))
    first = proxy.proxy.runtime.config.sha256
    changed = HISTORY_CONFIG.replace("model: e}", "model: e2}")
    path.write_text(changed)
    status, _ = await post(proxy.url + "/admin/reload")
    assert status == 200
    readonly(path, True)
    try:
        status, doc = await post(proxy.url + "/admin/config/rollback", {"sha256": first})
        assert status == 200 and doc["written"] is False and "held in memory" in doc["note"]
        assert proxy.proxy.runtime.config.sha256 == first
        assert path.read_text() == changed
        # The periodic check does not undo it: the file's content was already seen.
        reloader = proxy.app[__import__("llmproxy.server.reload", fromlist=["RELOADER"]).RELOADER]
        assert await reloader.reload("periodic check") is False
        assert proxy.proxy.runtime.config.sha256 == first
    finally:
        readonly(path, False)


async def test_history_is_bounded(start_proxy, tmp_path: Path):
    path = tmp_path / "llmproxy.yaml"
    path.write_text(HISTORY_CONFIG)
    proxy = await start_proxy.from_file(str(path))
    for i in range(5):
        path.write_text(HISTORY_CONFIG.replace("model: e}", f"model: e{i}}}"))
        status, _ = await post(proxy.url + "/admin/reload")
        assert status == 200
    status, doc = await get_json(proxy.url + "/admin/config/history")
    assert len(doc["history"]) == 3


# -- the page's files and who may use them

async def test_ui_files_headers_and_the_token_rule(start_proxy):
    proxy = await start_proxy("""
    admin: {token: ui-admin-token}
    providers: {m: {type: mock}}
    models: {echo: {deployments: [{provider: m, model: e}]}}
    """)
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/ui") as r:  # the shell: no data, the same for everyone
            body = await r.text()
            assert r.status == 200 and r.content_type == "text/html"
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            assert "ui-admin-token" not in body and "http://" not in body and "https://" not in body
        for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
            async with s.get(proxy.url + "/ui/" + name) as r:
                assert r.status == 200 and r.content_type == ctype
        async with s.get(proxy.url + "/ui/..%2Fapp.py") as r:
            assert r.status == 404
        async with s.get(proxy.url + "/admin/requests") as r:  # the data needs the token
            assert r.status == 401
        async with s.get(proxy.url + "/admin/requests", headers={"Authorization": "Bearer ui-admin-token"}) as r:
            assert r.status == 200


async def test_the_pages_own_origin_is_admitted_and_a_foreign_or_rebound_one_is_not(start_proxy, tmp_path: Path):
    path = tmp_path / "llmproxy.yaml"
    path.write_text(HISTORY_CONFIG)
    proxy = await start_proxy.from_file(str(path))
    host = proxy.url.removeprefix("http://")
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/admin/reload", headers={"Origin": proxy.url}) as r:
            assert r.status == 200
        async with s.post(proxy.url + "/admin/reload", headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403
        # DNS rebinding: Origin and Host agree on a name the operator never listed.
        async with s.post(proxy.url + "/admin/reload",
                          headers={"Origin": "http://evil.example:" + host.split(":")[1],
                                   "Host": "evil.example:" + host.split(":")[1]}) as r:
            assert r.status == 403

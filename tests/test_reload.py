"""Hot reload through the real proxy: edits, ConfigMap swaps, bad files, a soak."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import textwrap
import time
from pathlib import Path

import aiohttp
import orjson

from llmproxy.server.reload import RELOADER

from .fakes import Reply, openai_stream

CHAT = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
STREAM = orjson.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})


def two_upstreams(a_url: str, b_url: str, target: str, extra: str = "") -> str:
    return textwrap.dedent(f"""
    providers:
      a: {{type: openai, base_url: "{a_url}/v1", api_key: key-a}}
      b: {{type: openai, base_url: "{b_url}/v1", api_key: key-b}}
    models:
      gpt-4o:
        deployments: [{{provider: {target}, model: gpt-4o}}]
    reload: {{debounce: 0.05, poll_interval: 0.5}}
    {extra}
    """)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def wait_seen(proxy, text: str) -> None:
    """Until the reloader has looked at exactly this content (valid or not)."""
    reloader = proxy.app[RELOADER]
    await wait_until(lambda: reloader.last_seen_sha == sha(text))


async def post(session: aiohttp.ClientSession, url: str, body: bytes = CHAT) -> tuple[int, str, bytes]:
    async with session.post(url + "/v1/chat/completions", data=body) as r:
        return r.status, r.headers.get("x-llmproxy-deployment", ""), await r.read()


async def test_moving_a_model_reroutes_new_requests(tmp_path: Path, start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(two_upstreams(a.url, b.url, "a"))
    proxy = await start_proxy.from_file(cfg)
    async with aiohttp.ClientSession() as s:
        assert (await post(s, proxy.url))[1] == "a/gpt-4o"
        new = two_upstreams(a.url, b.url, "b")
        started = time.monotonic()
        cfg.write_text(new)
        await wait_until(lambda: proxy.proxy.runtime.config.sha256 == sha(new))
        elapsed = time.monotonic() - started
        status, dep, _ = await post(s, proxy.url)
        assert (status, dep) == (200, "b/gpt-4o")
    assert len(b.seen) == 1 and b.seen[0].headers["Authorization"] == "Bearer key-b"
    print(f"reload picked up after {elapsed * 1000:.0f} ms")


async def test_in_flight_stream_finishes_on_the_old_route(tmp_path: Path, start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    resume = asyncio.Event()
    a.script(Reply(stream=openai_stream(["x", "y", "z"]), pause_after=2, resume=resume))
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(two_upstreams(a.url, b.url, "a"))
    proxy = await start_proxy.from_file(cfg)
    old_state = proxy.proxy.runtime.router.states["a/gpt-4o"]
    async with aiohttp.ClientSession() as s:
        resp = await s.post(proxy.url + "/v1/chat/completions", data=STREAM)
        await resp.content.readuntil(b"\n\n")
        new = two_upstreams(a.url, b.url, "b")
        cfg.write_text(new)
        await wait_until(lambda: proxy.proxy.runtime.config.sha256 == sha(new))
        assert (await post(s, proxy.url))[1] == "b/gpt-4o"
        resume.set()
        rest = await resp.read()
        resp.release()
    text = rest.decode()
    assert '"content":"x"' in text and '"content":"y"' in text and '"content":"z"' in text
    assert text.endswith("data: [DONE]\n\n")
    assert old_state.in_flight == 0
    assert "a/gpt-4o" not in proxy.proxy.runtime.router.states  # dropped once its request ended


async def test_invalid_files_keep_the_old_config_serving(tmp_path: Path, start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    good = two_upstreams(a.url, b.url, "a")
    cfg.write_text(good)
    proxy = await start_proxy.from_file(cfg)
    reloader = proxy.app[RELOADER]
    bad_files = [
        "providers: [unclosed\n",  # bad YAML
        two_upstreams(a.url, b.url, "c"),  # unknown provider referenced
        two_upstreams(a.url, b.url, "b").replace("key-b", "'${LLMPROXY_TEST_UNSET_VAR}'"),  # missing env
    ]
    async with aiohttp.ClientSession() as s:
        for i, bad in enumerate(bad_files, start=1):
            cfg.write_text(bad)
            await wait_seen(proxy, bad)
            assert reloader.status.failures == i
            status, dep, _ = await post(s, proxy.url)
            assert (status, dep) == (200, "a/gpt-4o")
            async with s.get(proxy.url + "/admin/config") as r:
                doc = await r.json()
            assert doc["sha256"] == sha(good)
            assert doc["reload"]["failures"] == i
            assert doc["reload"]["last_error"]
        assert any("LLMPROXY_TEST_UNSET_VAR is not set" in p for p in doc["reload"]["last_error"])
        assert "key-a" not in orjson.dumps(doc).decode()


async def test_configmap_symlink_swap_is_picked_up(tmp_path: Path, start_proxy, fake_upstream):
    """kubelet's atomic update: a new timestamped dir, ``..data`` swapped by rename."""
    a, b = await fake_upstream(), await fake_upstream()
    mount = tmp_path / "config"
    mount.mkdir()
    first = mount / "..2026_11_23_10_00_00.000000001"
    first.mkdir()
    (first / "llmproxy.yaml").write_text(two_upstreams(a.url, b.url, "a"))
    (mount / "..data").symlink_to(first.name)
    (mount / "llmproxy.yaml").symlink_to("..data/llmproxy.yaml")
    proxy = await start_proxy.from_file(mount / "llmproxy.yaml")
    async with aiohttp.ClientSession() as s:
        assert (await post(s, proxy.url))[1] == "a/gpt-4o"
        second = mount / "..2026_11_23_10_01_00.000000002"
        second.mkdir()
        new = two_upstreams(a.url, b.url, "b")
        (second / "llmproxy.yaml").write_text(new)
        (mount / "..data_tmp").symlink_to(second.name)
        os.rename(mount / "..data_tmp", mount / "..data")
        await wait_until(lambda: proxy.proxy.runtime.config.sha256 == sha(new))
        assert (await post(s, proxy.url))[1] == "b/gpt-4o"


async def test_editor_save_by_rename_is_picked_up(tmp_path: Path, start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(two_upstreams(a.url, b.url, "a"))
    proxy = await start_proxy.from_file(cfg)
    new = two_upstreams(a.url, b.url, "b")
    swap = tmp_path / ".llmproxy.yaml.swp"
    swap.write_text(new)
    os.replace(swap, cfg)
    await wait_until(lambda: proxy.proxy.runtime.config.sha256 == sha(new))
    async with aiohttp.ClientSession() as s:
        assert (await post(s, proxy.url))[1] == "b/gpt-4o"


async def test_periodic_check_catches_a_missed_event(tmp_path: Path, start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(two_upstreams(a.url, b.url, "a", extra="").replace(
        "reload: {debounce: 0.05, poll_interval: 0.5}", "reload: {enabled: false, poll_interval: 0.2}"))
    proxy = await start_proxy.from_file(cfg)
    new = two_upstreams(a.url, b.url, "b").replace(
        "reload: {debounce: 0.05, poll_interval: 0.5}", "reload: {enabled: false, poll_interval: 0.2}")
    cfg.write_text(new)  # no watcher: only the content-hash poll can see this
    await wait_until(lambda: proxy.proxy.runtime.config.sha256 == sha(new))


async def test_admin_reload_and_sighup(tmp_path: Path, start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    base = two_upstreams(a.url, b.url, "a", extra="admin: {token: adm-secret}").replace(
        "reload: {debounce: 0.05, poll_interval: 0.5}", "reload: {enabled: false, poll_interval: 3600}")
    cfg.write_text(base)
    proxy = await start_proxy.from_file(cfg)
    reloader = proxy.app[RELOADER]
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/admin/reload") as r:
            assert r.status == 401
        cfg.write_text(base.replace("provider: a", "provider: b"))
        auth = {"Authorization": "Bearer adm-secret"}
        async with s.post(proxy.url + "/admin/reload", headers=auth) as r:
            assert r.status == 200, await r.text()
        assert (await post(s, proxy.url))[1] == "b/gpt-4o"
        cfg.write_text("models: {}\n")
        async with s.post(proxy.url + "/admin/reload", headers=auth) as r:
            assert r.status == 422
            assert "providers: is required" in (await r.json())["error"]["message"]
        assert (await post(s, proxy.url))[1] == "b/gpt-4o"
        cfg.write_text(base)
        before = reloader.status.reloads
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_until(lambda: reloader.status.reloads == before + 1)
        assert (await post(s, proxy.url))[1] == "a/gpt-4o"


def versioned(k: int) -> str:
    """Config version k: model gpt-4o on two mock deployments that say 'v{k}'."""
    return textwrap.dedent(f"""
    providers:
      p{k}: {{type: mock, reply: "v{k}", latency: 0.002}}
      q{k}: {{type: mock, reply: "v{k}"}}
    models:
      gpt-4o:
        deployments:
          - {{provider: p{k}, model: m}}
          - {{provider: q{k}, model: m}}
    reload: {{debounce: 0.02, poll_interval: 0.5}}
    """)


async def test_soak_rewrites_under_load_lose_nothing(tmp_path: Path, start_proxy):
    """2,000 requests at 32 concurrent while the file is rewritten 20 times
    (three of them invalid): no failure, and every answer comes from a
    deployment of the config that the request started with (the reply text
    and the deployment id both carry the config version)."""
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(versioned(0))
    proxy = await start_proxy.from_file(cfg)
    reloader = proxy.app[RELOADER]
    total, concurrency = 2000, 32
    results: list[tuple[int, str, str]] = []
    counter = iter(range(total))
    rng = random.Random(5)

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in counter:
            body = STREAM if i % 4 == 0 else CHAT
            status, dep, raw = await post(session, proxy.url, body)
            if body is STREAM:
                events = [orjson.loads(e[6:]) for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
                text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"])
                ok = raw.endswith(b"data: [DONE]\n\n")
                results.append((status if ok else -1, dep, text))
            else:
                results.append((status, dep, orjson.loads(raw)["choices"][0]["message"]["content"]
                                if status == 200 else raw.decode()))

    async def rewriter() -> None:
        invalid = {5, 11, 17}
        for k in range(1, 21):
            text = "models: {broken" if k in invalid else versioned(k)
            cfg.write_text(text)
            await wait_seen(proxy, text)
            await asyncio.sleep(rng.uniform(0.005, 0.03))  # let traffic run on version k

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(rewriter(), *(worker(s) for _ in range(concurrency)))

    assert len(results) == total
    failed = [r for r in results if r[0] != 200]
    assert failed == []
    for _, dep, text in results:
        version = text.removeprefix("v")
        assert dep in (f"p{version}/m", f"q{version}/m"), (dep, text)
    assert reloader.status.failures == 3
    assert reloader.status.reloads == 17
    assert len({text for _, _, text in results}) > 1  # traffic really crossed reloads
    assert all(s.in_flight == 0 for s in proxy.proxy.runtime.router.states.values())

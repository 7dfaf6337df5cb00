"""``llmproxy serve --workers 2``: a real process group on a real port.

The proxy runs as the CLI runs it (a supervisor and two worker processes
sharing the port with SO_REUSEPORT); the upstream is a fake in this test's
process. Which worker answered comes from the ``x-llmproxy-worker`` header.
Every wait polls a condition with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from llmproxy.observe.merge import merge_families
from llmproxy.server.workers import _cgroup_quota, parse_workers, usable_cpus

from .fakes import Reply, openai_stream
from .processes import ROOT, metric, until


async def test_requests_spread_over_both_workers_and_metrics_count_each_once(group) -> None:
    g, fake = await group()
    seen: dict[str, int] = {}
    while len(seen) < 2 or sum(seen.values()) < 20:
        status, worker = await g.chat()
        assert status == 200 and worker in ("0", "1")
        seen[worker] = seen.get(worker, 0) + 1
        assert sum(seen.values()) < 400, seen
    sent = sum(seen.values())
    assert len(fake.seen) == sent
    for _ in range(4):  # any worker's scrape shows the whole group
        text = await g.metrics()
        assert metric(text, "llmproxy_requests_total", gen_ai_request_model="m") == sent
        assert metric(text, "llmproxy_workers") == 2 and metric(text, "llmproxy_workers_answering") == 2
        # Per-worker gauges carry the worker; summed ones do not.
        assert 'llmproxy_breaker_state{deployment="up/gpt-4o",state="closed",worker="0"} 1.0' in text
        assert "sk-upstream-secret" not in text
    status, _, body = await g.get("/admin/deployments")
    doc = orjson.loads(body)
    assert status == 200 and doc["workers_answering"] == 2
    (dep,) = doc["deployments"]
    assert dep["requests"] == sent and sorted(w["worker"] for w in dep["workers"]) == [0, 1]


async def test_a_killed_worker_is_restarted_while_the_other_serves(group) -> None:
    g, _ = await group()
    before = g.children()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)

    async def dead() -> bool:
        return before[0] not in g.children()

    # Connections the kernel had queued on the dead worker's socket are reset
    # with it; once it is gone, the survivor takes every new one.
    await until(dead, "the killed worker to be reaped")
    for _ in range(10):
        status, worker = await g.chat()
        assert status == 200, worker

    async def replaced() -> bool:
        now = g.children()
        return len(now) == 2 and before[0] not in now and await g.both_answer()

    await until(replaced, "the killed worker to be replaced")
    text = await g.metrics()
    assert metric(text, "llmproxy_worker_restarts_total") == 1
    assert "restarting it" in g.log.read_text()


async def test_sighup_and_file_edits_reach_both_workers(group) -> None:
    g, _ = await group()

    async def shas() -> set[str]:
        found: dict[str, str] = {}
        for _ in range(40):
            status, worker, body = await g.get("/admin/config")
            if status == 200 and worker is not None:
                found[worker] = orjson.loads(body)["sha256"]
        return set(found.values()) if len(found) == 2 else set()

    (first,) = await until(shas, "both workers' config")
    g.config.write_text(g.config.read_text().replace("model: gpt-4o}", "model: gpt-4o, weight: 2}"))

    async def both_new() -> bool:
        s = await shas()
        return len(s) == 1 and first not in s

    await until(both_new, "both workers to reload the edited file")
    status, _, body = await g.get("/admin/config")
    assert orjson.loads(body)["config"]["models"]["m"]["deployments"][0]["weight"] == 2
    assert g.proc is not None

    async def reloads() -> float:
        return metric(await g.metrics(), "llmproxy_config_reloads_total", result="success")

    async def counted() -> list[float]:
        return [await reloads()] if await g.both_answer() else []

    (before,) = await until(counted, "the reload counts")
    os.kill(g.proc.pid, signal.SIGHUP)  # forwarded: each worker reloads (forced, same content)

    async def both_reloaded() -> bool:
        return await reloads() == before + 2

    await until(both_reloaded, "both workers to reload on SIGHUP")


async def test_post_admin_reload_reaches_every_worker(group) -> None:
    g, _ = await group()
    async with g.session.post(g.url + "/admin/reload") as resp:
        doc = await resp.json()
    assert resp.status == 200 and sorted(doc["workers"]) == ["0", "1"]
    assert len(set(doc["workers"].values())) == 1


async def test_sigterm_drains_the_whole_group_with_a_stream_in_flight(group) -> None:
    g, fake = await group()
    resume = asyncio.Event()
    fake.script(Reply(stream=openai_stream(["one", "two", "three"]), pause_after=2, resume=resume))
    body = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    async with aiohttp.ClientSession() as s:
        resp = await s.post(g.url + "/v1/chat/completions", data=body,
                            headers={"Content-Type": "application/json"})
        assert resp.status == 200
        await resp.content.readuntil(b"\n\n")
        assert g.proc is not None
        g.proc.send_signal(signal.SIGTERM)

        async def refused() -> bool:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", g.port)
                w.close()
                return False
            except OSError:
                return True

        await until(refused, "both workers to stop accepting")
        assert g.proc.returncode is None  # still draining the stream
        resume.set()
        rest = await resp.read()
        assert b'"three"' in rest and rest.endswith(b"data: [DONE]\n\n")
    assert await asyncio.wait_for(g.proc.wait(), 60) == 0


async def test_limits_are_divided_among_workers_without_shared_state(group) -> None:
    g, fake = await group(deployment=", rpm: 4, queue_timeout: 0")
    status, _, body = await g.get("/admin/deployments")
    (dep,) = orjson.loads(body)["deployments"]
    assert dep["rpm"]["limit"] == 4 and dep["worker_share"]["rpm"] == 2
    results = [await g.chat() for _ in range(12)]
    ok = [w for status, w in results if status == 200]
    assert len(ok) <= 4  # never more than the configured instance-wide limit
    assert all(status in (200, 429) for status, _ in results)
    assert len(fake.seen) == len(ok)


GROUP_KEY = "sk-llmp-group-0123456789abcdef"


@pytest.mark.parametrize("state", ["state: {path: null}", ""])
async def test_keys_and_cache_views_cover_the_whole_group(group, state: str) -> None:
    """Without a state file each worker's spend is its own and the view sums
    them; with one (the default) the workers read each other's spend back from
    it, and the view must not count it twice."""
    g, fake = await group(extra=f"""
    keys: [{{name: team, key: {GROUP_KEY}, budget: {{usd: 1000}}}}]
    cache: {{enabled: true}}
    {state}
    """)
    auth = {"Authorization": f"Bearer {GROUP_KEY}"}
    seen: set[str] = set()
    sent = 0
    while len(seen) < 2 or sent < 10:  # the same body on both workers: each has its own memory cache
        status, worker = await g.chat(auth)
        assert status == 200 and worker is not None
        seen.add(worker)
        sent += 1
        assert sent < 400

    async def keys_count() -> list[int]:
        status, _, body = await g.get("/admin/keys")
        doc = orjson.loads(body)
        assert status == 200 and doc["workers_answering"] == 2
        (team,) = doc["keys"]
        assert team["requests"] <= sent  # never counted twice
        return [team["requests"]] if team["requests"] == sent else []

    for _ in range(4):  # whichever worker answers (the state file is re-read each second)
        await until(keys_count, "/admin/keys to count every request once")
        status, _, body = await g.get("/admin/cache")
        cache = orjson.loads(body)
        assert cache["hits"] + cache["misses"] == sent and cache["misses"] == len(fake.seen) == 2
        assert cache["entries"] == 2  # one per worker
    async with g.session.delete(g.url + "/admin/cache") as resp:
        assert resp.status == 200 and (await resp.json())["flushed"] == 2
    for _ in range(4):
        _, _, body = await g.get("/admin/cache")
        assert orjson.loads(body)["entries"] == 0


async def test_a_worker_that_cannot_start_stops_the_group(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()  # no SO_REUSEPORT: the workers cannot share it
    port = blocker.getsockname()[1]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("providers: {m: {type: mock}}\nmodels: {m: {deployments: [{provider: m, model: x}]}}\n")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "llmproxy", "serve", "--config", str(cfg), "--port", str(port), "--workers", "2",
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        blocker.close()
    assert proc.returncode == 1
    assert b"before it was ready" in err


# --------------------------------------------------------------------------- pure parts


def test_workers_argument() -> None:
    assert parse_workers("3") == 3
    assert parse_workers("auto") == usable_cpus() >= 1
    with pytest.raises(ValueError):
        parse_workers("0")


def test_cgroup_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_quota(tmp_path) is None
    assert _cgroup_quota(tmp_path / "absent") is None


def test_merge_sums_counters_and_keeps_gauges_per_worker() -> None:
    def fams(requests: float, in_flight: float, state: float) -> list[Any]:
        return [
            ["llmproxy_requests", "", "counter", [["llmproxy_requests_total", {"m": "a"}, requests]]],
            ["llmproxy_requests_in_flight", "", "gauge", [["llmproxy_requests_in_flight", {}, in_flight]]],
            ["llmproxy_breaker_state", "", "gauge", [["llmproxy_breaker_state", {"state": "open"}, state]]],
            ["llmproxy_build_info", "", "gauge", [["llmproxy_build_info", {"version": "1"}, 1.0]]],
        ]

    merged = {m.name: m for m in merge_families({0: fams(3, 1, 0), 1: fams(4, 2, 1)})}
    assert [s.value for s in merged["llmproxy_requests"].samples] == [7.0]
    assert [s.value for s in merged["llmproxy_requests_in_flight"].samples] == [3.0]
    assert sorted((s.labels["worker"], s.value) for s in merged["llmproxy_breaker_state"].samples) == [
        ("0", 0.0), ("1", 1.0)]
    assert [s.value for s in merged["llmproxy_build_info"].samples] == [1.0]

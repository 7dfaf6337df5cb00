"""The command line: ``check`` and ``serve`` as real processes, SIGTERM drain included."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import orjson

from .fakes import Reply, openai_stream

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmproxy", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **(env or {})},
    )


def test_check_prints_the_routing_table():
    result = run_cli("check", "configs/llmproxy.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "gpt-4o-mini  (strategy: weighted)" in result.stdout
    assert "local/mock-small: provider local (mock) model mock-small" in result.stdout


def test_check_lists_every_problem_and_exits_1(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""
    providers:
      p: {type: openai, api_key: "${NOT_SET_ANYWHERE}"}
    models:
      m:
        deployments: [{provider: p, model: x, weight: 0}]
    """))
    result = run_cli("check", str(bad))
    assert result.returncode == 1
    assert "providers.p.api_key: environment variable NOT_SET_ANYWHERE is not set" in result.stderr
    assert "models.m.deployments[0].weight: must be a positive number" in result.stderr


def test_serve_refuses_an_invalid_config(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {}\n")
    result = run_cli("serve", "--config", str(bad))
    assert result.returncode == 1
    assert "providers: is required" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_listening(port: int, proc: asyncio.subprocess.Process) -> None:
    for _ in range(600):
        assert proc.returncode is None, "proxy exited early"
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)  # polling a child process; bounded
    raise AssertionError("proxy did not start listening")


async def test_sigterm_drains_an_in_flight_stream_then_exits_0(tmp_path: Path, fake_upstream):
    fake = await fake_upstream()
    resume = asyncio.Event()
    fake.script(Reply(stream=openai_stream(["one", "two", "three"]), pause_after=2, resume=resume))
    port = _free_port()
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(textwrap.dedent(f"""
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: k}}
    models:
      gpt-4o: {{deployments: [{{provider: up, model: gpt-4o}}]}}
    server: {{drain_timeout: 30}}
    """))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmproxy", "serve", "--config", str(cfg), "--port", str(port),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _wait_listening(port, proc)
        async with aiohttp.ClientSession() as s:
            body = orjson.dumps({"model": "gpt-4o", "stream": True,
                                 "messages": [{"role": "user", "content": "x"}]})
            resp = await s.post(f"http://127.0.0.1:{port}/v1/chat/completions", data=body)
            assert resp.status == 200
            await resp.content.readuntil(b"\n\n")
            proc.send_signal(signal.SIGTERM)
            # New connections stop being accepted while the stream is in flight.
            for _ in range(600):
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", port)
                    w.close()
                    await asyncio.sleep(0.05)
                except OSError:
                    break
            else:
                raise AssertionError("listener still open after SIGTERM")
            assert proc.returncode is None
            resume.set()
            rest = await resp.read()
            assert rest.endswith(b"data: [DONE]\n\n")
            assert b'"three"' in rest
        code = await asyncio.wait_for(proc.wait(), 30)
        _, err = await proc.communicate()
        assert code == 0, err.decode()
        assert b"draining" in err
        # INFO lines are written in batches: the last ones (the stream's
        # access line, "stopped") are still written when the process exits.
        records = [orjson.loads(line) for line in err.splitlines() if line.startswith(b"{")]
        access = [r for r in records if r.get("logger") == "llmproxy.access"]
        assert [(r["status"], r["stream"], r["model"]) for r in access] == [(200, True, "gpt-4o")]
        assert records[-1]["msg"] == "stopped"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_readyz_turns_503_while_draining(start_proxy):
    proxy = await start_proxy("""
    providers: {m: {type: mock}}
    models: {x: {deployments: [{provider: m, model: a}]}}
    """)
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/readyz") as r:
            assert r.status == 200
        async with s.get(proxy.url + "/healthz") as r:
            assert r.status == 200
        proxy.proxy.draining = True
        async with s.get(proxy.url + "/readyz") as r:
            assert r.status == 503
            assert (await r.json())["status"] == "draining"
        async with s.get(proxy.url + "/healthz") as r:
            assert r.status == 200

"""The embedded spend store: a real ``llmproxy serve`` SIGKILLed loses at
most the last second; a store that cannot be opened is a WARNING and
memory-only spend, never a proxy that will not start; key config errors;
``llmproxy key new``."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from llmproxy.config.tree import ConfigError, parse_config

from .fakes import Reply, openai_completion
from .test_cli import ROOT, _free_port, _wait_listening

KEY = "sk-llmp-sigkill-0123456789abcdefghij"


def _config(url: str, state: str = "") -> str:
    return textwrap.dedent(f"""
    providers:
      up: {{type: openai, base_url: "{url}/v1", api_key: k}}
    models:
      gpt-4o-mini:
        deployments: [{{provider: up, model: m, price: {{input_per_mtok: 1000000, output_per_mtok: 2000000}}}}]
    keys:
      - name: team
        key: {KEY}
        budget: {{usd: 1000, period: 30d}}
    """) + state


def _stored_usd(db: Path) -> float:
    """Lifetime spend of 'team' as the file holds it now (read by the test, not the proxy)."""
    if not db.exists():
        return 0.0
    con = sqlite3.connect(db)
    try:
        row = con.execute("SELECT usd FROM key_spend WHERE name = 'team' AND period = 0").fetchone()
    except sqlite3.OperationalError:  # the table is not created yet
        return 0.0
    finally:
        con.close()
    return 0.0 if row is None else float(row[0])


async def _serve(cfg: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llmproxy", "serve", "--config", str(cfg), "--port", str(port),
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    await _wait_listening(port, proc)
    return proc


async def _chat(s: aiohttp.ClientSession, port: int) -> aiohttp.ClientResponse:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    async with s.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        await r.read()
        return r


async def test_sigkill_loses_at_most_the_last_unflushed_second(tmp_path: Path, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion()))  # $9 a request at these prices
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(_config(fake.url))  # state.path left at its default: state/llmproxy.db
    db = tmp_path / "state" / "llmproxy.db"
    port = _free_port()
    proc = await _serve(cfg, port)
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                assert (await _chat(s, port)).status == 200
            # Written in the background, within the flush interval, with no
            # shutdown to prompt it.
            for _ in range(400):
                if await asyncio.to_thread(_stored_usd, db) == 27.0:
                    break
                await asyncio.sleep(0.025)  # polling another process's file; bounded
            assert await asyncio.to_thread(_stored_usd, db) == 27.0
            assert (await _chat(s, port)).status == 200  # this one may be lost: it is the last second
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await asyncio.to_thread(_stored_usd, db) in (27.0, 36.0)
    proc = await _serve(cfg, port)
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/admin/keys") as r:
            doc: dict[str, Any] = await r.json()
        (team,) = doc["keys"]
        assert team["spend"]["lifetime"]["usd"] in (27.0, 36.0)
        assert team["spend"]["period"]["usd"] == team["spend"]["lifetime"]["usd"]
        assert doc["store"] == {"path": str(db), "problem": None}
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)


async def test_sigterm_writes_the_last_batch(tmp_path: Path, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion()))
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(_config(fake.url, "state: {path: spend.db}\n"))
    port = _free_port()
    proc = await _serve(cfg, port)
    try:
        async with aiohttp.ClientSession() as s:
            assert (await _chat(s, port)).status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await asyncio.to_thread(_stored_usd, tmp_path / "spend.db") == 9.0


async def test_a_store_that_cannot_be_opened_is_a_warning_and_memory_only(
        start_proxy, fake_upstream, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion()))
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")  # a read-only mount behaves alike: the directory cannot hold the file
    with caplog.at_level(logging.WARNING, logger="llmproxy.keys"):
        proxy = await start_proxy(_config(fake.url, f'state: {{path: "{not_a_dir}/sub/llmproxy.db"}}\n'))
    assert any("memory only" in r.getMessage() for r in caplog.records)
    async with aiohttp.ClientSession() as s:
        assert (await _chat(s, proxy.server.port)).status == 200  # type: ignore[arg-type]
        async with s.get(proxy.url + "/admin/keys") as r:
            doc = await r.json()
    assert doc["store"]["path"] is None and "cannot use" in doc["store"]["problem"]
    assert doc["keys"][0]["spend"]["lifetime"]["usd"] == 9.0


async def test_state_path_null_is_memory_only_without_a_warning(start_proxy, fake_upstream, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture):
    fake = await fake_upstream()
    with caplog.at_level(logging.WARNING, logger="llmproxy.keys"):
        proxy = await start_proxy(_config(fake.url, "state: {path: null}\n"))
    assert proxy.proxy.keys.local.store is None
    assert not caplog.records


# --------------------------------------------------------------------------- config errors


BASE = """
providers:
  p: {type: openai, base_url: "http://127.0.0.1:1", api_key: x}
models:
  gpt-4o-mini: {deployments: [{provider: p, model: m}]}
  claude-3: {deployments: [{provider: p, model: c}]}
server: {api_keys: [plain-key-0123456789abcdef]}
"""


def _problems(keys: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + textwrap.dedent(keys), env=env or {})
    return err.value.problems


def test_key_config_errors_name_the_path():
    problems = _problems(f"""
    keys:
      - name: a
        key: short
        models: [gpt-4o, "claude-[3"]
        budget: {{usd: 5, period: 2d}}
      - name: a
      - name: bad-hex
        key_sha256: {'z' * 64}
      - name: two
        key_sha256: {'a' * 64}
        key: sk-llmp-0123456789abcdef
      - name: same
        key_sha256: {'a' * 64}
      - name: plain-again
        key: plain-key-0123456789abcdef
      - name: api-key-deadbeef
      - name: nobudget
        budget: {{period: 1d}}
        role: root
    """)
    expected = [
        "keys[0].budget.period: must be 1h, 1d, 7d or 30d, got '2d'",
        "keys[0].key: the key has 5 characters; use at least 16 (llmproxy key new NAME makes one)",
        "keys[0].models[0]: unknown model 'gpt-4o' (did you mean 'gpt-4o-mini'?)",
        "keys[0].models[1]: 'claude-[3' has an unclosed '[' (a glob set); write [[] for a literal '['",
        "keys[1].name: duplicate key name 'a' (also keys[0])",
        "keys[2].key_sha256: must be 64 hex digits (a sha256), got 64 characters that are not all hex",
        "keys[3]: set one of key_sha256, key or key_file, not key_sha256 and key",
        "keys[5]: the same key as server.api_keys; each key must be given once",
        "keys[6].name: names starting with 'api-key-' are what server.api_keys entries are called; choose another",
        "keys[7].budget.usd: is required",
        "keys[7].role: must be admin, got 'root'",
    ]
    for p in expected:
        assert p in problems, (p, problems)
    assert not any("plain-key-0123456789abcdef" in p or "sk-llmp-0123456789abcdef" in p for p in problems)


def test_duplicate_hash_unreadable_file_and_missing_env_are_errors(tmp_path: Path):
    problems = _problems(f"""
    keys:
      - name: one
        key_sha256: {'b' * 64}
      - name: two
        key_sha256: {'B' * 64}
      - name: file
        key_file: {tmp_path / "missing.txt"}
      - name: env
        key: ${{NOT_SET}}
    keys_typo: []
    """)
    assert "keys[1]: the same key as keys[0] (one); each key must be given once" in problems
    assert any(p.startswith("keys[2].key_file: cannot read") for p in problems)
    assert "keys[3].key: environment variable NOT_SET is not set" in problems
    assert any(p.startswith("keys_typo: unknown key (did you mean 'keys'?)") for p in problems)


def test_keys_must_be_a_list_and_a_key_is_hashed_at_load():
    assert _problems("keys: {a: 1}\n") == ["keys: must be a list of keys, got a mapping"]
    config = parse_config(BASE + "keys: [{name: k, key: '${K}', models: ['claude-*']}]\n",
                          env={"K": "sk-llmp-0123456789abcdef"})
    (k,) = config.keys
    assert k.key_sha256 == hashlib.sha256(b"sk-llmp-0123456789abcdef").hexdigest()
    assert k.key_text == "hashed" and "sk-llmp-0123456789abcdef" not in repr(config)


def test_prices_file_errors():
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + "prices_file: /nonexistent/prices.json\n")
    assert any(p.startswith("prices_file: cannot read /nonexistent/prices.json") for p in err.value.problems)


def test_key_new_prints_a_key_its_hash_and_an_entry():
    out = subprocess.run([sys.executable, "-m", "llmproxy", "key", "new", "search-team"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    key = lines[0].removeprefix("key:    ")
    digest = lines[1].removeprefix("sha256: ")
    assert key.startswith("sk-llmp-") and len(key) >= 50
    assert hashlib.sha256(key.encode()).hexdigest() == digest
    entry = "\n".join(line for line in lines if line.startswith("  "))
    config = parse_config(BASE + "keys:\n" + entry + "\n")
    assert config.keys[0].name == "search-team" and config.keys[0].key_sha256 == digest
    bad = subprocess.run([sys.executable, "-m", "llmproxy", "key", "new", "bad name"], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "not a key name" in bad.stderr

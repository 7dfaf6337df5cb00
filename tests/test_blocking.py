"""The event loop never blocks on llmproxy's own code: the autouse detector
(tests/conftest.py) is live, and config parsing with its secret-file reads
runs off the loop at start-up and on every reload."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from blockbuster import BlockingError

from llmproxy.config.tree import load_config, parse_config
from llmproxy.router import Router, StateRegistry

from .fakes import Reply, openai_completion

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def secret_config(tmp_path: Path, url: str, key: str) -> Path:
    (tmp_path / "key").write_text(key + "\n")
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(f"""
reload: {{enabled: false, poll_interval: 3600}}
providers:
  up: {{type: openai, base_url: "{url}", api_key_file: key}}
models:
  gpt-4o: {{deployments: [{{provider: up, model: gpt-4o}}]}}
""")
    return cfg


async def test_detector_catches_a_secret_file_read_on_the_loop(tmp_path: Path, fake_upstream):
    fake = await fake_upstream()
    cfg = secret_config(tmp_path, fake.url, "sk-file")
    with pytest.raises(BlockingError):
        load_config(cfg)
    with pytest.raises(BlockingError):
        parse_config(cfg.read_bytes(), base_dir=tmp_path)
    # The same work in a worker thread is what the proxy does.
    config = await asyncio.to_thread(load_config, cfg)
    assert config.providers["up"].api_key == "sk-file"


async def test_detector_catches_a_sleep_in_llmproxy_code(tmp_path: Path):
    config = await asyncio.to_thread(parse_config, """
providers: {m: {type: mock}}
models: {x: {deployments: [{provider: m, model: a}]}}
""")

    def sleepy_clock() -> float:
        time.sleep(0)  # called from llmproxy's router frames, on the loop
        return 0.0

    with pytest.raises(BlockingError, match="time.sleep"):
        Router(config, StateRegistry(sleepy_clock))
    # Outside a running loop the detector stays out of the way.
    await asyncio.to_thread(Router, config, StateRegistry(sleepy_clock))


async def test_secret_files_are_read_off_the_loop_at_start_and_on_reload(tmp_path: Path, start_proxy,
                                                                         fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion()), Reply(json=openai_completion()))
    cfg = secret_config(tmp_path, fake.url, "sk-first")
    proxy = await start_proxy.from_file(cfg)
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.v1 + "/chat/completions", json=CHAT) as r:
            assert r.status == 200, await r.text()
        (tmp_path / "key").write_text("sk-second\n")
        async with s.post(proxy.url + "/admin/reload") as r:  # loopback door: no admin token needed
            assert r.status == 200, await r.text()
        async with s.post(proxy.v1 + "/chat/completions", json=CHAT) as r:
            assert r.status == 200, await r.text()
    assert [seen.headers["Authorization"] for seen in fake.seen] == ["Bearer sk-first", "Bearer sk-second"]

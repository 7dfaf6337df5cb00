"""Shared fixtures: the real proxy app on a real port, and fake upstreams."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from blockbuster import BlockBuster, blockbuster_ctx

from llmproxy.config.tree import load_config, parse_config
from llmproxy.server.app import create_app
from llmproxy.server.protocol import ProxyRunner
from llmproxy.server.runtime import PROXY, Proxy

from .fakes import FakeUpstream
from .processes import Group
from .redis_server import RedisServer


class ProxyTestServer(TestServer):
    """``TestServer`` with the runner ``serve()`` uses: the connection's own
    time bounds and error rendering (llmproxy.protocol) apply in tests too."""

    async def _make_runner(self, **kwargs: Any) -> ProxyRunner:
        return ProxyRunner(self.app, **kwargs)


@dataclass
class RunningProxy:
    server: TestServer
    app: web.Application

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    @property
    def proxy(self) -> Proxy:
        return self.app[PROXY]


StartProxy = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test in which llmproxy's own code blocks the event loop (a file
    read, a sleep, a blocking socket call), as aiohttp's own suite does. Only
    calls with an llmproxy frame on the stack count: the tests' own setup
    (writing a config file, a fake upstream's fixture) is not the proxy's hot
    path, and code in a worker thread (asyncio.to_thread) has no loop to block."""
    with blockbuster_ctx("llmproxy") as bb:
        yield bb


@pytest.fixture
async def start_proxy() -> AsyncIterator[StartProxy]:
    servers: list[TestServer] = []

    # Parsing reads files (api_key_file): off the loop, as the reloader does.
    async def start(yaml_text: str, env: dict[str, str] | None = None,
                    clock: Callable[[], float] = time.monotonic) -> RunningProxy:
        config = await asyncio.to_thread(parse_config, textwrap.dedent(yaml_text), env=env or {})
        app = create_app(config, clock=clock)
        server = ProxyTestServer(app, host="127.0.0.1", handler_cancellation=True)
        await server.start_server()
        servers.append(server)
        return RunningProxy(server, app)

    async def start_file(path: str) -> RunningProxy:
        app = create_app(await asyncio.to_thread(load_config, path), config_path=str(path))
        server = ProxyTestServer(app, host="127.0.0.1", handler_cancellation=True)
        await server.start_server()
        servers.append(server)
        return RunningProxy(server, app)

    start.from_file = start_file  # type: ignore[attr-defined]
    yield start
    for s in servers:
        await s.close()


@pytest.fixture
async def fake_upstream() -> AsyncIterator[Callable[[], Awaitable[FakeUpstream]]]:
    fakes: list[FakeUpstream] = []

    async def make() -> FakeUpstream:
        fake = await FakeUpstream().start()
        fakes.append(fake)
        return fake

    yield make
    for f in fakes:
        await f.close()


@pytest.fixture
async def openai_client() -> AsyncIterator[Callable[[RunningProxy], openai.AsyncOpenAI]]:
    """Real async OpenAI SDK clients pointed at a proxy, closed after the test."""
    import openai

    clients: list[openai.AsyncOpenAI] = []

    def make(proxy: RunningProxy, api_key: str = "client-key") -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=proxy.v1, api_key=api_key, max_retries=0)
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


@pytest.fixture(scope="session")
def _shared_redis() -> Iterator[RedisServer]:

    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_url(_shared_redis: RedisServer) -> str:
    """The URL of the session's real redis-server, emptied for this test."""
    assert _shared_redis.command("FLUSHALL") == b"+OK"
    return _shared_redis.url


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Servers of the test's own, for stopping and restarting (outages)."""

    servers: list[RedisServer] = []

    def make(password: str | None = None) -> RedisServer:
        server = RedisServer(password=password).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


@pytest.fixture
async def group(tmp_path: Path, fake_upstream: Callable[[], Awaitable[FakeUpstream]]
                ) -> AsyncIterator[Callable[..., Awaitable[tuple[Group, FakeUpstream]]]]:
    """Real ``llmproxy serve`` processes (tests/processes.py) on one fake upstream
    (``fake=``: share one between several groups); ``workers=1`` is a plain process."""
    groups: list[Group] = []

    async def make(extra: str = "", deployment: str = "", workers: int = 2, name: str = "llmproxy",
                   fake: FakeUpstream | None = None) -> tuple[Group, FakeUpstream]:
        fake = fake or await fake_upstream()
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(textwrap.dedent(f"""
        providers:
          up: {{type: openai, base_url: "{fake.url}/v1", api_key: sk-upstream-secret}}
        models:
          m: {{deployments: [{{provider: up, model: gpt-4o{deployment}}}]}}
        reload: {{debounce: 0.05, poll_interval: 1}}
        server: {{drain_timeout: 30}}
        logging: {{level: warning}}
        """) + textwrap.dedent(extra))
        g = Group(cfg, tmp_path / f"{name}.log", workers=workers)
        groups.append(g)
        try:
            await g.start()
        except BaseException:
            await g.stop()
            print(g.log.read_text(errors="replace"))
            raise
        return g, fake

    yield make
    for g in groups:
        await g.stop()

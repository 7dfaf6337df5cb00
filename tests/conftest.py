"""Shared fixtures: the real proxy app on a real port, and fake upstreams."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from llmproxy.config import load_config, parse_config
from llmproxy.protocol import ProxyRunner
from llmproxy.runtime import PROXY, Proxy
from llmproxy.server import create_app

from .fakes import FakeUpstream


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


@pytest.fixture
async def start_proxy() -> AsyncIterator[StartProxy]:
    servers: list[TestServer] = []

    async def start(yaml_text: str, env: dict[str, str] | None = None) -> RunningProxy:
        config = parse_config(textwrap.dedent(yaml_text), env=env or {})
        app = create_app(config)
        server = ProxyTestServer(app, host="127.0.0.1", handler_cancellation=True)
        await server.start_server()
        servers.append(server)
        return RunningProxy(server, app)

    async def start_file(path: str) -> RunningProxy:
        app = create_app(load_config(path), config_path=str(path))
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
async def openai_client() -> AsyncIterator[Callable[[RunningProxy], "openai.AsyncOpenAI"]]:
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

"""The live state of a running proxy, shared through one ``AppKey``.

``Runtime`` is immutable routing built from one ``Config``; ``Proxy`` holds the
current ``Runtime`` behind a single reference that a reload swaps. A request
reads ``proxy.runtime`` once at its start and keeps that object, so it
finishes on the config it started with whatever happens meanwhile.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable

from aiohttp import web

from ..config.tree import Config
from ..keys.service import KeyService
from ..keys.table import key_table
from ..router import Router, StateRegistry
from ..upstream import Upstream
from .workers import WorkerInfo


class Runtime:
    __slots__ = ("config", "router", "keys", "loaded_at")

    def __init__(self, config: Config, registry: StateRegistry) -> None:
        self.config = config
        self.router = Router(config, registry)
        self.keys = key_table(config)
        self.loaded_at = time.time()


class Proxy:
    def __init__(self, config: Config, config_path: str | None = None,
                 clock: Callable[[], float] = time.monotonic, worker: WorkerInfo | None = None) -> None:
        self.config_path = config_path
        # In a --workers group: which worker this is (the x-llmproxy-worker
        # header), and how many share the configured limits.
        self.worker = worker
        self.worker_name = worker.name if worker is not None else None
        # The one clock of every breaker, cool-down, rate limiter and retry
        # budget (through the registry), so a test can drive them all at once.
        self.clock = clock
        self.registry = StateRegistry(clock, worker.count if worker is not None else 1)
        self.runtime = Runtime(config, self.registry)
        # Per-key counters and spend, keyed by key name: they outlive reloads.
        self.keys = KeyService(clock, workers=worker.count if worker is not None else 1)
        self.upstream = Upstream(config.pool)
        self.draining = False
        # The address ``serve`` listens on (the CLI's --host/--port win over
        # the config's ``listen``); None until then, e.g. under a test server.
        self.listening: tuple[str, int] | None = None
        self.started_at = time.time()
        # Request ids: a random per-process prefix and a counter, unique across
        # pods for log correlation and far cheaper than uuid4 per request.
        self._id_prefix = os.urandom(6).hex() if worker is None else f"{os.urandom(5).hex()}w{worker.index}"
        self._ids = itertools.count(1)

    def new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):010x}"

    def swap(self, config: Config) -> Runtime:
        self.runtime = Runtime(config, self.registry)
        self.keys.reconfigured(self.runtime.keys)
        return self.runtime


PROXY = web.AppKey("llmproxy.proxy", Proxy)
REQUEST_ID = web.RequestKey("llmproxy.request_id", str)

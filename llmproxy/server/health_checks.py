"""Active health checks: one supervised probe loop per probed deployment.

Invariants:
- one probe at a time per deployment: the loop awaits each probe before it
  waits ``interval`` for the next, so a slow upstream stretches the period,
  never piles up probes;
- a failed probe counts toward the breaker like a failed request (closed:
  one more failure; half-open: it takes the probe slot and re-opens); a
  passing probe closes a half-open breaker by taking its probe slot, so a
  deployment that went down and came back is routed to again without
  client traffic. An open breaker keeps its cooldown: probes cannot
  shorten it, and a passing probe while closed changes nothing (the models
  list answering says little about completions failing);
- ``sync(config)`` after every applied config restarts the loops of
  deployments whose config changed and only those; loops of removed
  deployments stop; each loop runs under ``reload.supervise`` (a crash is
  logged and the loop restarted with backoff);
- results live on the deployment's ``DeploymentState.health`` (kept across
  reloads with the state), errors redacted before they are stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ..config.tree import Config, DeploymentConfig
from ..observe.metrics import Metrics
from ..resilience.breaker import CLOSED, HALF_OPEN
from ..router.state import HealthStatus
from ..upstream.probe import ProbeResult, probe
from .reload import supervise
from .runtime import PROXY, Proxy

log = logging.getLogger("llmproxy.health")


class _Loop:
    __slots__ = ("config", "stop", "task")

    def __init__(self, config: DeploymentConfig, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.config = config
        self.stop = stop
        self.task = task


class HealthChecker:
    def __init__(self, proxy: Proxy, redact: Callable[[str], str] = lambda s: s,
                 metrics: Metrics | None = None) -> None:
        self.proxy = proxy
        self.redact = redact
        self.metrics = metrics
        self._loops: dict[str, _Loop] = {}
        self.running = False

    def sync(self, config: Config) -> None:
        """Probe loops for ``config``: kept where the deployment is unchanged."""
        if not self.running:
            return
        wanted = {d.id: d for d in config.deployments() if d.health_check.active(d.provider.type)}
        for dep_id in list(self._loops):
            loop = self._loops[dep_id]
            if wanted.get(dep_id) != loop.config or loop.task.done():
                self._stop(dep_id)
        for dep_id, dep in wanted.items():
            if dep_id not in self._loops:
                self._start(dep)

    def loops(self) -> dict[str, asyncio.Task[None]]:
        """The running probe tasks by deployment id (for the admin view and tests)."""
        return {i: loop.task for i, loop in self._loops.items()}

    def _start(self, dep: DeploymentConfig) -> None:
        stop = asyncio.Event()

        async def run(stop: asyncio.Event) -> None:
            await self._probe_loop(dep, stop)

        task = asyncio.create_task(supervise(f"health check {dep.id}", run, stop),
                                   name=f"llmproxy health check {dep.id}")
        self._loops[dep.id] = _Loop(dep, stop, task)

    def _stop(self, dep_id: str) -> None:
        loop = self._loops.pop(dep_id)
        loop.stop.set()
        loop.task.cancel()

    async def _probe_loop(self, dep: DeploymentConfig, stop: asyncio.Event) -> None:
        hc = dep.health_check
        while not stop.is_set():
            result = await probe(self.proxy.upstream, dep, hc.kind, hc.timeout)
            self.record(dep.id, result)
            try:
                await asyncio.wait_for(stop.wait(), hc.interval)
            except TimeoutError:
                pass

    def record(self, dep_id: str, result: ProbeResult) -> None:
        state = self.proxy.runtime.router.states.get(dep_id)
        if state is None:  # removed by a reload while the probe ran
            return
        health = state.health
        if health is None:
            health = state.health = HealthStatus()
        was_ok = health.ok
        error = None if result.error is None else self.redact(result.error)
        health.record(result.ok, result.latency, error, time.time())
        if self.metrics is not None:
            self.metrics.health_check(dep_id, result.ok)
        breaker = state.breaker
        current = breaker.state
        if result.ok:
            if current == HALF_OPEN and breaker.allow():
                breaker.success()
        elif current == CLOSED:
            breaker.failure()
        elif current == HALF_OPEN and breaker.allow():
            breaker.failure()
        # Transitions only: a probe every few seconds must not flood the log.
        if not result.ok and was_ok is not False:
            log.warning("health check of %s failed: %s", dep_id, error)
        elif result.ok and was_ok is False:
            log.info("health check of %s passes again", dep_id)

    async def close(self) -> None:
        self.running = False
        tasks = [loop.task for loop in self._loops.values()]
        for dep_id in list(self._loops):
            self._stop(dep_id)
        await asyncio.gather(*tasks, return_exceptions=True)


HEALTH_CHECKS = web.AppKey("llmproxy.health_checks", HealthChecker)


async def health_checks_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the probe loops run while the app does (after the upstream session opened)."""
    checker = app[HEALTH_CHECKS]
    checker.running = True
    checker.sync(app[PROXY].runtime.config)
    try:
        yield
    finally:
        await checker.close()

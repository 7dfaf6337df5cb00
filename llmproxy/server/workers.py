"""``llmproxy serve --workers N``: one supervisor, N worker processes.

The supervisor does no proxying. It starts N copies of ``llmproxy serve``
(each a whole, ordinary proxy process) that listen on the same address with
``SO_REUSEPORT``, so the kernel spreads connections over them; it restarts a
worker that dies (with backoff, logged and counted), hands SIGHUP to every
worker, and turns SIGTERM/SIGINT into a drain of the whole group: each
worker stops accepting, answers 503 on /readyz, finishes what is in flight
within ``server.drain_timeout`` and exits; the supervisor exits 0 when they
all did.

Workers learn their place from the environment (``WorkerInfo.from_env``):
their index, the count, and a private directory (mode 0700) holding each
worker's unix socket, on which siblings ask one another for their figures
(``server.siblings``), and the supervisor's own counts (``supervisor.json``).

Invariants:
- a worker that exits before it ever became ready at start-up (a port in
  use, a config that cannot start) stops the group with exit status 1: a
  restart loop would only repeat the error;
- after that, a dead worker is always restarted; the delay doubles from
  0.5 s to 10 s and drops back once a worker has lived 30 s;
- the supervisor never holds the listening socket, so a worker's connections
  are the worker's alone, and a drain closes them all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("llmproxy.workers")

ENV_INDEX, ENV_COUNT, ENV_DIR = "LLMPROXY_WORKER_INDEX", "LLMPROXY_WORKERS", "LLMPROXY_WORKER_DIR"
STATUS_FILE = "supervisor.json"
WORKER_HEADER = "x-llmproxy-worker"  # on every answer of a worker: which one answered
FIRST_BACKOFF, MAX_BACKOFF, STABLE_AFTER = 0.5, 10.0, 30.0
# What a drain may take beyond drain_timeout (interpreter exit, flushing
# state) before the supervisor kills what is left.
DRAIN_MARGIN = 10.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """This process's place in a ``--workers`` group."""

    index: int
    count: int
    dir: Path

    @property
    def name(self) -> str:
        return str(self.index)

    def socket(self, index: int) -> Path:
        return self.dir / f"worker-{index}.sock"

    def ready_marker(self) -> Path:
        return self.dir / f"worker-{self.index}.ready"

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> WorkerInfo | None:
        try:
            index, count, where = int(env[ENV_INDEX]), int(env[ENV_COUNT]), env[ENV_DIR]
        except (KeyError, ValueError):
            return None
        if count < 2 or not 0 <= index < count:
            return None
        return cls(index, count, Path(where))


def usable_cpus() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup
    CPU quota (a container's ``resources.limits.cpu``), rounded up."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs the cgroup allows (quota / period), or None for no quota."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        q = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        p = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if q <= 0 or p <= 0 else q / p
    except (OSError, ValueError):
        return None


def parse_workers(value: str) -> int:
    """``--workers``: a positive count or ``auto`` (usable cores)."""
    if value == "auto":
        return usable_cpus()
    n = int(value)
    if n < 1:
        raise ValueError("must be at least 1")
    return n


class Supervisor:
    def __init__(self, argv: Sequence[str], count: int, drain_timeout: float) -> None:
        self.argv = list(argv)  # the worker's command line
        self.count = count
        self.drain_timeout = drain_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="llmproxy-workers-"))  # 0700
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self.stopping = False
        self.failed_start = False
        self._stop = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        self._write_status()
        log.info("supervisor %d: starting %d workers", os.getpid(), self.count)
        slots = [asyncio.create_task(self._slot(i)) for i in range(self.count)]
        try:
            await self._stop.wait()
        finally:
            self.stopping = True
            self._forward(signal.SIGTERM)
            log.info("supervisor: draining %d workers (up to %gs)", len(self.procs), self.drain_timeout)
            codes = await self._reap(slots)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.failed_start:
            return 1
        return 0 if all(c == 0 for c in codes) else 1

    async def _slot(self, index: int) -> int:
        """Keep worker ``index`` running until the group stops; its last exit status."""
        delay = FIRST_BACKOFF
        ever_ready = False
        env = {**os.environ, ENV_INDEX: str(index), ENV_COUNT: str(self.count), ENV_DIR: str(self.dir)}
        marker = self.dir / f"worker-{index}.ready"
        while True:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(*self.argv, env=env)
            self.procs[index] = proc
            code = await proc.wait()
            ever_ready = ever_ready or marker.exists()
            if self.stopping:
                return code
            if not ever_ready:
                log.error("worker %d exited with status %d before it was ready; stopping", index, code)
                self.failed_start = True
                self._stop.set()
                return code
            self.restarts += 1
            self._write_status()
            if time.monotonic() - started > STABLE_AFTER:
                delay = FIRST_BACKOFF
            log.error("worker %d (pid %d) exited with status %d; restarting it in %gs (restart %d)",
                      index, proc.pid, code, delay, self.restarts)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                return code
            except TimeoutError:
                pass
            delay = min(delay * 2, MAX_BACKOFF)

    def _forward(self, sig: int) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    async def _reap(self, slots: list[asyncio.Task[int]]) -> list[int]:
        done, pending = await asyncio.wait(slots, timeout=self.drain_timeout + DRAIN_MARGIN)
        if pending:
            log.error("supervisor: %d workers still running after the drain; killing them", len(pending))
            for proc in self.procs.values():
                if proc.returncode is None:
                    proc.kill()
            await asyncio.wait(pending)
        return [t.result() if not t.cancelled() and t.exception() is None else 1 for t in slots]

    def _write_status(self) -> None:
        # Small and rare (start, each restart): written in place of a rename
        # dance, read by workers at scrape time.
        tmp = self.dir / (STATUS_FILE + ".tmp")
        tmp.write_text(json.dumps({"workers": self.count, "restarts": self.restarts, "pid": os.getpid()}))
        os.replace(tmp, self.dir / STATUS_FILE)


def worker_argv(config: str, host: str, port: int, log_level: str | None) -> list[str]:
    argv = [sys.executable, "-m", "llmproxy"]
    if log_level:
        argv += ["--log-level", log_level]
    return [*argv, "serve", "--config", config, "--host", host, "--port", str(port)]


def run_supervisor(config: str, host: str, port: int, count: int, drain_timeout: float,
                   log_level: str | None) -> int:
    supervisor = Supervisor(worker_argv(config, host, port, log_level), count, drain_timeout)
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(supervisor.run())

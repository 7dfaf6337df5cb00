"""Hot reload: watch the config, validate a new tree, swap one reference.

Invariants:
- validate first, swap second: an invalid file (bad YAML, schema error,
  unknown provider, missing env var or secret file) never replaces a working
  config; the error is logged at ERROR and kept for ``GET /admin/config``;
- the *directory* is watched, not the file: editors save by rename and a
  Kubernetes ConfigMap volume swaps a ``..data`` symlink, so the file's own
  inode never sees a write. Any event there triggers a content-hash check of
  the path as it resolves now; a periodic hash check catches what the
  watcher misses, so a lost event delays a reload by seconds, never forever;
- in-flight requests keep the ``Runtime`` they started with;
- settings that only apply at start (``listen``, ``defaults.upstream``) are
  reported as needing a restart, not half-applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import watchfiles
from aiohttp import web

from .config import Config, ConfigError, parse_config
from .config_views import summarize
from .observe import reloaded
from .runtime import PROXY, Proxy

log = logging.getLogger("llmproxy.reload")


@dataclass
class ReloadStatus:
    reloads: int = 0
    failures: int = 0
    last_error: list[str] | None = None
    last_error_at: float | None = None
    last_attempt_at: float | None = None


class Reloader:
    def __init__(self, proxy: Proxy, path: str,
                 on_result: Callable[[Config | None], None] | None = None) -> None:
        self.proxy = proxy
        self.on_result = on_result  # called with the new config, or None when one was rejected
        self.path = Path(path)
        self.status = ReloadStatus()
        self._lock = asyncio.Lock()
        self.last_seen_sha = proxy.runtime.config.sha256

    async def reload(self, reason: str, *, force: bool = False) -> bool:
        """Load, validate and swap. True when a new config is now serving.

        Without ``force``, content already looked at (served, or rejected and
        reported) is skipped, so the watcher and the poll never double-report.
        """
        async with self._lock:
            raw = await self._read()
            if raw is None:
                return False
            sha = hashlib.sha256(raw).hexdigest()
            if not force and sha == self.last_seen_sha:
                return False
            self.status.last_attempt_at = time.time()
            for _ in range(3):
                try:
                    config = parse_config(raw, source=str(self.path), base_dir=self.path.parent)
                    break
                except ConfigError as exc:
                    problems = exc.problems
                # An in-place write (not a rename) can be caught half done:
                # only report content that is still there a moment later.
                await asyncio.sleep(max(self.proxy.runtime.config.reload.debounce, 0.05))
                again = await self._read()
                if again is None or again == raw:
                    self._rejected(problems, reason)
                    self.last_seen_sha = sha
                    return False
                raw, sha = again, hashlib.sha256(again).hexdigest()
            else:
                self._rejected(problems, reason)
                self.last_seen_sha = sha
                return False
            self._warn_restart_only(config)
            self.proxy.swap(config)
            if self.on_result is not None:
                self.on_result(config)
            self.status.reloads += 1
            self.status.last_error = None
            self.last_seen_sha = sha
            log.info("config reloaded (%s, sha256 %s): %s", reason, sha[:12], summarize(config))
            return True

    async def _read(self) -> bytes | None:
        try:
            return await asyncio.to_thread(self.path.read_bytes)
        except OSError as exc:
            self._rejected([f"{self.path}: cannot read config: {exc.strerror or exc}"], "read")
            return None

    def _rejected(self, problems: list[str], reason: str) -> bool:
        if self.on_result is not None:
            self.on_result(None)
        self.status.failures += 1
        self.status.last_error = problems
        self.status.last_error_at = time.time()
        log.error(
            "config reload (%s) rejected; the previous config keeps serving:\n%s",
            reason, "\n".join(f"  - {p}" for p in problems),
        )
        return False

    def _warn_restart_only(self, new: Config) -> None:
        old = self.proxy.runtime.config
        if (old.server.host, old.server.port) != (new.server.host, new.server.port):
            log.warning(
                "listen changed from %s:%d to %s:%d: this needs a restart; still listening on the old address",
                old.server.host, old.server.port, new.server.host, new.server.port,
            )
        if old.pool != new.pool:
            log.warning("defaults.upstream changed: the connection pool settings apply after a restart")

    async def _maybe_reload(self, reason: str) -> None:
        await self.reload(reason)

    async def watch(self, stop: asyncio.Event) -> None:
        config = self.proxy.runtime.config
        directory = self.path.parent.resolve() if not self.path.parent.is_symlink() else self.path.parent
        debounce_ms = max(int(config.reload.debounce * 1000), 1)
        try:
            async for _changes in watchfiles.awatch(
                directory, watch_filter=None, debounce=debounce_ms, step=min(50, debounce_ms),
                stop_event=stop, recursive=False, ignore_permission_denied=True,
            ):
                await self._maybe_reload("file changed")
        except (OSError, RuntimeError) as exc:  # e.g. inotify limits; the poll still runs
            log.warning("cannot watch %s (%s); relying on the periodic check", directory, exc)

    async def poll(self, stop: asyncio.Event) -> None:
        interval = self.proxy.runtime.config.reload.poll_interval
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                await self._maybe_reload("periodic check")
            interval = self.proxy.runtime.config.reload.poll_interval


RELOADER = web.AppKey("llmproxy.reloader", Reloader)


async def reload_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: watcher, poller and SIGHUP for a proxy started from a file."""
    proxy = app[PROXY]
    if proxy.config_path is None:
        yield
        return
    reloader = Reloader(proxy, proxy.config_path, on_result=lambda config: reloaded(app, config))
    app[RELOADER] = reloader
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(reloader.poll(stop))]
    if proxy.runtime.config.reload.enabled:
        tasks.append(asyncio.create_task(reloader.watch(stop)))
    loop = asyncio.get_running_loop()
    background: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        task = asyncio.create_task(reloader.reload("SIGHUP", force=True))
        background.add(task)
        task.add_done_callback(background.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        hup = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        hup = False
    try:
        yield
    finally:
        stop.set()
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *background, return_exceptions=True)

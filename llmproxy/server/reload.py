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
- the file is parsed and validated in a worker thread: a large file costs
  CPU, never the event loop's responsiveness;
- nothing ends the watching: an unexpected exception in one attempt is a
  rejected reload (logged, kept in ``last_error``), and a watcher or poller
  task that dies anyway is logged and restarted after a short backoff;
- settings that only apply at start (``listen``, ``defaults.upstream``,
  ``state.path``, ``state.redis``) are
  reported as needing a restart, not half-applied;
- every attempt that looked at new content, accepted or rejected, writes one
  line on the ``llmproxy.audit`` logger (source, sha256, the previous
  sha256, the outcome); every applied config enters the config history
  (``config_history.py``) with its raw bytes, from which ``rollback``
  re-applies an earlier one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import watchfiles
from aiohttp import web

from ..cache.response_cache import RESPONSE_CACHE
from ..config.tree import Config, ConfigError, parse_config, read_config_bytes
from ..config.views import summarize
from ..observe.observation import reloaded
from .config_history import CONFIG_HISTORY, SOURCES, ConfigHistory
from .response_store import backend_of
from .runtime import PROXY, Proxy

log = logging.getLogger("llmproxy.reload")
audit = logging.getLogger("llmproxy.audit")


@dataclass(frozen=True)
class RollbackResult:
    config: Config
    written: bool  # the file now holds it too
    note: str  # what happened to the file, for the operator


@dataclass
class ReloadStatus:
    reloads: int = 0
    failures: int = 0
    last_error: list[str] | None = None
    last_error_at: float | None = None
    last_attempt_at: float | None = None


class Reloader:
    def __init__(self, proxy: Proxy, path: str,
                 on_result: Callable[[Config | None], None] | None = None,
                 history: ConfigHistory | None = None) -> None:
        self.proxy = proxy
        self.history = history
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
                    config = await asyncio.to_thread(
                        parse_config, raw, source=str(self.path), base_dir=self.path.parent
                    )
                    break
                except ConfigError as exc:
                    problems = exc.problems
                except Exception as exc:  # a bug of ours, never a reason to stop watching
                    log.error("config reload (%s): unexpected error while validating", reason, exc_info=True)
                    self._rejected([_unexpected(exc)], reason, sha)
                    self.last_seen_sha = sha
                    return False
                # An in-place write (not a rename) can be caught half done:
                # only report content that is still there a moment later.
                await asyncio.sleep(max(self.proxy.runtime.config.reload.debounce, 0.05))
                again = await self._read()
                if again is None or again == raw:
                    self._rejected(problems, reason, sha)
                    self.last_seen_sha = sha
                    return False
                raw, sha = again, hashlib.sha256(again).hexdigest()
            else:
                self._rejected(problems, reason, sha)
                self.last_seen_sha = sha
                return False
            self.last_seen_sha = sha
            return self._apply(config, raw, reason)

    def _apply(self, config: Config, raw: bytes, reason: str) -> bool:
        """Swap in a validated config (the caller holds the lock)."""
        previous = self.proxy.runtime.config.sha256
        try:
            self._warn_restart_only(config)
            self.proxy.swap(config)
        except Exception as exc:  # building the new routing failed: the old one still serves
            log.error("config reload (%s): unexpected error while applying", reason, exc_info=True)
            self._rejected([_unexpected(exc)], reason, config.sha256)
            return False
        if self.history is not None:
            self.history.record(config, raw, reason)
        if self.on_result is not None:
            try:
                self.on_result(config)
            except Exception:  # observability follows on; the new config already serves
                log.exception("config reload (%s): updating metrics and logs failed", reason)
        self.status.reloads += 1
        self.status.last_error = None
        audit.info("config reload accepted: source=%s sha256=%s previous=%s",
                   SOURCES.get(reason, reason), config.sha256, previous)
        log.info("config reloaded (%s, sha256 %s): %s", reason, config.sha256[:12], summarize(config))
        return True

    async def rollback(self, raw: bytes) -> RollbackResult | list[str]:
        """Re-apply ``raw`` (an earlier config's bytes, from the history);
        write it back to the file when the file is writable. The problems
        when it no longer validates (an env var or secret file it names is gone)."""
        async with self._lock:
            sha = hashlib.sha256(raw).hexdigest()
            self.status.last_attempt_at = time.time()
            try:
                config = await asyncio.to_thread(
                    parse_config, raw, source=str(self.path), base_dir=self.path.parent
                )
            except ConfigError as exc:
                self._rejected(exc.problems, "rollback", sha)
                return exc.problems
            if not self._apply(config, raw, "rollback"):
                return self.status.last_error or []
            try:
                await asyncio.to_thread(_write_back, self.path, raw)
            except OSError as exc:
                # The file keeps what it holds: its content stays "seen", so
                # only a new change to it replaces the rollback.
                note = (f"held in memory: cannot write {self.path} ({exc.strerror or exc}); the file still "
                        "holds the previous config, and the next change to it (or a forced reload) replaces "
                        "this one")
                log.warning("config rollback to sha256 %s: %s", sha[:12], note)
                return RollbackResult(config, False, note)
            self.last_seen_sha = sha  # written under the lock: the watcher sees nothing new
            return RollbackResult(config, True, f"written to {self.path}")

    async def _read(self) -> bytes | None:
        try:
            return await asyncio.to_thread(read_config_bytes, self.path)
        except OSError as exc:
            self._rejected([f"{self.path}: cannot read config: {exc.strerror or exc}"], "read")
            return None

    def _rejected(self, problems: list[str], reason: str, sha: str | None = None) -> bool:
        if self.on_result is not None:
            try:
                self.on_result(None)
            except Exception:
                log.exception("config reload (%s): recording the rejection failed", reason)
        self.status.failures += 1
        self.status.last_error = problems
        self.status.last_error_at = time.time()
        log.error(
            "config reload (%s) rejected; the previous config keeps serving:\n%s",
            reason, "\n".join(f"  - {p}" for p in problems),
        )
        audit.info("config reload rejected: source=%s sha256=%s serving=%s problems=%d",
                   SOURCES.get(reason, reason), sha or "-", self.proxy.runtime.config.sha256, len(problems))
        return False

    def _warn_restart_only(self, new: Config) -> None:
        old = self.proxy.runtime.config
        if (old.server.host, old.server.port) != (new.server.host, new.server.port):
            # The address really listened on: --host/--port may override the config's.
            host, port = self.proxy.listening or (old.server.host, old.server.port)
            log.warning(
                "listen changed from %s:%d to %s:%d in the config: this needs a restart; "
                "still listening on %s:%d",
                old.server.host, old.server.port, new.server.host, new.server.port, host, port,
            )
        if old.pool != new.pool:
            log.warning("defaults.upstream changed: the connection pool settings apply after a restart")
        if old.state.redis != new.state.redis:
            log.warning("state.redis changed: the Redis connection is opened at start-up, "
                        "the new one applies after a restart")
        if old.auth != new.auth:
            log.warning("auth.jwt changed: the JWT verifier is built at start-up, the new settings apply "
                        "after a restart")
        if backend_of(old) != backend_of(new):
            log.warning("responses.store_backend changed (%s to %s): stored responses stay in the %s store "
                        "until a restart", backend_of(old), backend_of(new), backend_of(old))
        if old.state.path != new.state.path:
            log.warning("state.path changed: spend keeps going to the store opened at start until a restart")

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


def _write_back(path: Path, raw: bytes) -> None:
    """Put ``raw`` in the config file. A plain writable file is replaced
    atomically (a temporary file beside it, renamed over it, its mode kept),
    so a crash or the watcher never sees half a config; a symlink (a
    ConfigMap's) is written through in place. A file this process may not
    write raises OSError rather than being replaced."""
    if path.is_symlink() or not os.access(path, os.W_OK):
        with path.open("r+b") as f:
            f.truncate(0)
            f.write(raw)
        return
    mode = path.stat().st_mode & 0o7777
    tmp = path.with_name(f".{path.name}.rollback-{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _unexpected(exc: BaseException) -> str:
    return f"{type(exc).__name__} while loading the config (a bug in llmproxy; see its log)"


async def supervise(name: str, run: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event,
                    backoff: float = 0.5, max_backoff: float = 10.0) -> None:
    """Run ``run(stop)``; when it dies, log it at ERROR and start it again.

    A ``run`` that returns ends supervision (the watcher does when it cannot
    watch at all); only ``stop`` or cancellation ends a crashing one.
    """
    delay = backoff
    while not stop.is_set():
        try:
            await run(stop)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s task died; restarting it in %gs", name, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, max_backoff)


RELOADER = web.AppKey("llmproxy.reloader", Reloader)


def _applied(app: web.Application, config: Config | None) -> None:
    """What follows a reload (or a rejected one): observability, then the response cache."""
    reloaded(app, config)
    slot = app.get(RESPONSE_CACHE)
    if slot is not None and config is not None:
        slot.apply(config)
async def _remember_start(history: ConfigHistory, proxy: Proxy) -> None:
    """The start-up config's bytes, for a rollback to it (when the file still holds them)."""
    assert proxy.config_path is not None
    try:
        raw = await asyncio.to_thread(read_config_bytes, Path(proxy.config_path))
    except OSError:
        return
    config = proxy.runtime.config
    if hashlib.sha256(raw).hexdigest() == config.sha256:
        history.entries.clear()
        history.record(config, raw, "start")


async def reload_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: watcher, poller and SIGHUP for a proxy started from a file."""
    proxy = app[PROXY]
    if proxy.config_path is None:
        yield
        return
    from .health_checks import (
        HEALTH_CHECKS,  # here: health_checks imports supervise() from this module
    )

    history = app.get(CONFIG_HISTORY)
    if history is not None:
        await _remember_start(history, proxy)

    def on_result(config: Config | None) -> None:
        _applied(app, config)
        checker = app.get(HEALTH_CHECKS)
        if config is not None and checker is not None:
            checker.sync(config)

    reloader = Reloader(proxy, proxy.config_path, on_result=on_result, history=history)
    app[RELOADER] = reloader
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(supervise("config poller", reloader.poll, stop))]
    if proxy.runtime.config.reload.enabled:
        tasks.append(asyncio.create_task(supervise("config watcher", reloader.watch, stop)))
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

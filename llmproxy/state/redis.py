"""The one Redis connection of a proxy process (``state.redis``).

Redis is shared state that the proxy can live without: while it is
unreachable, the proxy serves on its local state, and every caller here
gets ``UNAVAILABLE`` back, at once, to fall back on. Invariants:

- one ``SharedRedis`` per process, opened at start-up (``start()``, from the
  app's cleanup_ctx) and closed at shutdown; a Redis that is down at
  start-up does not stop the proxy from starting;
- every command is bounded: connect and reply each time out after
  ``timeout`` seconds (default 0.5), the pool hands out at most
  ``max_connections`` and waits for one at most ``timeout``; redis-py retries
  once, at once, only a connection that died (never a timeout);
- health is ``up`` or ``down``. The first failed command turns it ``down``:
  one WARNING per outage, ``llmproxy_redis_up`` 0, ``/readyz`` detail
  ``redis: down`` (still 200). While down no command touches the network;
  one background task pings with exponential backoff (``retry_min`` up to
  ``retry_max`` seconds) and, when Redis answers, turns it ``up`` (one INFO
  line, the gauge 1) and runs the ``on_up`` callbacks (e.g. reconciling
  spend buffered during the outage);
- the URL's password never reaches a log line, an error or a metric: the
  redis-py client is the only holder of the URL, and what is shown is
  ``shown_url`` (no userinfo, no query).

The API (small, on purpose):

    redis = SharedRedis(url, on_health=metrics.redis_up)
    await redis.start() ... await redis.close()
    redis.up                                   # bool
    await redis.call(lambda r: r.incr("k"))    # T | UNAVAILABLE
    script = redis.script(LUA)                 # a Script: EVALSHA, EVAL on NOSCRIPT
    await script(keys=[...], args=[...])       # the script's reply | UNAVAILABLE
    await redis.get(key)                       # bytes | None | UNAVAILABLE
    await redis.set(key, value, ttl=600)       # True | UNAVAILABLE
    await redis.delete(*keys)                  # int | UNAVAILABLE
    redis.on_up(callback)                      # async callback after each recovery
    redis.watch_health(listener)               # listener(up) on every change, sync

The ``redis`` package is an optional extra (``pip install 'llmproxy[redis]'``),
imported in ``start()``; config validation refuses ``state.redis`` without it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aiohttp import web

from ..observe.redact import url_without_userinfo

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("llmproxy.state")

T = TypeVar("T")

DEFAULT_TIMEOUT = 0.5
DEFAULT_MAX_CONNECTIONS = 128
RETRY_MIN = 0.1
RETRY_MAX = 5.0


class Unavailable:
    """What a call returns when Redis cannot answer: fall back on local state.
    One instance, ``UNAVAILABLE``; test with ``is`` or ``isinstance``."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final[Unavailable] = Unavailable()


class RedisExtraMissing(RuntimeError):
    """``state.redis`` is set but the ``redis`` package is not installed."""


def redis_package_missing() -> str | None:
    """Why ``state.redis`` cannot work in this environment, or None."""
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return "needs the redis extra: pip install 'llmproxy[redis]'"
    return None


def shown_url(url: str) -> str:
    """``url`` as logs and /admin may show it: no userinfo, no query (redis-py
    also takes ``?password=`` there)."""
    return url_without_userinfo(url).partition("?")[0]


_ADDRESS = re.compile(r"redis(s)?://[^\s]*|unix://[^\s]*")


def describe(exc: BaseException, url: str) -> str:
    """One exception as a log line may carry it: its type and message, with
    any URL or password in it masked."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = _ADDRESS.sub(lambda m: shown_url(m.group(0)), text)
    for secret in _url_secrets(url):
        text = text.replace(secret, "[REDACTED]")
    return text[:300]


def _url_secrets(url: str) -> list[str]:
    from urllib.parse import parse_qs, urlsplit

    from ..observe.redact import url_credentials

    found = [s for s in url_credentials(url) if s]
    try:
        found += [v for k, vs in parse_qs(urlsplit(url).query).items() if k == "password" for v in vs if v]
    except ValueError:
        pass
    return sorted(found, key=len, reverse=True)


class SharedRedis:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        retry_min: float = RETRY_MIN,
        retry_max: float = RETRY_MAX,
        on_health: Callable[[bool], None] | None = None,
    ) -> None:
        self._url = url
        self.shown_url = shown_url(url)
        self.timeout = timeout
        self.max_connections = max_connections
        self.retry_min, self.retry_max = retry_min, retry_max
        # Told of every change, synchronously, in order (metrics first).
        self._health_listeners: list[Callable[[bool], None]] = [on_health] if on_health is not None else []
        self._client: Redis | None = None
        self._errors: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)
        self._reply_errors: tuple[type[BaseException], ...] = ()
        self._noscript: tuple[type[BaseException], ...] = ()
        self._up = False
        self._reconnect: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[], Awaitable[object]]] = []
        self._logged_reply_errors: set[str] = set()
        self.outages = 0  # how many times it went down (tests, /admin)

    # -- lifecycle

    async def start(self) -> None:
        """Create the client and ping once; down (and retrying) if it does not answer."""
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import NoScriptError, RedisError, ResponseError
        except ImportError as exc:
            raise RedisExtraMissing(f"state.redis {redis_package_missing()}") from exc
        # Connection errors and timeouts mean "Redis is not there"; a reply
        # error (WRONGTYPE, OOM, a script error) means this command failed.
        self._errors = (RedisError, OSError, asyncio.TimeoutError)
        self._reply_errors = (ResponseError,)
        self._noscript = (NoScriptError,)
        # One immediate retry, on a new connection, for a connection that
        # died: after a Redis restart every pooled connection is dead, and
        # its first use must not look like an outage. Never after a timeout:
        # the command may have run, and a script must not run twice.
        one_retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        pool = aioredis.BlockingConnectionPool.from_url(
            self._url,
            **_driver_info(),
            max_connections=self.max_connections,
            timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            socket_timeout=self.timeout,
            retry=one_retry,
            health_check_interval=0,
        )
        self._client = aioredis.Redis(connection_pool=pool, retry=one_retry)
        self._up = True  # until the first PING says otherwise (that is an outage)
        failure = await self._ping()
        if failure is None:
            self._health(True)
            log.info("state.redis %s: connected", self.shown_url)
        else:
            self._down(failure)

    async def close(self) -> None:
        if self._reconnect is not None:
            self._reconnect.cancel()
            try:
                await self._reconnect
            except asyncio.CancelledError:
                pass
            self._reconnect = None
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
            self._client = None

    # -- health

    @property
    def up(self) -> bool:
        return self._up

    def detail(self) -> str:
        """``up`` or ``down``, for /readyz and /admin."""
        return "up" if self._up else "down"

    def on_up(self, callback: Callable[[], Awaitable[object]]) -> None:
        """Run ``callback`` each time Redis comes back after an outage."""
        self._callbacks.append(callback)

    def watch_health(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(up)`` on every change of health (e.g. the
        deployments switching between shared and local limits), at once and
        on the loop: the first request after the change already sees it."""
        self._health_listeners.append(listener)

    def _health(self, up: bool) -> None:
        self._up = up
        for listener in self._health_listeners:
            listener(up)

    def _down(self, exc: BaseException | None) -> None:
        if not self._up:
            return
        self._health(False)
        self.outages += 1
        why = describe(exc, self._url) if exc is not None else "no answer to PING"
        log.warning(
            "state.redis %s is unreachable (%s): serving on local state until it is back; retrying in the background",
            self.shown_url, why,
        )
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _ping(self) -> BaseException | None:
        """None if Redis answers PING; else why not."""
        client = self._client
        if client is None:
            return RuntimeError("not started")
        try:
            async with asyncio.timeout(self.timeout * 2):
                await client.ping()
        except self._errors as exc:
            return exc
        return None

    async def _reconnect_loop(self) -> None:
        # One task per outage; _down() starts none while this one runs. A
        # callback that finds Redis gone again (a second outage) makes the
        # outer loop go round once more, so the process never stays down
        # without a task that brings it back.
        while not self._up:
            delay = self.retry_min
            while True:
                # Connections opened before the outage are dead: drop them, so
                # the first commands after recovery do not fail on them.
                if self._client is not None:
                    await self._client.connection_pool.disconnect()
                # Jitter: a fleet of proxies must not reconnect in lockstep.
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                if await self._ping() is None:
                    break
                delay = min(delay * 2, self.retry_max)
            self._health(True)
            log.info("state.redis %s is reachable again", self.shown_url)
            for callback in self._callbacks:
                try:
                    await callback()
                except Exception:  # one callback's bug must not stop the others
                    log.exception("state.redis: a recovery callback failed")

    # -- commands

    async def call(self, fn: Callable[[Redis], Awaitable[T]]) -> T | Unavailable:
        """``fn(client)``, or UNAVAILABLE at once while down / when it fails."""
        client = self._client
        if not self._up or client is None:
            return UNAVAILABLE
        try:
            # Each socket operation is bounded by the client's timeouts; this
            # bounds the whole command (pool wait, connect, reply) as well.
            async with asyncio.timeout(self.timeout * 3):
                return await fn(client)
        except self._reply_errors as exc:
            self._reply_error(exc)
            return UNAVAILABLE
        except self._errors as exc:
            self._down(exc)
            return UNAVAILABLE

    def _reply_error(self, exc: BaseException) -> None:
        # Not an outage (Redis answered); logged once per distinct message,
        # bounded, so an OOM Redis does not log a line per request.
        text = describe(exc, self._url)
        if text not in self._logged_reply_errors and len(self._logged_reply_errors) < 64:
            self._logged_reply_errors.add(text)
            log.warning("state.redis %s refused a command: %s", self.shown_url, text)

    def script(self, lua: str) -> Script:
        return Script(self, lua)

    async def get(self, key: str) -> bytes | None | Unavailable:
        async def run(r: Redis) -> bytes | None:
            value = await r.get(key)
            return value.encode() if isinstance(value, str) else value  # bytes unless decode_responses

        return await self.call(run)

    async def set(self, key: str, value: bytes | str, ttl: float) -> bool | Unavailable:
        """SET with a TTL in seconds (rounded up to milliseconds)."""
        ms = max(1, int(ttl * 1000 + 0.999))

        async def run(r: Redis) -> bool:
            return bool(await r.set(key, value, px=ms))

        return await self.call(run)

    async def delete(self, *keys: str) -> int | Unavailable:
        if not keys:
            return 0

        async def run(r: Redis) -> int:
            return int(await r.delete(*keys))

        return await self.call(run)


def _driver_info() -> dict[str, Any]:
    """The client name and version sent in CLIENT SETINFO, given up front:
    left to itself redis-py reads its package metadata from disk for every
    new connection, blocking the event loop."""
    import redis

    try:
        from redis.driver_info import DriverInfo  # redis >= 7.1
    except ImportError:
        return {"lib_name": "redis-py", "lib_version": redis.__version__}
    return {"driver_info": DriverInfo(name="redis-py", lib_version=redis.__version__)}


class Script:
    """A Lua script run by EVALSHA; on NOSCRIPT (a restarted or flushed Redis)
    by EVAL, which also caches it again. One round trip in the usual case."""

    __slots__ = ("_redis", "lua", "sha")

    def __init__(self, redis: SharedRedis, lua: str) -> None:
        self._redis = redis
        self.lua = lua
        self.sha = hashlib.sha1(lua.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        noscript = self._redis._noscript

        async def run(r: Redis) -> Any:
            try:
                return await r.evalsha(self.sha, len(keys), *keys, *args)
            except noscript:
                return await r.eval(self.lua, len(keys), *keys, *args)

        return await self._redis.call(run)


SHARED_REDIS = web.AppKey("llmproxy.shared_redis", SharedRedis)


def shared_redis(app: web.Application) -> SharedRedis | None:
    """The app's connection, or None without ``state.redis``."""
    return app.get(SHARED_REDIS)


async def shared_redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: open the connection at start-up, close it at shutdown."""
    redis = app.get(SHARED_REDIS)
    if redis is not None:
        await redis.start()
    yield
    if redis is not None:
        await redis.close()

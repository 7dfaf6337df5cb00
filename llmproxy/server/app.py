"""The aiohttp application: routes, the one error middleware, lifecycle.

Every error leaves through ``error_middleware`` as an OpenAI error body
(rule 4), or in Anthropic's shape on the Messages routes (``create_app``
lists them once); nothing else in the package renders errors (aiohttp's own parser
errors, raised below the app, are rendered in the same shape by
``protocol``). Shared objects live under ``AppKey``s and open/close in
``cleanup_ctx``.

Invariant: with ``server.api_keys`` or ``keys:`` set, every route asks for a
key except those ``create_app`` lists as open (probes, /metrics, /admin with
its own token): a route added later is closed unless it is listed there.
The caller it names is ``request[CALLER]``; a request a key admitted
(``TICKET``) is finished here, in ``finally``, whatever way it ended.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
from aiohttp import web

from .. import __version__
from ..cache.keying import CACHE_HEADER
from ..cache.response_cache import RESPONSE_CACHE, CacheSlot
from ..config.tree import Config, ResponsesConfig
from ..config.validate import parse_listen
from ..config.views import summarize
from ..errors import ProxyError, RequestTimeout
from ..ingress import anthropic_messages
from ..keys.caller import CALLER
from ..keys.jwt_auth import JWT_SLOT, JwtSlot, jwt_ctx, key_or_jwt_caller
from ..keys.service import TICKET
from ..observe.logs import ACCESS_LOG, REDACTOR, AccessLog, Redactor
from ..observe.metrics import METRICS, Metrics, handle_metrics, metrics_app
from ..observe.observation import (
    OBSERVATION,
    OBSERVERS,
    Observers,
    configure_observability,
    observe_middleware,
)
from ..observe.request_log import REQUEST_LOG, RequestLog
from ..observe.tracing import TRACER, make_tracer
from ..request.cached import CACHE_TICKET
from ..router.shared import DeploymentCounters
from ..state.counters import SharedCounters
from ..state.redis import SHARED_REDIS, SharedRedis, shared_redis_ctx
from . import door
from .config_history import CONFIG_HISTORY, ConfigHistory
from .handlers import (
    admin,
    admin_history,
    admin_requests,
    chat,
    completions,
    embeddings,
    health,
    messages,
    models,
    responses,
    ui,
)
from . import response_store_group, siblings
from .health_checks import HEALTH_CHECKS, HealthChecker, health_checks_ctx
from .protocol import ProxyProtocol, ProxyRunner
from .reload import reload_ctx
from .response_store import REDIS, RESPONSE_STORE, MemoryStore, ResponseStore, backend_of, response_store_ctx
from .runtime import PROXY, REQUEST_ID, Proxy
from .workers import WORKER_HEADER, WorkerInfo

log = logging.getLogger("llmproxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_MAX_REQUEST_ID = 128

# Resources answered without a client key (see the module's invariant).
_OPEN_RESOURCES = web.AppKey("llmproxy.open_resources", frozenset)
# Resources whose clients speak Anthropic's API: their errors are in its shape.
_ANTHROPIC_RESOURCES = web.AppKey("llmproxy.anthropic_resources", frozenset)


def _error_response(exc: ProxyError, anthropic: bool = False) -> web.Response:
    if anthropic:
        status, doc = anthropic_messages.render_error(exc)
        body = orjson.dumps(doc)
    else:
        status, body = exc.status, exc.to_json()
    response = web.Response(body=body, status=status, content_type="application/json", headers=exc.headers)
    if isinstance(exc, RequestTimeout):
        response.force_close()  # the rest of the body may still come: never parse it as a request
    return response


def _http_error(exc: web.HTTPException) -> ProxyError:
    messages = {
        404: "no such endpoint",
        405: f"method not allowed; use {exc.headers.get('Allow', 'another method')}",
    }
    message = messages.get(exc.status, exc.reason)
    return ProxyError(message, status=exc.status, type="invalid_request_error")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id in, OpenAI error bodies out; the only place errors are rendered."""
    proxy = request.app[PROXY]
    rid = request.headers.get("X-Request-ID")
    if not rid or len(rid) > _MAX_REQUEST_ID or not rid.isprintable():
        rid = proxy.new_request_id()
    request[REQUEST_ID] = rid
    try:
        runtime = proxy.runtime
        preflight = door.admit(request, runtime.config.server, request.app[door.LOOPBACK])
        if preflight is not None:
            response: web.StreamResponse = preflight
        else:
            if runtime.keys.enabled and request.match_info.route.resource not in request.app[_OPEN_RESOURCES]:
                verifier = request.app[JWT_SLOT].verifier
                if verifier is None:
                    request[CALLER] = proxy.keys.authenticate(runtime.keys, request.headers)
                else:
                    request[CALLER] = await key_or_jwt_caller(verifier, runtime.keys, request.headers)
            response = await handler(request)
    except ProxyError as exc:
        response = _failed(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _failed(request, _http_error(exc))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, rid)
        response = _failed(request, ProxyError("internal error in llmproxy; see its logs", status=500))
    finally:
        ticket = request.get(TICKET)
        if ticket is not None:  # its parallel slot freed and its spend settled, once
            ticket.finish()
    # Streams set these themselves before their headers went out.
    if not response.prepared:
        response.headers["X-Request-ID"] = rid
        ticket = request.get(CACHE_TICKET)
        if ticket is not None:  # the response cache's verdict, on error answers too
            response.headers[CACHE_HEADER] = ticket.result
        if proxy.worker_name is not None:
            response.headers[WORKER_HEADER] = proxy.worker_name
        origin = request.get(door.CORS_ORIGIN)
        if origin is not None:
            door.cors_headers(response, origin)
    return response


def _failed(request: web.Request, exc: ProxyError) -> web.Response:
    obs = request.get(OBSERVATION)
    if obs is not None:
        obs.failed(exc)
    # Upstreams echo credentials back ("Incorrect API key provided: sk-..."):
    # the client must never receive ours.
    redactor = request.app.get(REDACTOR)
    if redactor is not None:
        exc.message = redactor.redact(exc.message)
    if isinstance(exc, RequestTimeout) and isinstance(request.protocol, ProxyProtocol):
        request.protocol.close_after_answer()
    return _error_response(exc, request.match_info.route.resource in request.app[_ANTHROPIC_RESOURCES])


def create_app(config: Config, config_path: str | None = None,
               clock: Callable[[], float] = time.monotonic, worker: WorkerInfo | None = None) -> web.Application:
    # The body limit is enforced per request from the live config
    # (server.handlers.common.read_json), so aiohttp's own cap is only a backstop.
    app = web.Application(middlewares=[observe_middleware, error_middleware], client_max_size=1 << 40)
    proxy = Proxy(config, config_path, clock=clock, worker=worker)
    app[PROXY] = proxy
    lg = config.logging
    app[REDACTOR] = Redactor(emails=lg.redact_emails, cards=lg.redact_cards)
    app[ACCESS_LOG] = AccessLog(enabled=lg.access_log, log_bodies=lg.log_bodies)
    metrics = app[METRICS] = Metrics(__version__)
    metrics.watch_deployments(lambda: [
        (s.id, s.breaker.state, s.in_flight, s.breaker.opened_count) for s in proxy.registry.all()
    ])
    metrics.watch_keys(proxy.keys.samples)
    configure_observability(app, config)
    app[TRACER] = make_tracer(config.tracing, redactor=app[REDACTOR])
    app[REQUEST_LOG] = RequestLog(config.admin.request_log, config.admin.request_log_bodies,
                                  redact=app[REDACTOR].redact)
    history = app[CONFIG_HISTORY] = ConfigHistory(config.admin.config_history)
    history.record(config, None, "start")
    app[HEALTH_CHECKS] = HealthChecker(proxy, redact=app[REDACTOR].redact, metrics=metrics)
    app[ui.UI_FILES] = {}
    app[OBSERVERS] = Observers()  # bound at start-up (_observability_ctx), after any late setup
    if config.state.redis:
        # Opened at start-up and kept for the process's life (a reload that
        # changes state.redis is reported as needing a restart).
        redis = app[SHARED_REDIS] = SharedRedis(config.state.redis, on_health=metrics.redis_up)
        # Per-key limits and spend shared by every process on this Redis.
        proxy.keys.share(SharedCounters(redis))
        # Deployment rpm / tpm / max_concurrency too, while Redis is up.
        proxy.registry.use(DeploymentCounters(redis))
    app.cleanup_ctx.append(_upstream_ctx)
    app[JWT_SLOT] = JwtSlot()
    app.cleanup_ctx.append(jwt_ctx)  # after the upstream: a jwks_url is fetched on it
    app.cleanup_ctx.append(shared_redis_ctx)
    app.cleanup_ctx.append(_deployment_counters_ctx)  # drained before the connection closes
    app.cleanup_ctx.append(health_checks_ctx)
    app.cleanup_ctx.append(reload_ctx)
    app.on_shutdown.append(_end_live_tails)
    app.cleanup_ctx.append(_observability_ctx)
    app.cleanup_ctx.append(_keys_ctx)
    app[door.LOOPBACK] = door.is_loopback(config.server.host)
    app[RESPONSE_STORE] = _response_store(app, config)
    app.cleanup_ctx.append(response_store_ctx)
    app[RESPONSE_CACHE] = CacheSlot(config, proxy.clock, metrics, app.get(SHARED_REDIS))
    app.cleanup_ctx.append(_cache_ctx)
    if worker is not None:
        siblings.join_group(app, worker, admin.GROUP_VIEWS, {**admin.GROUP_ACTIONS, **response_store_group.ACTIONS})
        store = app[RESPONSE_STORE]
        if isinstance(store, MemoryStore) and worker.count > 1:
            # Without Redis each worker keeps its own; a follow-up that lands elsewhere asks the others.
            app[RESPONSE_STORE] = response_store_group.GroupStore(store, app[siblings.SIBLINGS])
    # Behind server.api_keys: everything not in `open_routes` below.
    app.router.add_post("/v1/chat/completions", chat.chat_completions)
    app.router.add_post("/chat/completions", chat.chat_completions)
    app.router.add_post("/v1/embeddings", embeddings.embeddings)
    app.router.add_post("/embeddings", embeddings.embeddings)
    app.router.add_post("/v1/responses", responses.create_response)
    app.router.add_post("/responses", responses.create_response)
    app.router.add_get("/v1/responses/{id}", responses.get_response)
    app.router.add_delete("/v1/responses/{id}", responses.delete_response)
    app.router.add_post("/v1/completions", completions.completions)
    app.router.add_get("/v1/models", models.list_models)
    app[_ANTHROPIC_RESOURCES] = frozenset(r.resource for r in (
        app.router.add_post("/v1/messages", messages.messages),
        app.router.add_post("/v1/messages/count_tokens", messages.count_tokens),
    ))
    app.router.add_get("/v1/models/{model:.+}", models.get_model)
    # Open to clients without a key: probes, metrics, and admin (admin.token guards it).
    open_routes = [
        app.router.add_get("/healthz", health.healthz),
        app.router.add_get("/readyz", health.readyz),
        app.router.add_get("/admin/config", admin.get_config),
        app.router.add_post("/admin/reload", admin.post_reload),
        app.router.add_get("/admin/deployments", admin.get_deployments),
        app.router.add_get("/admin/models", admin.get_models),
        app.router.add_get("/admin/keys", admin.get_keys),
        app.router.add_get("/admin/cache", admin.get_cache),
        app.router.add_delete("/admin/cache", admin.delete_cache),
        app.router.add_get("/admin/requests", admin_requests.get_requests),
        app.router.add_get("/admin/requests/stream", admin_requests.stream_requests),
        app.router.add_get("/admin/config/history", admin_history.get_history),
        app.router.add_get("/admin/config/history/{sha}", admin_history.get_history_entry),
        app.router.add_get("/admin/config/diff", admin_history.get_diff),
        app.router.add_post("/admin/config/rollback", admin_history.post_rollback),
        app.router.add_get("/ui", ui.ui_file),
        app.router.add_get("/ui/{name}", ui.ui_file),
    ]
    if config.metrics.enabled:
        open_routes.append(app.router.add_get("/metrics", handle_metrics if worker is None
                                              else siblings.handle_group_metrics))
    app[_OPEN_RESOURCES] = frozenset(r.resource for r in open_routes)
    return app


def _response_store(app: web.Application, config: Config) -> ResponseStore:
    """Stored Responses where ``responses.store_backend`` says, chosen once: a
    reload that changes it is reported as needing a restart."""
    proxy = app[PROXY]

    def live() -> ResponsesConfig:
        return proxy.runtime.config.responses

    redis = app.get(SHARED_REDIS)
    if backend_of(config) == REDIS and redis is not None:
        from ..state.response_store_redis import RedisStore

        return RedisStore(redis, live, app[METRICS])
    return MemoryStore(proxy.clock, live)


async def _end_live_tails(app: web.Application) -> None:
    # Open /admin/requests/stream answers would otherwise hold the drain to its timeout.
    app[REQUEST_LOG].close()


async def _observability_ctx(app: web.Application) -> AsyncIterator[None]:
    """The optional second /metrics listener; the tracer's flush at the end."""
    app[OBSERVERS].bind(app)
    runner: web.AppRunner | None = None
    listen = app[PROXY].runtime.config.metrics.listen
    if listen is not None:
        host, port = parse_listen(listen) or ("127.0.0.1", 9464)
        group = app.get(siblings.SIBLINGS)
        runner = web.AppRunner(metrics_app(app[METRICS]) if group is None else siblings.group_metrics_app(app),
                               access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_address=True, reuse_port=group is not None).start()
        log.info("metrics on http://%s:%d/metrics", host, port)
    yield
    if runner is not None:
        await runner.cleanup()
    await asyncio.to_thread(app[TRACER].shutdown)


def store_path(config: Config, config_path: str | None) -> Path | None:
    """``state.path`` resolved against the config file's directory; None
    without one (a relative path of an app built from a string has no
    directory to be relative to, and the cwd is no place for state)."""
    path = config.state.path
    if path is None:
        return None
    if os.path.isabs(path):
        return Path(path)
    return None if config_path is None else Path(config_path).parent / path


async def _keys_ctx(app: web.Application) -> AsyncIterator[None]:
    """The embedded spend store: opened and read back before serving, flushed and closed last."""
    proxy = app[PROXY]
    await proxy.keys.start(proxy.runtime.keys, store_path(proxy.runtime.config, proxy.config_path))
    yield
    await proxy.keys.stop()


async def _deployment_counters_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    counters = app[PROXY].registry.counters
    if counters is not None:
        await counters.drain()  # the last leases settled while Redis is still open


async def _cache_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[RESPONSE_CACHE].close()


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    proxy = app[PROXY]
    await proxy.upstream.start()
    yield
    await proxy.upstream.close()


async def serve(app: web.Application, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT, then drain: /readyz turns 503, the listener
    closes, in-flight requests (streams too) get ``server.drain_timeout``."""
    proxy = app[PROXY]
    drain = proxy.runtime.config.server.drain_timeout
    app[door.LOOPBACK] = door.is_loopback(host)  # the address bound, --host included
    runner = ProxyRunner(
        app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=drain
    )
    try:
        await runner.setup()
        # Workers of one group share the port; the kernel spreads connections.
        await web.TCPSite(runner, host, port, reuse_address=True, backlog=1024,
                          reuse_port=proxy.worker is not None).start()
        if proxy.worker is not None:
            # Before anything else runs on the loop: a worker that has
            # answered a request has always passed start-up, in the
            # supervisor's eyes too (a tiny file in the group's directory).
            proxy.worker.ready_marker().touch()
    except BaseException:
        # Start-up opened the upstream session, watchers and maybe the metrics
        # listener: close them, so a port in use is one error, not a leak.
        await runner.cleanup()
        raise
    proxy.listening = (host, port)
    log.info("llmproxy listening on http://%s:%d", host, port)
    log.info("routes: %s", summarize(proxy.runtime.config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # What start-up built (modules, config, app) lives as long as the process:
    # moved out of the collector's generations, full collections stop
    # re-scanning it under load.
    gc.collect()
    gc.freeze()
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        proxy.draining = True
        log.info("draining: waiting up to %gs for in-flight requests", drain)
        await runner.cleanup()
        log.info("stopped")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        gc.unfreeze()

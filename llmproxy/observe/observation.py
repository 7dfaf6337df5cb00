"""One request's observation: metrics, the access line and the server span.

``observe_middleware`` (outermost, before ``error_middleware``) opens an
``Observation`` per request under ``OBSERVATION``; handlers and forward.py
report facts to it (model resolved, attempt begun/failed/succeeded, first
byte sent, usage); when the response is done the middleware records it once.

Invariants:
- every request that ``resolved()`` counted as started is finished exactly
  once, whatever way it ends (answer, error, client gone: status 499);
- a chat/embeddings request that ends before a model was resolved (bad
  JSON, unknown model, 401, 413) is counted as rejected, never started;
- label values are config names (model, deployment id, provider type);
  the client's own strings reach only the access line, through the redactor;
- probes and scrapes (``/healthz``, ``/readyz``, ``/metrics``) are neither
  counted nor logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ..config.tree import Config, DeploymentConfig
from ..errors import ProxyError, UpstreamError
from ..keys.caller import CALLER
from ..providers.base import UpstreamRequest
from ..server.runtime import PROXY, REQUEST_ID
from .logs import ACCESS_LOG, REDACTOR, AccessLog, config_secrets
from .metrics import METRICS, Metrics, upstream_error_kind
from .request_log import REQUEST_LOG, RequestLog
from .tracing import (
    NOOP_SPAN,
    NOOP_TRACER,
    TRACER,
    ActiveSpan,
    Tracer,
    request_attributes,
    span_name,
)

OPERATIONS: Mapping[str, str] = {
    "/v1/chat/completions": "chat", "/chat/completions": "chat",
    "/v1/embeddings": "embeddings", "/embeddings": "embeddings",
}
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})


class Observation:
    # Defaults live on the class, so a request pays only for what happens to it.
    model: str | None = None  # the public (config) name, once resolved
    stream = False
    deployment: DeploymentConfig | None = None  # the last one tried
    retries = 0  # the plan's counts (Plan.retries / Plan.fallbacks) at the last attempt
    fallbacks = 0
    first_byte: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error_status: int | None = None  # a stream that failed after its first byte
    error_code: str | None = None
    cache: str | None = None  # the response cache's verdict: hit, miss, bypass (None: no cache)
    span: ActiveSpan = NOOP_SPAN
    error_message: str | None = None  # what the client was told (redacted when the request log keeps it)
    request_log: RequestLog | None = None  # set when admin.request_log is on
    body: bytes | None = None  # the request body, kept only with admin.request_log_bodies
    _pending: tuple[str, str] | None = None  # (deployment, kind) of a failed attempt

    def __init__(self, metrics: Metrics, tracer: Tracer, operation: str | None, clock: Callable[[], float]) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.clock = clock
        self.operation = operation
        self.started = clock()

    # -- reported by handlers

    def resolved(self, model: str, *, stream: bool = False) -> None:
        """The request's model is known (a config name): it counts as started."""
        self.model = model
        self.stream = stream
        self.metrics.started(self.operation or "chat", model)

    def cache_result(self, result: str) -> None:
        """The response cache's verdict; a hit costs nothing (no deployment, no usage: no spend)."""
        self.cache = result

    def failed(self, exc: ProxyError) -> None:
        """The error the client gets (error_middleware): its code goes to the access line."""
        self.error_code = exc.code or exc.type
        self.error_message = exc.message

    # -- reported by attempt.py (one call per verdict) and forward.py

    def attempt(self, dep: DeploymentConfig, group: str, *, retries: int = 0, fallbacks: int = 0) -> None:
        """A lease on ``dep`` (of model group ``group``) is about to be used;
        ``retries`` and ``fallbacks`` are the plan's counts so far, so an
        attempt that raised either is counted as such."""
        if self.model is not None:
            if fallbacks > self.fallbacks:
                self.metrics.fallback(self.model, group)
            elif retries > self.retries and self._pending is not None:
                failed_dep, kind = self._pending
                self.metrics.retry(self.model, failed_dep, kind)
        self._pending = None
        self.retries = retries
        self.fallbacks = fallbacks
        self.deployment = dep
        if self.span is not NOOP_SPAN:
            self.span.end()
        if self.tracer.enabled:
            op = self.operation or "chat"
            self.span = self.tracer.begin(span_name(op, dep.model), request_attributes(
                operation=op, provider_type=dep.provider.type, request_model=dep.model,
                base_url=dep.provider.base_url, deployment=dep.id, public_model=self.model,
            ))

    def dropped(self, dep: DeploymentConfig, params: tuple[str, ...]) -> None:
        """``params`` were dropped from this attempt's request (``unsupported_params: drop``)."""
        for param in params:
            self.metrics.dropped_param(dep.label, param)

    def rate_limited(self, deployment: str, kind: str) -> None:
        """The proxy's own limit ``kind`` (rpm, tpm, concurrency) kept this request off ``deployment``."""
        self.metrics.rate_limited(self.model or "", deployment, kind)

    def traced(self, req: UpstreamRequest) -> UpstreamRequest:
        """``req`` carrying W3C ``traceparent`` for this attempt (``req`` itself when not tracing)."""
        if not self.tracer.enabled:
            return req
        headers = dict(req.headers)
        self.span.inject_traceparent(headers)
        return dataclasses.replace(req, headers=headers)

    def attempt_failed(self, exc: UpstreamError) -> None:
        if self.deployment is None:
            return
        kind = upstream_error_kind(exc)
        self.metrics.upstream_error(self.deployment.label, kind)
        self._pending = (self.deployment.label, kind)
        self.span.set_error(kind, exc.message)
        self.span.end()

    def attempt_succeeded(self, usage: Mapping[str, Any] | None) -> None:
        if usage:  # OpenAI-shaped: prompt_tokens, completion_tokens (ints; bools are not counts)
            p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if p.__class__ is int:
                self.prompt_tokens = p
            if c.__class__ is int:
                self.completion_tokens = c
        span = self.span
        if span is NOOP_SPAN:
            return
        if self.prompt_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", self.prompt_tokens)
        if self.completion_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", self.completion_tokens)
        span.end()

    def first_byte_sent(self) -> None:
        if self.first_byte is None:
            self.first_byte = self.clock()

    def client_gone(self) -> None:
        """The client left mid-answer without the task being cancelled."""
        self.error_status = 499

    def stream_failed(self, exc: ProxyError) -> None:
        """The stream ended with an error event after its first byte (HTTP said 200)."""
        self.error_status = exc.status
        self.error_code = exc.code or exc.type
        self.error_message = exc.message

    # -- the end

    def finish(self, request: web.Request, status: int, access: AccessLog | None) -> None:
        if self.span is not NOOP_SPAN:
            self.span.end()
        now = self.clock()
        status = self.error_status or status
        duration = now - self.started
        first_byte = self.first_byte
        ttft = None if first_byte is None else first_byte - self.started
        dep = self.deployment
        dep_id = None if dep is None else dep.id
        model, prompt, completion = self.model, self.prompt_tokens, self.completion_tokens
        cost = None
        if dep is not None and dep.price is not None and (prompt or completion):
            cost = dep.price.cost(prompt or 0, completion or 0)
        if self.operation is not None:
            if model is None:
                self.metrics.request_rejected("", status, operation=self.operation)
            else:
                label = "" if dep is None else dep.label  # a wildcard's pattern id, not the client's name
                self.metrics.finished(self.operation, model, label, status, duration, ttft, self.stream,
                                      prompt, completion, cost)
        if self.request_log is not None and (model is not None or self.operation is not None):
            self._log_request(request, status, duration, ttft, cost)
        if access is not None and access.enabled:  # write() checks the level
            try:
                rid = request[REQUEST_ID]
            except KeyError:  # answered before error_middleware named it
                rid = ""
            caller = request.get(CALLER)
            access.write(rid, request.method, request.path, model, dep_id, status, duration * 1000.0,
                         None if ttft is None else ttft * 1000.0, prompt, completion, self.retries, self.stream,
                         self.error_code, None if caller is None else caller.name, self.cache)


    def _log_request(self, request: web.Request, status: int, duration: float, ttft: float | None,
                     cost: float | None) -> None:
        log = self.request_log
        assert log is not None
        caller = request.get(CALLER)
        entry: dict[str, Any] = {
            "time": time.time(),
            "request_id": request.get(REQUEST_ID, ""),
            "key": None if caller is None else caller.name,
            "method": request.method,
            "path": request.path,
            "model": self.model,
            "deployment": None if self.deployment is None else self.deployment.id,
            "status": status,
            "stream": self.stream,
            "latency_ms": round(duration * 1000.0, 3),
            "ttft_ms": None if ttft is None else round(ttft * 1000.0, 3),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": cost,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "cache": self.cache,
            "error": self.error_message if status >= 400 else None,
        }
        if self.body is not None:
            entry["body"] = log.body(self.body)
        log.add(entry)


class Unobserved(Observation):
    """Stands in for ``Observation`` when metrics, the access line and tracing
    are all off: every report is a no-op, so turning observability off
    really takes its cost off the request path."""

    __slots__ = ()

    def __init__(self) -> None:
        pass  # no state: nothing is ever recorded (class defaults answer reads)

    def resolved(self, model: str, *, stream: bool = False) -> None:
        pass

    def failed(self, exc: ProxyError) -> None:
        pass

    def cache_result(self, result: str) -> None:
        pass

    def attempt(self, dep: DeploymentConfig, group: str, *, retries: int = 0, fallbacks: int = 0) -> None:
        pass

    def dropped(self, dep: DeploymentConfig, params: tuple[str, ...]) -> None:
        pass

    def rate_limited(self, deployment: str, kind: str) -> None:
        pass

    def traced(self, req: UpstreamRequest) -> UpstreamRequest:
        return req

    def attempt_failed(self, exc: UpstreamError) -> None:
        pass

    def attempt_succeeded(self, usage: Mapping[str, Any] | None) -> None:
        pass

    def first_byte_sent(self) -> None:
        pass

    def client_gone(self) -> None:
        pass

    def stream_failed(self, exc: ProxyError) -> None:
        pass


UNOBSERVED = Unobserved()
OBSERVATION = web.RequestKey("llmproxy.observation", Observation)


def configure_observability(app: web.Application, config: Config) -> None:
    """Point metrics' label sets, the redactor's secrets and the access-log
    switches at ``config`` (at start-up and after each reload)."""
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.configure(config.models, {d.id: d.provider.type for d in config.deployments()})
    redactor = app.get(REDACTOR)
    if redactor is not None:
        redactor.set_secrets(config_secrets(config))
    request_log = app.get(REQUEST_LOG)
    if request_log is not None:
        request_log.configure(config.admin.request_log, config.admin.request_log_bodies)
    access = app.get(ACCESS_LOG)
    settings = getattr(config, "logging", None)  # the proposed ``logging:`` section
    if access is not None and settings is not None:
        access.enabled = settings.access_log
        access.log_bodies = settings.log_bodies


def reloaded(app: web.Application, config: Config | None) -> None:
    """The reloader's hook: ``config`` now serves, or (None) a new one was rejected."""
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.reload(config is not None)
    if config is not None:
        configure_observability(app, config)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Observers:
    """What ``observe_middleware`` needs from the app, gathered once at start-up
    (``bind``) instead of four app lookups per request. An app without one
    (a test's) or not yet bound is looked up per request."""

    __slots__ = ("access", "metrics", "proxy", "request_log", "tracer")

    def __init__(self) -> None:
        self.metrics: Metrics | None = None  # set by bind()
        self.tracer: Tracer = NOOP_TRACER
        self.access: AccessLog | None = None
        self.proxy: Any = None  # runtime.Proxy: its live config says whether metrics are on
        self.request_log: RequestLog | None = None

    def bind(self, app: web.Application) -> Observers:
        self.metrics = app[METRICS]
        self.tracer = app.get(TRACER, NOOP_TRACER)
        self.access = app.get(ACCESS_LOG)
        self.proxy = app.get(PROXY)
        self.request_log = app.get(REQUEST_LOG)
        return self

    def off(self) -> bool:
        """Nothing would be recorded: no tracer, metrics off, no access line."""
        if self.tracer.enabled or self.proxy is None or self.proxy.runtime.config.metrics.enabled:
            return False
        if self.request_log is not None and self.request_log.enabled:
            return False
        return self.access is None or not self.access.active()


OBSERVERS = web.AppKey("llmproxy.observers", Observers)


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path in QUIET:
        return await handler(request)
    app = request.app
    observers = app.get(OBSERVERS)
    if observers is None or observers.metrics is None:  # not bound (yet)
        observers = Observers().bind(app)
    if observers.off():
        request[OBSERVATION] = UNOBSERVED
        return await handler(request)
    tracer = observers.tracer
    # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
    obs = Observation(observers.metrics, tracer, OPERATIONS.get(path), time.perf_counter)  # type: ignore[arg-type]
    request_log = observers.request_log
    if request_log is not None and request_log.enabled:
        obs.request_log = request_log
        if request_log.bodies:
            obs.body = b""  # read_json fills it in
    request[OBSERVATION] = obs
    if tracer.enabled:
        return await _traced(request, handler, obs, tracer, observers.access)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        status = 499  # the client left before the answer was complete
        raise
    finally:
        obs.finish(request, status, observers.access)


async def _traced(
    request: web.Request, handler: Handler, obs: Observation, tracer: Tracer, access: AccessLog | None
) -> web.StreamResponse:
    """The same, inside a server span continuing the caller's W3C trace."""
    route = request.match_info.route.resource
    name = f"{request.method} {route.canonical if route is not None else 'unmatched'}"
    status = 500
    with tracer.start_span(name, kind="server", parent_headers=request.headers) as span:
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            status = 499
            raise
        finally:
            obs.finish(request, status, access)
            status = obs.error_status or status
            span.set_attribute("http.response.status_code", status)
            if obs.model is not None:
                span.set_attribute("gen_ai.request.model", obs.model)
            if obs.operation is not None:
                span.set_attribute("gen_ai.operation.name", obs.operation)
            if status >= 500:
                span.set_error(str(status))

"""Prometheus metrics: one ``Metrics`` per app, on its own registry.

Names follow the OpenTelemetry GenAI semantic conventions where one applies,
translated the way OTel's Prometheus exporter does it (dots become
underscores, the unit becomes a suffix, ``{token}`` annotations are dropped):

    gen_ai.client.operation.duration     → gen_ai_client_operation_duration_seconds
    gen_ai.client.token.usage            → gen_ai_client_token_usage
    gen_ai.server.time_to_first_token    → gen_ai_server_time_to_first_token_seconds
    gen_ai.operation.name / .provider.name / .request.model / .token.type
                                         → labels gen_ai_operation_name, ...

Everything proxy-specific is ``llmproxy_*``. Invariants:
- label values come from the caller's config-derived strings only; once
  ``configure()`` has named the models and deployments, anything else is
  recorded as ``"other"``, so a client's free text can never mint a series;
- the hot path (``request_started`` / ``request_finished``) does one dict
  lookup for its cached series and then plain float additions; label
  resolution and series creation happen once per new label combination;
- values are plain Python numbers without locks: every method, ``render()``
  included, runs on the event loop's thread (the app's only thread);
- breaker states and per-deployment in-flight counts are read at scrape time
  from a source the app registers (``watch_deployments``), so they cost the
  request path nothing and are never stale.

prometheus_client does the exposition (``generate_latest`` over a custom
collector); its own metric classes take a lock per update and walk histogram
buckets in Python, about 17 µs per request for this set against about 3 µs here.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ..errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from ..providers.registry import PROVIDER_SPECS
from .series import Family, Hist, Value

# Seconds. LLM calls run from tens of milliseconds (a cached embedding) to
# minutes (a long reasoning stream); boundaries sit where SLOs are written.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
# Tokens: powers of 4 from 1 to 1,048,576 (the semconv's advised boundaries, cut at 1M).
TOKEN_BUCKETS = tuple(float(4**i) for i in range(11))

OP, PROVIDER, MODEL, DEPLOYMENT = (
    "gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "deployment",
)
TOKEN_TYPE, ERROR_TYPE = "gen_ai_token_type", "error_type"
BASE = (OP, PROVIDER, MODEL, DEPLOYMENT)

OTHER = "other"
UPSTREAM_ERROR_KINDS = frozenset({"connect", "timeout", "status_4xx", "status_429", "status_5xx", "protocol"})
RATE_LIMIT_KINDS = frozenset({"rpm", "tpm", "concurrency"})
BREAKER_STATES = ("closed", "open", "half_open")
_REASON_CAP = 32  # distinct retry reasons before new ones become "other"

# Config provider type → gen_ai.provider.name well-known value (semconv
# gen-ai attribute registry); types without one keep their own name.
# OpenTelemetry gen_ai.provider.name per provider type, from each spec.
PROVIDER_NAMES: Mapping[str, str] = MappingProxyType(
    {t: s.gen_ai_name for t, s in PROVIDER_SPECS.items() if s.gen_ai_name is not None}
)

# The classic text format: every name here is a legacy (underscore) name, so
# the body is the same under 1.0.0, and 0.0.4 is what every scraper accepts.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_STATUS_CLASSES = (OTHER, "1xx", "2xx", "3xx", "4xx", "5xx")

# (deployment id, breaker state, in-flight attempts, breaker opens so far)
DeploymentSample = tuple[str, str, int, int]


def status_class(status: int) -> str:
    return _STATUS_CLASSES[status // 100] if 0 < status < 600 else OTHER


def gen_ai_provider_name(provider_type: str) -> str:
    return PROVIDER_NAMES.get(provider_type, provider_type)


def upstream_error_kind(exc: UpstreamError) -> str:
    """The ``kind`` label for an upstream failure (errors.py's tree)."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamStatusError):
        if exc.status == 429:
            return "status_429"
        return "status_5xx" if exc.status >= 500 else "status_4xx"
    if isinstance(exc, UpstreamProtocolError):
        return "protocol"
    return "connect"  # UpstreamUnreachable: no answer at all


class _Finished:
    """Every series one (operation, model, deployment, status class, stream) touches.

    Series that not every request feeds (TTFT, tokens, cost) are created on
    first use, so a non-streaming model shows no empty TTFT histogram.
    """

    __slots__ = (
        "base",
        "cost",
        "duration",
        "in_flight",
        "requests",
        "tokens_in",
        "tokens_out",
        "ttft",
        "usage_in",
        "usage_out",
    )

    def __init__(self, base: tuple[str, ...], requests: Value, duration: Hist, in_flight: Value) -> None:
        self.base, self.requests, self.duration, self.in_flight = base, requests, duration, in_flight
        self.ttft: Hist | None = None
        self.usage_in: Hist | None = None
        self.usage_out: Hist | None = None
        self.tokens_in: Value | None = None
        self.tokens_out: Value | None = None
        self.cost: Value | None = None


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        for fam in m.families:
            if fam.children or fam not in m.optional:
                yield fam.collect()
        yield from m.scraped()


def _key_families(samples: Iterable[tuple[str, int, float, float | None, int]]) -> Iterator[Metric]:
    # Lifetime totals from the spend ledger: they survive restarts (the
    # embedded store), so they only ever grow, as a counter must.
    requests = CounterMetricFamily("llmproxy_key_requests", "Requests admitted per key (keys:)", labels=["key"])
    spend = CounterMetricFamily("llmproxy_key_spend_usd", "Spend per key in US dollars", labels=["key"])
    remaining = GaugeMetricFamily("llmproxy_key_budget_remaining_usd",
                                  "Budget left in the key's current period, US dollars", labels=["key"])
    estimated = CounterMetricFamily("llmproxy_key_usage_estimated",
                                    "Answers whose usage the upstream never reported, charged from the estimate",
                                    labels=["key"])
    for name, n, usd, left, est in samples:
        requests.add_metric([name], float(n))
        spend.add_metric([name], usd)
        estimated.add_metric([name], float(est))
        if left is not None:
            remaining.add_metric([name], left)
    yield from (requests, spend, remaining, estimated)


# --------------------------------------------------------------------------- the API


class Metrics:
    def __init__(self, version: str = "") -> None:
        f = Family
        self._duration = f("gen_ai_client_operation_duration_seconds",
                           "LLM request duration at the proxy, from request received to last byte sent",
                           "histogram", (*BASE, ERROR_TYPE), DURATION_BUCKETS)
        self._ttft = f("gen_ai_server_time_to_first_token_seconds",
                       "Time from request received to the first streamed content sent to the client",
                       "histogram", BASE, TTFT_BUCKETS)
        self._usage = f("gen_ai_client_token_usage", "Tokens per request, by gen_ai_token_type input/output",
                        "histogram", (*BASE, TOKEN_TYPE), TOKEN_BUCKETS)
        self._requests = f("llmproxy_requests", "LLM requests answered, by status class", "counter",
                           (*BASE, "status_class", "stream"))
        self._tokens = f("llmproxy_tokens", "Tokens reported by upstreams", "counter", (*BASE, TOKEN_TYPE))
        self._cost = f("llmproxy_cost_usd", "Estimated cost in US dollars from the config's prices",
                       "counter", BASE)
        self._in_flight = f("llmproxy_requests_in_flight", "Client requests being answered", "gauge",
                            (OP, MODEL))
        self._retries = f("llmproxy_retries", "Attempts retried after a failure, by the failed deployment",
                          "counter", (MODEL, DEPLOYMENT, "reason"))
        self._fallbacks = f("llmproxy_fallbacks", "Requests moved to a fallback model", "counter",
                            (MODEL, "fallback_model"))
        self._rate_limited = f("llmproxy_rate_limited", "Attempts refused by the proxy's own limits",
                               "counter", (MODEL, DEPLOYMENT, "kind"))
        self._upstream_errors = f("llmproxy_upstream_errors", "Failed upstream attempts by kind", "counter",
                                  (PROVIDER, DEPLOYMENT, "kind"))
        self._dropped = f("llmproxy_dropped_params", "Request fields dropped for a deployment "
                          "(unsupported_params: drop)", "counter", (DEPLOYMENT, "param"))
        self._health_checks = f("llmproxy_health_checks", "Active health probes by result (pass, fail)",
                                "counter", (DEPLOYMENT, "result"))
        self._reloads = f("llmproxy_config_reloads", "Config reload attempts by result", "counter", ("result",))
        self._reload_ok = f("llmproxy_config_last_reload_successful", "1 if the last config reload succeeded",
                            "gauge", ())
        self._reload_at = f("llmproxy_config_last_reload_success_timestamp_seconds",
                            "Unix time of the last successful config load", "gauge", ())
        self._cache_requests = f("llmproxy_cache_requests", "Response cache verdicts: hit, miss, bypass", "counter",
                                 ("result",))
        self._cache_backend_errors = f("llmproxy_cache_backend_errors",
                                       "Response cache backend operations that failed (Redis unreachable...): "
                                       "served from upstream instead", "counter", ())
        self._response_store_errors = f("llmproxy_response_store_errors",
                                        "Stored-response operations state.redis could not answer, by op: put "
                                        "(a response not stored), get and delete (answered 503)", "counter",
                                        ("op",))
        # No sample until state.redis is configured (redis_up() sets it).
        self._redis_up = f("llmproxy_redis_up", "1 while state.redis answers, 0 during an outage "
                           "(the proxy then serves on local state)", "gauge", ())
        build = f("llmproxy_build_info", "llmproxy version", "gauge", ("version",))
        self.families = (
            self._requests, self._duration, self._ttft, self._usage, self._tokens, self._cost,
            self._in_flight, self._retries, self._fallbacks, self._rate_limited, self._upstream_errors,
            self._dropped, self._health_checks, self._reloads, self._reload_ok, self._reload_at,
            self._cache_requests, self._cache_backend_errors, self._response_store_errors, self._redis_up, build,
        )
        # Shown only once they have a sample: the features they describe are configured.
        self.optional = frozenset({self._cache_requests, self._cache_backend_errors, self._response_store_errors,
                                   self._redis_up})
        build.value((version,)).v = 1.0
        self._reload_values = (self._reloads.value(("success",)), self._reloads.value(("failure",)))
        self._reload_ok.value(()).v = 1.0
        self._reload_at.value(()).v = time.time()

        self._finished: dict[tuple[str, str, str, str, bool], _Finished] = {}
        self._started: dict[tuple[str, str], Value] = {}
        self._rejected: dict[tuple[str, str, str], Value] = {}
        self._events: dict[tuple[str, ...], Value] = {}
        self._reasons: set[str] = set()
        self._providers: dict[str, str] = {}
        self._known_models: set[str] | None = None
        self._known_deployments: set[str] | None = None
        self._breakers: dict[str, str] = {}  # pushed by breaker_state()
        self._source: Callable[[], Iterable[DeploymentSample]] | None = None
        self._keys: Callable[[], Iterable[tuple[str, int, float, float | None, int]]] | None = None
        self._cache_source: Callable[[], tuple[float, float]] | None = None
        self._cache_values: dict[str, Value] = {}
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    # -- configuration (start-up and every reload)

    def configure(self, models: Iterable[str], deployments: Mapping[str, str]) -> None:
        """Name the config's models and deployments (id → provider type).

        From the first call on, label values outside every set named so far
        become ``"other"``. Deployments this config dropped lose their series.
        """
        previous = set(self._providers)
        self._providers = {dep: gen_ai_provider_name(t) for dep, t in deployments.items()}
        self._known_models = (self._known_models or set()) | set(models)
        self._known_deployments = (self._known_deployments or set()) | set(deployments)
        for dep in previous - set(deployments):
            self.forget_deployment(dep)
        for dep in deployments:
            self._breakers.setdefault(dep, "closed")

    def watch_deployments(self, source: Callable[[], Iterable[DeploymentSample]]) -> None:
        """Read breaker state, in-flight and breaker opens per deployment at scrape time."""
        self._source = source

    def watch_keys(self, source: Callable[[], Iterable[tuple[str, int, float, float | None, int]]]) -> None:
        """Per-key series, read at scrape time from the key service (their
        labels: configured key names only; the request path pays nothing)."""
        self._keys = source

    def forget_deployment(self, deployment: str) -> None:
        """Drop every series labelled with ``deployment`` (removed by a reload)."""
        for fam in self.families:
            if DEPLOYMENT in fam.labelnames:
                i = fam.labelnames.index(DEPLOYMENT)
                for labels in [k for k in fam.children if k[i] == deployment]:
                    del fam.children[labels]
        self._breakers.pop(deployment, None)
        # Cached series are rebuilt on next use (a request still finishing on
        # the old config re-creates its series; that is correct).
        self._finished = {k: v for k, v in self._finished.items() if k[2] != deployment}
        self._events = {k: v for k, v in self._events.items() if deployment not in k[1:]}

    # -- the request path

    def request_started(self, model: str, deployment: str = "", *, operation: str = "chat") -> None:
        """A client request for ``model`` begins (call once the model is resolved).

        ``deployment`` is accepted for symmetry and not used: in-flight is
        counted per model because a retry can move the request elsewhere.
        """
        self.started(operation, model)

    def started(self, operation: str, model: str) -> None:
        """``request_started`` with positional arguments (the per-request call)."""
        v = self._started.get((operation, model))
        if v is None:
            v = self._started_value(operation, model)
        v.v += 1

    def request_finished(
        self,
        model: str,
        deployment: str,
        *,
        status: int,
        duration: float,
        ttft: float | None,
        stream: bool,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cost: float | None,
        operation: str = "chat",
    ) -> None:
        """A request that ``request_started`` counted has been answered.

        ``deployment`` answered it (or was tried last); "" when none was
        reached (no capacity, every breaker open).
        """
        self.finished(operation, model, deployment, status, duration, ttft, stream, prompt_tokens,
                      completion_tokens, cost)

    def finished(
        self, operation: str, model: str, deployment: str, status: int, duration: float, ttft: float | None,
        stream: bool, prompt_tokens: int | None, completion_tokens: int | None, cost: float | None,
    ) -> None:
        """``request_finished`` with positional arguments (the per-request call)."""
        key = (operation, model, deployment, _STATUS_CLASSES[status // 100] if 0 < status < 600 else OTHER,
               stream)
        s = self._finished.get(key)
        if s is None:
            s = self._finished_series(key)
        s.in_flight.v -= 1
        s.requests.v += 1
        h = s.duration
        h.counts[bisect_left(h.bounds, duration)] += 1  # Hist.observe, inlined: once per request
        h.sum += duration
        if ttft is not None:
            h = s.ttft or self._lazy(s, "ttft")
            h.counts[bisect_left(h.bounds, ttft)] += 1
            h.sum += ttft
        if prompt_tokens is not None and prompt_tokens >= 0:
            h = s.usage_in or self._lazy(s, "usage_in")
            h.observe(prompt_tokens)
            v = s.tokens_in or self._lazy(s, "tokens_in")
            v.v += prompt_tokens
        if completion_tokens is not None and completion_tokens >= 0:
            h = s.usage_out or self._lazy(s, "usage_out")
            h.observe(completion_tokens)
            v = s.tokens_out or self._lazy(s, "tokens_out")
            v.v += completion_tokens
        if cost is not None and cost > 0:
            v = s.cost or self._lazy(s, "cost")
            v.v += cost

    def request_rejected(self, model: str, status: int, *, operation: str = "chat") -> None:
        """A request answered before ``request_started`` (bad body, unknown model, 401, 413...).

        Counted in ``llmproxy_requests_total`` with deployment "" (and model
        "" when it was never resolved).
        """
        key = (operation, model, status_class(status))
        v = self._rejected.get(key)
        if v is None:
            v = self._rejected[key] = self._requests.value(
                (operation, "", self._model(model), "", key[2], "false")
            )
        v.v += 1

    def retry(self, model: str, deployment: str, reason: str) -> None:
        """An attempt on ``deployment`` failed for ``reason`` and the request tries again."""
        key = ("retry", model, deployment, reason)
        v = self._events.get(key)
        if v is None:
            if reason not in self._reasons:
                if len(self._reasons) >= _REASON_CAP or not reason.replace("_", "").isalnum():
                    reason = OTHER
                else:
                    self._reasons.add(reason)
            v = self._events[key] = self._retries.value((self._model(model), self._deployment(deployment), reason))
        v.v += 1

    def fallback(self, from_model: str, to_model: str) -> None:
        key = ("fallback", from_model, to_model)
        v = self._events.get(key)
        if v is None:
            v = self._events[key] = self._fallbacks.value((self._model(from_model), self._model(to_model)))
        v.v += 1

    def rate_limited(self, model: str, deployment: str, kind: str) -> None:
        """The proxy's own limit ``kind`` (rpm, tpm, concurrency) refused an attempt."""
        key = ("limit", model, deployment, kind)
        v = self._events.get(key)
        if v is None:
            k = kind if kind in RATE_LIMIT_KINDS else OTHER
            v = self._events[key] = self._rate_limited.value((self._model(model), self._deployment(deployment), k))
        v.v += 1

    def upstream_error(self, deployment: str, kind: str) -> None:
        """An upstream attempt failed; ``kind`` as ``upstream_error_kind`` names it."""
        key = ("upstream", deployment, kind)
        v = self._events.get(key)
        if v is None:
            k = kind if kind in UPSTREAM_ERROR_KINDS else OTHER
            dep = self._deployment(deployment)
            v = self._events[key] = self._upstream_errors.value((self._providers.get(dep, ""), dep, k))
        v.v += 1

    def dropped_param(self, deployment: str, param: str) -> None:
        """``param`` was dropped from a request to ``deployment`` (a known
        OpenAI parameter name: the caller drops no other, so the set is bounded)."""
        key = ("dropped", deployment, param)
        v = self._events.get(key)
        if v is None:
            v = self._events[key] = self._dropped.value((self._deployment(deployment), param))
        v.v += 1

    def health_check(self, deployment: str, ok: bool) -> None:
        """One active health probe of ``deployment`` finished (server/health_checks.py)."""
        key = ("health", deployment, "pass" if ok else "fail")
        v = self._events.get(key)
        if v is None:
            v = self._events[key] = self._health_checks.value((self._deployment(deployment), key[2]))
        v.v += 1

    def breaker_state(self, deployment: str, state: str) -> None:
        """Push a breaker transition (ignored once ``watch_deployments`` has a source)."""
        self._breakers[self._deployment(deployment)] = state if state in BREAKER_STATES else OTHER

    def watch_cache(self, source: Callable[[], tuple[float, float]]) -> None:
        """Read the response cache's (bytes, evictions so far) at scrape time."""
        self._cache_source = source

    def cache_configured(self, results: Iterable[str]) -> None:
        """The response cache is on: its counters exist from now on, at 0."""
        for result in results:
            self._cache_values.setdefault(result, self._cache_requests.value((result,)))
        self._cache_backend_errors.value(())

    def cache_request(self, result: str) -> None:
        """One request's cache verdict (keying.RESULTS)."""
        v = self._cache_values.get(result)
        if v is None:
            v = self._cache_values[result] = self._cache_requests.value((result,))
        v.v += 1

    def cache_backend_error(self) -> None:
        self._cache_backend_errors.value(()).v += 1

    def response_store_configured(self, ops: tuple[str, ...]) -> None:
        """The Redis store is on: its error counters show, at 0."""
        for op in ops:
            self._response_store_errors.value((op,))

    def response_store_error(self, op: str) -> None:
        self._response_store_errors.value((op,)).v += 1

    def reload(self, ok: bool) -> None:
        self._reload_values[0 if ok else 1].v += 1
        self._reload_ok.value(()).v = 1.0 if ok else 0.0
        if ok:
            self._reload_at.value(()).v = time.time()

    def redis_up(self, up: bool) -> None:
        """state.redis health (pushed by SharedRedis on every change)."""
        self._redis_up.value(()).v = 1.0 if up else 0.0

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its Content-Type."""
        return generate_latest(self.registry), CONTENT_TYPE

    # -- scrape time

    def scraped(self) -> Iterator[Metric]:
        if self._cache_source is not None:
            used, evictions = self._cache_source()
            size = GaugeMetricFamily("llmproxy_cache_bytes", "Bytes the response cache holds (memory backend; "
                                     "Redis: not counted here)", labels=[])
            size.add_metric([], used)
            yield size
            ev = CounterMetricFamily("llmproxy_cache_evictions", "Response cache entries evicted to make room "
                                     "(least recently used first)", labels=[])
            ev.add_metric([], evictions)
            yield ev
        samples = list(self._source()) if self._source is not None else None
        states = {s[0]: s[1] for s in samples} if samples is not None else self._breakers
        fam = GaugeMetricFamily(
            "llmproxy_breaker_state",
            "Circuit breaker state per deployment: 1 for the current state, 0 for the others",
            labels=[DEPLOYMENT, "state"],
        )
        for dep, current in states.items():
            for st in BREAKER_STATES:
                fam.add_metric([dep, st], 1.0 if st == current else 0.0)
        yield fam
        if samples is None:
            return
        in_flight = GaugeMetricFamily("llmproxy_deployment_in_flight", "Upstream attempts in flight per deployment",
                                      labels=[DEPLOYMENT])
        opens = CounterMetricFamily("llmproxy_breaker_opens", "Times the deployment's circuit breaker opened",
                                    labels=[DEPLOYMENT])
        for dep, _, n, opened in samples:
            in_flight.add_metric([dep], float(n))
            opens.add_metric([dep], float(opened))
        yield in_flight
        yield opens
        if self._keys is not None:
            yield from _key_families(self._keys())

    # -- cache misses: resolve label values, create series

    def _model(self, model: str) -> str:
        known = self._known_models
        return model if known is None or model == "" or model in known else OTHER

    def _deployment(self, deployment: str) -> str:
        known = self._known_deployments
        return deployment if known is None or deployment == "" or deployment in known else OTHER

    def _started_value(self, operation: str, model: str) -> Value:
        v = self._started[(operation, model)] = self._in_flight.value((operation, self._model(model)))
        return v

    def _finished_series(self, key: tuple[str, str, str, str, bool]) -> _Finished:
        operation, model, deployment, sc, stream = key
        d = self._deployment(deployment)
        base = (operation, self._providers.get(d, ""), self._model(model), d)
        s = self._finished[key] = _Finished(
            base,
            requests=self._requests.value((*base, sc, "true" if stream else "false")),
            duration=self._duration.hist((*base, sc if sc in ("4xx", "5xx", OTHER) else "")),
            in_flight=self._started.get((operation, model)) or self._started_value(operation, model),
        )
        return s

    def _lazy(self, s: _Finished, name: str) -> Any:
        fam, extra = {
            "ttft": (self._ttft, ()), "cost": (self._cost, ()),
            "usage_in": (self._usage, ("input",)), "usage_out": (self._usage, ("output",)),
            "tokens_in": (self._tokens, ("input",)), "tokens_out": (self._tokens, ("output",)),
        }[name]
        child = fam.child((*s.base, *extra))
        setattr(s, name, child)
        return child


METRICS = web.AppKey("llmproxy.metrics", Metrics)


async def handle_metrics(request: web.Request) -> web.Response:
    """``GET /metrics`` in the Prometheus text format."""
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def metrics_app(metrics: Metrics) -> web.Application:
    """A bare app serving only ``/metrics``, for a separate metrics port."""
    app = web.Application()
    app[METRICS] = metrics
    app.router.add_get("/metrics", handle_metrics)
    return app

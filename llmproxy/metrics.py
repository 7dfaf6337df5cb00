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
  recorded as ``"other"`` (a client's free text can never mint a series);
- the hot path (``request_started`` / ``request_finished``) does one dict
  lookup for its cached label children and then only ``inc``/``observe``;
  ``.labels()`` runs once per new label combination;
- breaker states and per-deployment in-flight counts are read at scrape time
  from a source the app registers (``watch_deployments``), so they cost the
  request path nothing and are never stale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from .errors import UpstreamError, UpstreamProtocolError, UpstreamStatusError, UpstreamTimeout

log = logging.getLogger("llmproxy.metrics")

# Seconds. LLM calls run from tens of milliseconds (a cached embedding) to
# minutes (a long reasoning stream); boundaries sit where SLOs are written.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
# Tokens: powers of 4 from 1 to 1,048,576, the semconv's advice cut at 1M.
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
# registry, gen-ai attributes); types without one keep their own name.
PROVIDER_NAMES: Mapping[str, str] = {
    "openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic",
    "bedrock": "aws.bedrock", "gemini": "gcp.gemini", "vertex": "gcp.vertex_ai",
    "cohere": "cohere", "mistral": "mistral_ai", "groq": "groq", "deepseek": "deepseek",
    "xai": "x_ai", "perplexity": "perplexity", "watsonx": "ibm.watsonx.ai",
}

_STATUS_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")

# (deployment id, breaker state, in-flight attempts, breaker opens so far)
DeploymentSample = tuple[str, str, int, int]


def status_class(status: int) -> str:
    c = status // 100
    return _STATUS_CLASSES[c] if 0 < c < 6 else OTHER


def gen_ai_provider_name(provider_type: str) -> str:
    return PROVIDER_NAMES.get(provider_type, provider_type)


def upstream_error_kind(exc: UpstreamError) -> str:
    """The ``kind`` label for an upstream failure (see errors.py's tree)."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamStatusError):
        if exc.status == 429:
            return "status_429"
        return "status_5xx" if exc.status >= 500 else "status_4xx"
    if isinstance(exc, UpstreamProtocolError):
        return "protocol"
    return "connect"  # UpstreamUnreachable and anything else that never got an answer


class _Finished:
    """Label children for one (operation, model, deployment, status class, stream)."""

    __slots__ = ("requests", "duration", "ttft", "usage_in", "usage_out", "tokens_in", "tokens_out",
                 "cost", "in_flight")

    def __init__(self, **children: Any) -> None:
        for k, v in children.items():
            setattr(self, k, v)


class _Scraped(Collector):
    """Breaker states and per-deployment in-flight counts, read at scrape time."""

    def __init__(self) -> None:
        self.pushed: dict[str, str] = {}
        self.source: Callable[[], Iterable[DeploymentSample]] | None = None

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "llmproxy_breaker_state",
            "Circuit breaker state per deployment: 1 for the current state, 0 for the others",
            labels=[DEPLOYMENT, "state"],
        )
        samples: list[DeploymentSample] = []
        if self.source is not None:
            samples = list(self.source())
            states = {dep: st for dep, st, _, _ in samples}
        else:
            states = self.pushed
        for dep, current in states.items():
            for st in BREAKER_STATES:
                state.add_metric([dep, st], 1.0 if st == current else 0.0)
        yield state
        if self.source is not None:
            in_flight = GaugeMetricFamily(
                "llmproxy_deployment_in_flight", "Upstream attempts in flight per deployment",
                labels=[DEPLOYMENT],
            )
            opens = CounterMetricFamily(
                "llmproxy_breaker_opens", "Times the deployment's circuit breaker opened",
                labels=[DEPLOYMENT],
            )
            for dep, _, n, opened in samples:
                in_flight.add_metric([dep], float(n))
                opens.add_metric([dep], float(opened))
            yield in_flight
            yield opens


class Metrics:
    def __init__(self, version: str = "") -> None:
        r = self.registry = CollectorRegistry()
        self._duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "LLM request duration at the proxy, from request received to last byte sent",
            [*BASE, ERROR_TYPE], buckets=DURATION_BUCKETS, registry=r,
        )
        self._ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from request received to the first streamed content sent to the client",
            list(BASE), buckets=TTFT_BUCKETS, registry=r,
        )
        self._usage = Histogram(
            "gen_ai_client_token_usage", "Tokens per request, by gen_ai_token_type input/output",
            [*BASE, TOKEN_TYPE], buckets=TOKEN_BUCKETS, registry=r,
        )
        self._requests = Counter(
            "llmproxy_requests", "LLM requests answered, by status class",
            [*BASE, "status_class", "stream"], registry=r,
        )
        self._tokens = Counter(
            "llmproxy_tokens", "Tokens reported by upstreams", [*BASE, TOKEN_TYPE], registry=r,
        )
        self._cost = Counter(
            "llmproxy_cost_usd", "Estimated cost in US dollars from the config's prices",
            list(BASE), registry=r,
        )
        self._in_flight = Gauge(
            "llmproxy_requests_in_flight", "Client requests being answered", [OP, MODEL], registry=r,
        )
        self._retries = Counter(
            "llmproxy_retries", "Attempts retried after a failure, by the failed deployment and reason",
            [MODEL, DEPLOYMENT, "reason"], registry=r,
        )
        self._fallbacks = Counter(
            "llmproxy_fallbacks", "Requests moved to a fallback model", [MODEL, "fallback_model"], registry=r,
        )
        self._rate_limited = Counter(
            "llmproxy_rate_limited", "Attempts refused by the proxy's own limits",
            [MODEL, DEPLOYMENT, "kind"], registry=r,
        )
        self._upstream_errors = Counter(
            "llmproxy_upstream_errors", "Failed upstream attempts by kind",
            [PROVIDER, DEPLOYMENT, "kind"], registry=r,
        )
        self._reloads = Counter(
            "llmproxy_config_reloads", "Config reload attempts by result", ["result"], registry=r,
        )
        self._reload_ok = Gauge(
            "llmproxy_config_last_reload_successful", "1 if the last config reload succeeded", registry=r,
        )
        self._reload_at = Gauge(
            "llmproxy_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load", registry=r,
        )
        Gauge("llmproxy_build_info", "llmproxy version", ["version"], registry=r).labels(version).set(1)
        self._reload_children = (self._reloads.labels("success"), self._reloads.labels("failure"))
        self._reload_ok.set(1)
        self._reload_at.set(time.time())
        self._scraped = _Scraped()
        r.register(self._scraped)

        self._finished: dict[tuple[str, str, str, str, bool], _Finished] = {}
        self._started: dict[tuple[str, str], Any] = {}
        self._rejected: dict[tuple[str, str, str], Any] = {}
        self._events: dict[tuple[Any, ...], Any] = {}
        self._reasons: set[str] = set()
        self._providers: dict[str, str] = {}
        self._known_models: set[str] | None = None
        self._known_deployments: set[str] | None = None
        # deployment id → (metric, label values) created for it, for forget_deployment
        self._series: dict[str, set[tuple[Any, tuple[str, ...]]]] = {}

    # -- configuration (start-up and every reload)

    def configure(self, models: Iterable[str], deployments: Mapping[str, str]) -> None:
        """Name the config's models and deployments (id → provider type).

        Label values outside every set named so far become ``"other"``.
        Deployments that this config dropped lose their series.
        """
        previous = set(self._providers)
        self._providers = {dep: gen_ai_provider_name(t) for dep, t in deployments.items()}
        self._known_models = (self._known_models or set()) | set(models)
        self._known_deployments = (self._known_deployments or set()) | set(deployments)
        for dep in previous - set(deployments):
            self.forget_deployment(dep)
        for dep in deployments:
            self._scraped.pushed.setdefault(dep, "closed")

    def watch_deployments(self, source: Callable[[], Iterable[DeploymentSample]]) -> None:
        """Read breaker state, in-flight and breaker opens per deployment at scrape time."""
        self._scraped.source = source

    def forget_deployment(self, deployment: str) -> None:
        for metric, labels in self._series.pop(deployment, ()):
            metric.remove(*labels)
        self._scraped.pushed.pop(deployment, None)
        for cache in (self._finished, self._events):
            for key in [k for k in cache if deployment in k]:
                del cache[key]

    # -- the request path

    def request_started(self, model: str, deployment: str = "", *, operation: str = "chat") -> None:
        """A client request for ``model`` begins (call once the model is resolved).

        ``deployment`` is accepted for symmetry and not used: in-flight is
        counted per model because a retry can move the request elsewhere.
        """
        child = self._started.get((operation, model))
        if child is None:
            child = self._started_child(operation, model)
        child.inc()

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

        ``deployment`` is the one that answered (or was tried last), or ""
        when none was reached (no capacity, every breaker open).
        """
        sc = _STATUS_CLASSES[status // 100] if 0 < status < 600 else OTHER
        key = (operation, model, deployment, sc, stream)
        s = self._finished.get(key)
        if s is None:
            s = self._finished_children(key)
        s.in_flight.dec()
        s.requests.inc()
        s.duration.observe(duration)
        if ttft is not None:
            s.ttft.observe(ttft)
        if prompt_tokens is not None and prompt_tokens >= 0:
            s.usage_in.observe(prompt_tokens)
            s.tokens_in.inc(prompt_tokens)
        if completion_tokens is not None and completion_tokens >= 0:
            s.usage_out.observe(completion_tokens)
            s.tokens_out.inc(completion_tokens)
        if cost is not None and cost > 0:
            s.cost.inc(cost)

    def request_rejected(self, model: str, status: int, *, operation: str = "chat") -> None:
        """A request answered before ``request_started`` (bad body, unknown model, 401, 413...).

        Counted in ``llmproxy_requests_total`` with deployment "" and, when
        the model was never resolved, model "".
        """
        sc = status_class(status)
        key = (operation, model, sc)
        child = self._rejected.get(key)
        if child is None:
            m = self._model(model)
            child = self._rejected[key] = self._requests.labels(operation, "", m, "", sc, "false")
        child.inc()

    def retry(self, model: str, deployment: str, reason: str) -> None:
        """An attempt on ``deployment`` failed for ``reason`` and the request tries again."""
        key = ("retry", model, deployment, reason)
        child = self._events.get(key)
        if child is None:
            if reason not in self._reasons:
                if len(self._reasons) >= _REASON_CAP or not reason.replace("_", "").isalnum():
                    reason = OTHER
                else:
                    self._reasons.add(reason)
            dep = self._deployment(deployment)
            child = self._event_child(key, self._retries, dep, (self._model(model), dep, reason))
        child.inc()

    def fallback(self, from_model: str, to_model: str) -> None:
        key = ("fallback", from_model, to_model)
        child = self._events.get(key)
        if child is None:
            child = self._events[key] = self._fallbacks.labels(self._model(from_model), self._model(to_model))
        child.inc()

    def rate_limited(self, model: str, deployment: str, kind: str) -> None:
        """The proxy's own limit ``kind`` (rpm, tpm, concurrency) refused an attempt."""
        key = ("limit", model, deployment, kind)
        child = self._events.get(key)
        if child is None:
            k = kind if kind in RATE_LIMIT_KINDS else OTHER
            dep = self._deployment(deployment)
            child = self._event_child(key, self._rate_limited, dep, (self._model(model), dep, k))
        child.inc()

    def upstream_error(self, deployment: str, kind: str) -> None:
        """An upstream attempt failed; ``kind`` from ``upstream_error_kind``."""
        key = ("upstream", deployment, kind)
        child = self._events.get(key)
        if child is None:
            k = kind if kind in UPSTREAM_ERROR_KINDS else OTHER
            dep = self._deployment(deployment)
            child = self._event_child(key, self._upstream_errors, dep, (self._providers.get(dep, ""), dep, k))
        child.inc()

    def breaker_state(self, deployment: str, state: str) -> None:
        """Push a breaker transition (unneeded once ``watch_deployments`` is set)."""
        self._scraped.pushed[self._deployment(deployment)] = state if state in BREAKER_STATES else OTHER

    def reload(self, ok: bool) -> None:
        self._reload_children[0 if ok else 1].inc()
        self._reload_ok.set(1 if ok else 0)
        if ok:
            self._reload_at.set(time.time())

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- cache misses: resolve label values and create children

    def _model(self, model: str) -> str:
        known = self._known_models
        return model if known is None or model == "" or model in known else OTHER

    def _deployment(self, deployment: str) -> str:
        known = self._known_deployments
        return deployment if known is None or deployment == "" or deployment in known else OTHER

    def _track(self, deployment: str, metric: Any, labels: tuple[str, ...]) -> Any:
        if deployment:
            self._series.setdefault(deployment, set()).add((metric, labels))
        return metric.labels(*labels)

    def _started_child(self, operation: str, model: str) -> Any:
        child = self._started[(operation, model)] = self._in_flight.labels(operation, self._model(model))
        return child


    def _event_child(self, key: tuple[Any, ...], metric: Any, deployment: str, labels: tuple[str, ...]) -> Any:
        child = self._events[key] = self._track(deployment, metric, labels)
        return child

    def _finished_children(self, key: tuple[str, str, str, str, bool]) -> _Finished:
        operation, model, deployment, sc, stream = key
        m, d = self._model(model), self._deployment(deployment)
        base = (operation, self._providers.get(d, ""), m, d)
        in_flight = self._started.get((operation, model)) or self._started_child(operation, model)
        t = self._track
        s = _Finished(
            requests=t(d, self._requests, (*base, sc, "true" if stream else "false")),
            duration=t(d, self._duration, (*base, sc if sc in ("4xx", "5xx", OTHER) else "")),
            ttft=t(d, self._ttft, base),
            usage_in=t(d, self._usage, (*base, "input")),
            usage_out=t(d, self._usage, (*base, "output")),
            tokens_in=t(d, self._tokens, (*base, "input")),
            tokens_out=t(d, self._tokens, (*base, "output")),
            cost=t(d, self._cost, base),
            in_flight=in_flight,
        )
        self._finished[key] = s
        return s


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

"""Optional OpenTelemetry tracing (``pip install 'llmproxy[otel]'``).

``make_tracer(settings)`` returns a ``Tracer``: the real one when tracing is
enabled and the extra is installed, otherwise ``NOOP_TRACER``, whose methods
do nothing and allocate nothing. Callers never branch on which they hold.

Invariants:
- nothing here imports ``opentelemetry`` at module level; only
  ``make_tracer`` with ``enabled`` set does, so a proxy without the extra, or
  with tracing off, never loads it;
- the SDK's global providers are left alone: the tracer owns its own
  ``TracerProvider`` and W3C propagator (an app may hold several);
- span attributes come from the config and from numbers (token counts,
  sampling parameters); prompts, completions and credentials never become
  attributes, and error messages pass through the log redactor first.

Spans follow the GenAI semantic conventions: name ``"{operation} {model}"``,
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, ``server.address`` / ``server.port``, ``error.type``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from .. import __version__
from .metrics import gen_ai_provider_name

if TYPE_CHECKING:
    from .logs import Redactor

log = logging.getLogger("llmproxy.tracing")

AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]

# Numeric request parameters recorded as gen_ai.request.* (client body key → attribute).
_REQUEST_PARAMS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
)


@dataclass(frozen=True, slots=True)
class TracingSettings:
    enabled: bool = False
    # OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces;
    # None lets the exporter read OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT.
    endpoint: str | None = None
    service_name: str = "llmproxy"
    sample_ratio: float = 1.0  # of new traces; a sampled parent is always followed
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # e.g. collector auth


class Span(Protocol):
    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def set_attributes(self, attributes: Attributes) -> None: ...

    def set_error(self, error_type: str, message: str | None = None) -> None: ...


class ActiveSpan(Span, Protocol):
    """A span from ``Tracer.begin``: not made current; the caller ends it."""

    def inject_traceparent(self, headers: MutableMapping[str, str]) -> None: ...

    def end(self) -> None:
        """Idempotent."""


class Tracer(Protocol):
    enabled: bool

    def start_span(
        self,
        name: str,
        attributes: Attributes | None = None,
        *,
        kind: str = "client",
        parent_headers: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[Span]:
        """A span, current inside the ``with``. ``kind``: client, server or internal.
        ``parent_headers`` (an incoming request's headers) continue a W3C trace."""

    def begin(self, name: str, attributes: Attributes | None = None, *, kind: str = "client") -> ActiveSpan:
        """A child of the current span that the caller ends (fits a try/finally)."""

    def inject_traceparent(self, headers: MutableMapping[str, str]) -> None:
        """Add ``traceparent`` (and ``tracestate``) for the current span to ``headers``."""

    def shutdown(self) -> None:
        """Flush and stop exporting (blocking: call it off the event loop)."""


# --------------------------------------------------------------------------- no-op


class _NoopSpan:
    __slots__ = ()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def set_attributes(self, attributes: Attributes) -> None:
        pass

    def set_error(self, error_type: str, message: str | None = None) -> None:
        pass

    def inject_traceparent(self, headers: MutableMapping[str, str]) -> None:
        pass

    def end(self) -> None:
        pass


class _NoopContext:
    __slots__ = ()

    def __enter__(self) -> _NoopSpan:
        return NOOP_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


class NoopTracer:
    enabled = False

    def start_span(
        self,
        name: str,
        attributes: Attributes | None = None,
        *,
        kind: str = "client",
        parent_headers: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[Span]:
        return _NOOP_CONTEXT

    def begin(self, name: str, attributes: Attributes | None = None, *, kind: str = "client") -> ActiveSpan:
        return NOOP_SPAN

    def inject_traceparent(self, headers: MutableMapping[str, str]) -> None:
        pass

    def shutdown(self) -> None:
        pass


NOOP_SPAN = _NoopSpan()
_NOOP_CONTEXT = _NoopContext()
NOOP_TRACER = NoopTracer()


# --------------------------------------------------------------------------- OpenTelemetry


class _OtelSpan:
    __slots__ = ("_ended", "_span", "_tracer", "errored")

    def __init__(self, span: Any, tracer: _OtelTracer) -> None:
        self._span = span
        self._tracer = tracer
        self.errored = False
        self._ended = False

    def inject_traceparent(self, headers: MutableMapping[str, str]) -> None:
        self._tracer.inject_for(self._span, headers)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._span.end()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def set_attributes(self, attributes: Attributes) -> None:
        self._span.set_attributes(attributes)

    def set_error(self, error_type: str, message: str | None = None) -> None:
        self.errored = True
        self._span.set_attribute("error.type", error_type)
        redactor = self._tracer.redactor
        if message is not None and redactor is not None:
            message = redactor.redact(message)
        self._span.set_status(self._tracer.error_status(message))


class _OtelTracer:
    enabled = True

    def __init__(self, provider: Any, redactor: Redactor | None) -> None:
        from opentelemetry.trace import (
            SpanKind,
            Status,
            StatusCode,
            set_span_in_context,
        )
        from opentelemetry.trace.propagation.tracecontext import (
            TraceContextTextMapPropagator,
        )

        self.provider = provider
        self.redactor = redactor
        self._tracer = provider.get_tracer("llmproxy", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._kinds = {"client": SpanKind.CLIENT, "server": SpanKind.SERVER, "internal": SpanKind.INTERNAL}
        self._status, self._error = Status, StatusCode.ERROR
        self._in_context = set_span_in_context

    def error_status(self, message: str | None) -> Any:
        return self._status(self._error, message)

    @contextmanager
    def start_span(
        self,
        name: str,
        attributes: Attributes | None = None,
        *,
        kind: str = "client",
        parent_headers: Mapping[str, str] | None = None,
    ) -> Iterator[Span]:
        parent = self._propagator.extract(parent_headers) if parent_headers is not None else None
        with self._tracer.start_as_current_span(
            name, context=parent, kind=self._kinds[kind], attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            wrapped = _OtelSpan(span, self)
            try:
                yield wrapped
            except BaseException as exc:
                if not wrapped.errored:
                    cancelled = isinstance(exc, asyncio.CancelledError)
                    wrapped.set_error("cancelled" if cancelled else type(exc).__qualname__)
                raise

    def begin(self, name: str, attributes: Attributes | None = None, *, kind: str = "client") -> ActiveSpan:
        span = self._tracer.start_span(name, kind=self._kinds[kind], attributes=attributes,
                                       record_exception=False, set_status_on_exception=False)
        return _OtelSpan(span, self)

    def inject_traceparent(self, headers: MutableMapping[str, str]) -> None:
        self._propagator.inject(headers)

    def inject_for(self, span: Any, headers: MutableMapping[str, str]) -> None:
        self._propagator.inject(headers, context=self._in_context(span))

    def shutdown(self) -> None:
        self.provider.shutdown()


def make_tracer(
    settings: TracingSettings | Any | None,
    *,
    redactor: Redactor | None = None,
    exporter: Any = None,
) -> Tracer:
    """The app's tracer. ``settings`` needs ``enabled``, ``endpoint``,
    ``service_name`` and optionally ``sample_ratio`` / ``headers``.

    ``exporter`` (tests: ``InMemorySpanExporter``) replaces OTLP and is fed
    synchronously, span by span.
    """
    if settings is None or not settings.enabled:
        return NOOP_TRACER
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SimpleSpanProcessor,
        )
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
    except ImportError as exc:
        log.warning("tracing is enabled but OpenTelemetry is not installed (%s); "
                    "install llmproxy[otel] to export spans; tracing is off", exc)
        return NOOP_TRACER
    ratio = float(getattr(settings, "sample_ratio", 1.0))
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name, "service.version": __version__}),
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )
    if exporter is None:
        headers = dict(getattr(settings, "headers", None) or {}) or None
        exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=headers)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return _OtelTracer(provider, redactor)


# --------------------------------------------------------------------------- gen_ai attributes


def span_name(operation: str, model: str) -> str:
    return f"{operation} {model}"


def request_attributes(
    *,
    operation: str,
    provider_type: str,
    request_model: str,
    base_url: str | None = None,
    deployment: str | None = None,
    public_model: str | None = None,
    body: Mapping[str, Any] | None = None,
) -> dict[str, AttributeValue]:
    """Attributes known before the call: from the config and the body's numbers."""
    attrs: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": gen_ai_provider_name(provider_type),
        "gen_ai.request.model": request_model,
    }
    if base_url:
        parts = urlsplit(base_url)
        if parts.hostname:  # never the userinfo part
            attrs["server.address"] = parts.hostname
            try:
                port = parts.port
            except ValueError:
                port = None
            attrs["server.port"] = port or (443 if parts.scheme == "https" else 80)
    if deployment is not None:
        attrs["llmproxy.deployment"] = deployment
    if public_model is not None:
        attrs["llmproxy.model"] = public_model
    if body is not None:
        for key, attr in _REQUEST_PARAMS:
            value = body.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attrs[attr] = value
    return attrs


def response_attributes(
    *,
    response_model: str | None = None,
    response_id: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    finish_reasons: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Attributes known after the call (unknown ones are left out)."""
    attrs: dict[str, Any] = {}
    if response_model:
        attrs["gen_ai.response.model"] = response_model
    if response_id:
        attrs["gen_ai.response.id"] = response_id
    if input_tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = input_tokens
    if output_tokens is not None:
        attrs["gen_ai.usage.output_tokens"] = output_tokens
    if finish_reasons:
        attrs["gen_ai.response.finish_reasons"] = finish_reasons
    return attrs


TRACER = web.AppKey("llmproxy.tracer", Tracer)

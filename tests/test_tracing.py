"""Tracing: nothing of OpenTelemetry loads unless asked; the real path with an in-memory exporter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from llmproxy.observe.logs import MASK, Redactor
from llmproxy.observe.tracing import (
    NOOP_TRACER,
    TracingSettings,
    make_tracer,
    request_attributes,
    response_attributes,
    span_name,
)

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_tracing_off_imports_nothing_of_opentelemetry() -> None:
    result = run_python(
        """
        import sys
        import llmproxy.observe.tracing as t
        import llmproxy.observe.observation, llmproxy.observe.metrics, llmproxy.observe.logs
        for settings in (None, t.TracingSettings(), t.TracingSettings(enabled=False, endpoint="http://x")):
            tracer = t.make_tracer(settings)
            assert tracer is t.NOOP_TRACER and not tracer.enabled
            with tracer.start_span("chat m", {"a": 1}, kind="server", parent_headers={}) as span:
                span.set_attribute("b", 2)
                span.set_error("x", "y")
            child = tracer.begin("chat m")
            headers = {}
            child.inject_traceparent(headers)
            tracer.inject_traceparent(headers)
            child.end()
            assert headers == {}
            tracer.shutdown()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
        assert not loaded, loaded
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_tracing_on_without_the_extra_warns_and_stays_off() -> None:
    result = run_python(
        """
        import logging, sys
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
        import llmproxy.observe.tracing as t
        tracer = t.make_tracer(t.TracingSettings(enabled=True))
        assert tracer is t.NOOP_TRACER
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "llmproxy.tracing" in result.stderr and "llmproxy[otel]" in result.stderr


# The tests below need the otel extra; the two above must run without it.


@pytest.fixture
def exporter() -> Any:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    return InMemorySpanExporter()


def kinds() -> tuple[Any, Any]:
    from opentelemetry.trace import SpanKind, StatusCode

    return SpanKind, StatusCode


def test_server_span_continues_the_callers_trace_and_the_attempt_span_is_its_child(
    exporter: Any,
) -> None:
    tracer = make_tracer(TracingSettings(enabled=True), exporter=exporter)
    attrs = request_attributes(
        operation="chat", provider_type="openai", request_model="gpt-4o-2024-08-06",
        base_url="https://user:pw@api.openai.com/v1", deployment="up/gpt-4o", public_model="gpt-4o",
        body={"temperature": 0.2, "max_tokens": 64, "top_p": True, "messages": [{"content": "secret prompt"}]},
    )
    with tracer.start_span("POST /v1/chat/completions", kind="server", parent_headers={"traceparent": PARENT}):
        attempt = tracer.begin(span_name("chat", "gpt-4o-2024-08-06"), attrs)
        headers: dict[str, str] = {"Content-Type": "application/json"}
        attempt.inject_traceparent(headers)
        attempt.set_attributes(response_attributes(
            response_model="gpt-4o-2024-08-06", response_id="chatcmpl-1", input_tokens=5, output_tokens=2,
            finish_reasons=("stop",),
        ))
        attempt.end()
        attempt.end()  # idempotent
    tracer.shutdown()

    SpanKind, _ = kinds()
    client, server = exporter.get_finished_spans()
    assert server.kind == SpanKind.SERVER and client.kind == SpanKind.CLIENT
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == "b7ad6b7169203331"
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert headers["traceparent"] == f"00-{TRACE_ID}-{client.context.span_id:016x}-01"
    assert client.name == "chat gpt-4o-2024-08-06"
    assert dict(client.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-2024-08-06",
        "server.address": "api.openai.com",
        "server.port": 443,
        "llmproxy.deployment": "up/gpt-4o",
        "llmproxy.model": "gpt-4o",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 2,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    assert client.resource.attributes["service.name"] == "llmproxy"


def test_current_span_is_inherited_by_tasks(exporter: Any) -> None:
    tracer = make_tracer(TracingSettings(enabled=True, service_name="sidecar"), exporter=exporter)

    async def attempt() -> dict[str, str]:
        span = tracer.begin("chat m")
        headers: dict[str, str] = {}
        tracer.inject_traceparent(headers)  # the current (server) span
        span.end()
        return headers

    async def main() -> dict[str, str]:
        with tracer.start_span("POST /v1/chat/completions", kind="server"):
            return await asyncio.create_task(attempt())

    headers = asyncio.run(main())
    child, server = exporter.get_finished_spans()
    assert child.parent is not None and child.parent.span_id == server.context.span_id
    assert server.parent is None
    # flags: sampled (01), plus "random trace id" (02) on traces this SDK started
    assert headers["traceparent"].startswith(f"00-{server.context.trace_id:032x}-{server.context.span_id:016x}-0")
    assert server.resource.attributes["service.name"] == "sidecar"


def test_errors_are_typed_and_their_messages_redacted(exporter: Any) -> None:
    tracer = make_tracer(TracingSettings(enabled=True), exporter=exporter, redactor=Redactor())
    span = tracer.begin("chat m")
    span.set_error("status_4xx", "Incorrect API key provided: sk-abcdefghijklmnopqrstuvwxyz012345")
    span.end()
    with pytest.raises(ValueError), tracer.start_span("inner", kind="internal"):
        raise ValueError("boom")
    with pytest.raises(asyncio.CancelledError), tracer.start_span("left", kind="internal"):
        raise asyncio.CancelledError

    _, StatusCode = kinds()
    explicit, raised, cancelled = exporter.get_finished_spans()
    assert explicit.status.status_code == StatusCode.ERROR
    assert explicit.status.description == f"Incorrect API key provided: {MASK}"
    assert explicit.attributes is not None and explicit.attributes["error.type"] == "status_4xx"
    assert raised.attributes is not None and raised.attributes["error.type"] == "ValueError"
    assert raised.status.status_code == StatusCode.ERROR
    assert cancelled.attributes is not None and cancelled.attributes["error.type"] == "cancelled"
    assert not raised.events  # no exception event: its message could carry anything


def test_sample_ratio_zero_drops_new_traces_but_follows_a_sampled_parent(exporter: Any) -> None:
    tracer = make_tracer(TracingSettings(enabled=True, sample_ratio=0.0), exporter=exporter)
    with tracer.start_span("new trace", kind="server"):
        pass
    with tracer.start_span("continued", kind="server", parent_headers={"traceparent": PARENT}):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["continued"]


def test_request_attributes_take_only_config_values_and_numbers() -> None:
    attrs = request_attributes(operation="embeddings", provider_type="bedrock", request_model="titan",
                               base_url="http://localhost:11434", body={"seed": 7, "temperature": False,
                                                                        "max_tokens": "10"})
    assert attrs == {
        "gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": "titan", "server.address": "localhost", "server.port": 11434,
        "gen_ai.request.seed": 7,
    }
    assert request_attributes(operation="chat", provider_type="mock", request_model="m",
                              base_url="mock://local")["server.address"] == "local"
    assert response_attributes() == {}


def test_noop_tracer_is_shared_and_stateless() -> None:
    assert make_tracer(None) is NOOP_TRACER
    ctx1 = NOOP_TRACER.start_span("a")
    ctx2 = NOOP_TRACER.start_span("b")
    assert ctx1 is ctx2
    assert NOOP_TRACER.begin("x") is NOOP_TRACER.begin("y")

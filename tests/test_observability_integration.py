"""Metrics, logs and traces through the real proxy (draft: enable once wired).

Known traffic goes through the real app against fake upstreams; the exact
values are then read back from ``GET /metrics`` on the main port. A request
full of secrets must leave no trace of them in any captured log line.

Assumes the wiring described in the observability note: ``create_app`` puts
a ``Metrics`` under ``METRICS`` (configured from the config, watching the
deployment registry), an ``AccessLog`` under ``ACCESS_LOG``, installs
``observe_middleware`` before ``error_middleware`` and routes ``/metrics``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import textwrap
from collections.abc import Iterator

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmproxy.observe.logs import REDACTOR, setup_logging
from llmproxy.observe.metrics import METRICS

from .fakes import Reply, openai_completion, openai_stream

UPSTREAM_KEY = "sk-upstream-0123456789abcdefXYZ"
UNSHAPED_UPSTREAM_KEY = "c0here-unshaped-9f8e7d6c5b4a"
CLIENT_KEY = "client-key-4d3c2b1a0f9e8d7c"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def config_yaml(url: str, extra: str = "", breaker: str = "") -> str:
    return f"""
    server: {{api_keys: [{CLIENT_KEY}]}}
    providers:
      up: {{type: openai, base_url: "{url}/v1", api_key: {UPSTREAM_KEY}}}
    {breaker}
    models:
      gpt-4o:
        retry: {{retries: 0}}
        deployments:
          - {{provider: up, model: gpt-4o-2024-08-06, id: up/gpt-4o,
              price: {{input_per_mtok: 2.5, output_per_mtok: 10}}}}
    {extra}
    """


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics as {(name, sorted labels): value}."""
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
    out = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def get(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


BASE = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o",
        "deployment": "up/gpt-4o"}


async def test_known_traffic_gives_exact_metric_values(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(
        Reply(json=openai_completion()),  # usage 5 + 2
        Reply(json=openai_completion()),
        Reply(stream=openai_stream(["Hel", "lo", "!"], usage=True)),  # usage 5 + 3
        Reply(status=500, json={"error": {"message": "boom"}}),
        Reply(status=400, json={"error": {"message": "bad param", "type": "invalid_request_error"}}),
    )
    proxy = await start_proxy(config_yaml(fake.url))
    client = openai_client(proxy, api_key=CLIENT_KEY)
    import openai

    await client.chat.completions.create(**CHAT)
    await client.chat.completions.create(**CHAT)
    stream = await client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
    async for _ in stream:
        pass
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(**CHAT)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(**CHAT)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="no-such-model", messages=CHAT["messages"])
    async with aiohttp.ClientSession() as s:  # not JSON at all
        async with s.post(proxy.v1 + "/chat/completions", data=b"{nope",
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as r:
            assert r.status == 400

    m = await scrape(proxy.url)
    assert get(m, "llmproxy_requests_total", **BASE, status_class="2xx", stream="false") == 2
    assert get(m, "llmproxy_requests_total", **BASE, status_class="2xx", stream="true") == 1
    assert get(m, "llmproxy_requests_total", **BASE, status_class="5xx", stream="false") == 1
    assert get(m, "llmproxy_requests_total", **BASE, status_class="4xx", stream="false") == 1
    rejected = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "", "gen_ai_request_model": "",
                "deployment": "", "stream": "false"}
    assert get(m, "llmproxy_requests_total", **rejected, status_class="4xx") == 2  # unknown model, bad JSON
    assert get(m, "gen_ai_client_operation_duration_seconds_count", **BASE, error_type="") == 3
    assert get(m, "gen_ai_client_operation_duration_seconds_count", **BASE, error_type="5xx") == 1
    assert get(m, "gen_ai_server_time_to_first_token_seconds_count", **BASE) == 1
    assert get(m, "llmproxy_tokens_total", **BASE, gen_ai_token_type="input") == 15
    assert get(m, "llmproxy_tokens_total", **BASE, gen_ai_token_type="output") == 7
    assert get(m, "gen_ai_client_token_usage_count", **BASE, gen_ai_token_type="input") == 3
    assert get(m, "gen_ai_client_token_usage_sum", **BASE, gen_ai_token_type="output") == 7
    assert get(m, "llmproxy_cost_usd_total", **BASE) == pytest.approx((15 * 2.5 + 7 * 10) / 1e6)
    assert get(m, "llmproxy_upstream_errors_total", gen_ai_provider_name="openai", deployment="up/gpt-4o",
               kind="status_5xx") == 1
    assert get(m, "llmproxy_upstream_errors_total", gen_ai_provider_name="openai", deployment="up/gpt-4o",
               kind="status_4xx") == 1
    assert get(m, "llmproxy_requests_in_flight", gen_ai_operation_name="chat", gen_ai_request_model="gpt-4o") == 0
    assert get(m, "llmproxy_deployment_in_flight", deployment="up/gpt-4o") == 0
    assert get(m, "llmproxy_breaker_state", deployment="up/gpt-4o", state="closed") == 1
    # the same numbers from the object itself
    metrics = proxy.app[METRICS]
    assert metrics.registry.get_sample_value("llmproxy_requests_total",
                                             {**BASE, "status_class": "2xx", "stream": "false"}) == 2


async def test_an_open_breaker_shows_and_its_rejections_count(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(status=500, json={"error": {"message": "down"}}))
    proxy = await start_proxy(config_yaml(fake.url, breaker="defaults: {breaker: {failures: 1, cooldown: 3600, when_all_open: fail_fast}}"))
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    async with aiohttp.ClientSession() as s:
        for expected in (500, 503, 503):
            async with s.post(proxy.v1 + "/chat/completions", json=CHAT, headers=headers) as r:
                assert r.status == expected
    m = await scrape(proxy.url)
    assert get(m, "llmproxy_breaker_state", deployment="up/gpt-4o", state="open") == 1
    assert get(m, "llmproxy_breaker_state", deployment="up/gpt-4o", state="closed") == 0
    assert get(m, "llmproxy_breaker_opens_total", deployment="up/gpt-4o") == 1
    assert get(m, "llmproxy_requests_total", **BASE, status_class="5xx", stream="false") == 1
    assert get(m, "llmproxy_requests_total", gen_ai_operation_name="chat", gen_ai_provider_name="",
               gen_ai_request_model="gpt-4o", deployment="", status_class="5xx", stream="false") == 2
    assert len(fake.seen) == 1


async def test_retries_and_fallbacks_are_counted(start_proxy, fake_upstream):
    bad, good = await fake_upstream(), await fake_upstream()
    bad.script(Reply(status=503, json={"error": {"message": "overloaded"}}))
    proxy = await start_proxy(f"""
    server: {{api_keys: [{CLIENT_KEY}]}}
    providers:
      bad: {{type: openai, base_url: "{bad.url}/v1", api_key: k1}}
      good: {{type: openai, base_url: "{good.url}/v1", api_key: k2}}
    models:
      gpt-4o:
        retry: {{retries: 0}}
        fallbacks: [backup]
        deployments: [{{provider: bad, model: m, id: bad/m}}]
      backup:
        deployments: [{{provider: good, model: m, id: good/m}}]
    """)
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.v1 + "/chat/completions", json=CHAT,
                          headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as r:
            assert r.status == 200 and r.headers["x-llmproxy-deployment"] == "good/m"
    m = await scrape(proxy.url)
    assert get(m, "llmproxy_fallbacks_total", gen_ai_request_model="gpt-4o", fallback_model="backup") == 1
    assert get(m, "llmproxy_upstream_errors_total", gen_ai_provider_name="openai", deployment="bad/m",
               kind="status_5xx") == 1
    assert get(m, "llmproxy_requests_total", gen_ai_operation_name="chat", gen_ai_provider_name="openai",
               gen_ai_request_model="gpt-4o", deployment="good/m", status_class="2xx", stream="false") == 1


async def test_config_reload_outcomes_are_counted(start_proxy, fake_upstream, tmp_path):
    fake = await fake_upstream()
    path = tmp_path / "llmproxy.yaml"
    # no watcher, no poll: only the explicit reloads below happen
    good = textwrap.dedent(config_yaml(fake.url, extra="reload: {enabled: false, poll_interval: 3600}"))
    path.write_text(good)
    proxy = await start_proxy.from_file(str(path))
    async with aiohttp.ClientSession() as s:  # admin answers loopback clients without a token
        path.write_text(good + "\nnonsense_key: 1\n")
        async with s.post(proxy.url + "/admin/reload") as r:
            assert r.status == 422
        path.write_text(good.replace("gpt-4o:", "gpt-4o-new:", 1))
        async with s.post(proxy.url + "/admin/reload") as r:
            assert r.status == 200
    m = await scrape(proxy.url)
    assert get(m, "llmproxy_config_reloads_total", result="failure") == 1
    assert get(m, "llmproxy_config_reloads_total", result="success") == 1
    assert get(m, "llmproxy_config_last_reload_successful") == 1


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = logging.getLogger("watchfiles").level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("watchfiles").setLevel(quiet)


async def test_no_secret_reaches_any_log_line(start_proxy, fake_upstream, captured_logs, caplog):
    fake = await fake_upstream()
    # The upstream echoes the key it was sent, as OpenAI does for a wrong one.
    fake.script(
        Reply(status=401, json={"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}.",
                                          "type": "invalid_request_error", "code": "invalid_api_key"}}),
        Reply(status=500, body=f"Traceback ... api_key={UNSHAPED_UPSTREAM_KEY}".encode(),
              content_type="text/plain"),
        Reply(stream=openai_stream(["ok"]), drop_after=1),
    )
    yaml_text = config_yaml(fake.url).replace(UPSTREAM_KEY, '"${UPSTREAM_KEY}"')
    proxy = await start_proxy(yaml_text, env={"UPSTREAM_KEY": UPSTREAM_KEY})
    # The app's own redactor: it knows the configured keys (configure_observability).
    setup_logging("debug", "json", proxy.app[REDACTOR], stream=captured_logs)
    client_secret_in_body = "sk-proj-clientbodysecret0123456789abcdef"
    async with aiohttp.ClientSession() as s:
        for body in (
            {**CHAT, "user": client_secret_in_body},
            {**CHAT, "metadata": {"api_key": client_secret_in_body}},
            {**CHAT, "stream": True},
        ):
            async with s.post(
                proxy.v1 + f"/chat/completions?key={client_secret_in_body}",
                json=body,
                headers={"Authorization": f"Bearer {CLIENT_KEY}", "X-Request-ID": f"req-{UPSTREAM_KEY}",
                         "x-api-key": client_secret_in_body},
            ) as r:
                await r.read()
        async with s.post(proxy.v1 + "/chat/completions", json=CHAT,
                          headers={"Authorization": "Bearer wrong-client-key-0000"}) as r:
            assert r.status == 401

    for h in logging.getLogger().handlers:
        h.flush()
    text = captured_logs.getvalue()
    lines = [orjson.loads(line) for line in text.splitlines()]
    assert sum(1 for line in lines if line["logger"] == "llmproxy.access") == 4
    for secret in (UPSTREAM_KEY, UNSHAPED_UPSTREAM_KEY, CLIENT_KEY, client_secret_in_body,
                   "wrong-client-key-0000"):
        assert secret not in text, secret
        assert secret not in caplog.text, secret
    assert '"hi"' not in text  # the prompt itself is never logged


async def test_spans_and_traceparent_through_the_proxy(fake_upstream):
    otel = pytest.importorskip("opentelemetry.sdk")
    del otel
    import textwrap as tw

    from aiohttp.test_utils import TestServer
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    from llmproxy.config.tree import parse_config
    from llmproxy.observe.tracing import TRACER, TracingSettings, make_tracer
    from llmproxy.server.app import create_app

    fake = await fake_upstream()
    fake.script(Reply(status=503, json={"error": {"message": "busy"}}), Reply(json=openai_completion()))
    app = create_app(await asyncio.to_thread(
        parse_config, tw.dedent(config_yaml(fake.url)).replace("retries: 0", "retries: 1, backoff: 0"), env={}))
    exporter = InMemorySpanExporter()
    # Before the app starts, and off the loop: the SDK runs its resource
    # detectors in a thread pool and joins it.
    app[TRACER] = await asyncio.to_thread(make_tracer, TracingSettings(enabled=True), exporter=exporter)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        async with aiohttp.ClientSession() as s:
            async with s.post(str(server.make_url("/v1/chat/completions")), json=CHAT,
                              headers={"Authorization": f"Bearer {CLIENT_KEY}", "traceparent": incoming}) as r:
                assert r.status == 200
    finally:
        await server.close()
    failed, ok, server_span = exporter.get_finished_spans()
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    assert server_span.name == "POST /v1/chat/completions"
    assert format(server_span.context.trace_id, "032x") == trace_id
    assert server_span.attributes["gen_ai.request.model"] == "gpt-4o"
    assert server_span.attributes["http.response.status_code"] == 200
    for span, seen in ((failed, fake.seen[0]), (ok, fake.seen[1])):
        assert span.parent.span_id == server_span.context.span_id
        assert span.name == "chat gpt-4o-2024-08-06"
        assert seen.headers["traceparent"] == f"00-{trace_id}-{span.context.span_id:016x}-01"
    assert failed.attributes["error.type"] == "status_5xx"
    assert ok.attributes["gen_ai.usage.input_tokens"] == 5 and ok.attributes["gen_ai.usage.output_tokens"] == 2
    assert ok.attributes["gen_ai.provider.name"] == "openai" and ok.attributes["server.address"] == "127.0.0.1"


async def test_observability_off_records_nothing_and_serves_the_same(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion()), Reply(stream=openai_stream(["a", "b"])))
    proxy = await start_proxy(f"""
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: k}}
    models:
      gpt-4o: {{deployments: [{{provider: up, model: m}}]}}
    metrics: {{enabled: false}}
    logging: {{access_log: false}}
    admin: {{request_log: 0}}
    """)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.v1 + "/chat/completions", data=orjson.dumps(body)) as r:
            assert r.status == 200 and r.headers["x-llmproxy-deployment"] == "up/m"
        async with s.post(proxy.v1 + "/chat/completions", data=orjson.dumps({**body, "stream": True})) as r:
            assert (await r.read()).endswith(b"data: [DONE]\n\n")
        async with s.post(proxy.v1 + "/chat/completions", data=b"{") as r:
            assert r.status == 400
        async with s.get(proxy.url + "/metrics") as r:
            assert r.status == 404
    text = proxy.app[METRICS].render()[0].decode()
    assert not [line for line in text.splitlines()
                if line.startswith("llmproxy_requests_total{") and not line.endswith(" 0.0")]

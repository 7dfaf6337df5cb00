"""observe_middleware on a small real app: what each way of ending a request records.

The handlers here play the part chat.py and forward.py will play once wired:
they report to ``request[OBSERVATION]`` at the same points.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from llmproxy.config.tree import parse_config
from llmproxy.errors import (
    InvalidRequest,
    ModelNotFound,
    NoCapacity,
    ProxyError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from llmproxy.observe.logs import ACCESS_LOG, AccessLog, Redactor, setup_logging
from llmproxy.observe.metrics import METRICS, Metrics, handle_metrics
from llmproxy.observe.observation import OBSERVATION, observe_middleware
from llmproxy.server.runtime import REQUEST_ID

CONFIG = parse_config(
    """
    providers:
      a: {type: openai, base_url: "http://a.test/v1", api_key: sk-observe-test-0001}
      b: {type: anthropic, base_url: "http://b.test", api_key: sk-observe-test-0002}
    models:
      gpt:
        deployments:
          - {provider: a, model: gpt-4o, id: a/gpt, price: {input_per_mtok: 2.5, output_per_mtok: 10}}
          - {provider: a, model: gpt-4o-mini, id: a/mini}
      claude:
        deployments: [{provider: b, model: claude-3-5-sonnet, id: b/claude}]
    """,
    env={},
)
DEPS = {d.id: d for d in CONFIG.deployments()}


@web.middleware
async def errors(request: web.Request, handler):  # a stand-in for server.error_middleware
    request[REQUEST_ID] = request.headers.get("X-Request-ID", "rid")
    try:
        return await handler(request)
    except ProxyError as exc:
        request[OBSERVATION].failed(exc)
        return web.Response(body=exc.to_json(), status=exc.status, content_type="application/json")


async def chat(request: web.Request) -> web.StreamResponse:
    obs = request[OBSERVATION]
    body = await request.json()
    scenario = body["scenario"]
    if scenario == "unknown-model":
        raise ModelNotFound("no such model")
    obs.resolved("claude" if scenario == "fallback" else "gpt", stream=scenario.startswith("stream"))
    if scenario == "invalid":
        raise InvalidRequest("'messages' is required")
    if scenario == "ok":
        obs.attempt(DEPS["a/gpt"], "gpt")
        obs.attempt_succeeded({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500})
        return web.json_response({"ok": True})
    if scenario == "retry":
        obs.attempt(DEPS["a/gpt"], "gpt")
        obs.attempt_failed(UpstreamStatusError("overloaded", status=503))
        obs.attempt(DEPS["a/mini"], "gpt", retries=1)  # the plan counted a retry
        obs.attempt_succeeded({"prompt_tokens": 3, "completion_tokens": 4})
        return web.json_response({"ok": True})
    if scenario == "fallback":
        obs.attempt(DEPS["b/claude"], "claude")
        obs.attempt_failed(UpstreamTimeout("no first byte"))
        obs.attempt(DEPS["a/gpt"], "gpt", fallbacks=1)  # the plan moved to a fallback
        obs.attempt_succeeded(None)
        return web.json_response({"ok": True})
    if scenario == "no-capacity":
        obs.rate_limited("a/gpt", "concurrency")
        obs.rate_limited("a/mini", "rpm")
        raise NoCapacity("every deployment is at its limit")
    if scenario == "all-failed":
        obs.attempt(DEPS["a/gpt"], "gpt")
        exc = UpstreamStatusError("bad gateway", status=502)
        obs.attempt_failed(exc)
        raise exc
    if scenario.startswith("stream"):
        obs.attempt(DEPS["a/gpt"], "gpt")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        obs.first_byte_sent()
        await resp.write(b"data: {}\n\n")
        if scenario == "stream-cut":
            exc2 = UpstreamTimeout("idle")
            obs.attempt_failed(exc2)
            obs.stream_failed(exc2)
            await resp.write(b"data: " + exc2.to_json() + b"\n\n")
        else:
            obs.attempt_succeeded({"prompt_tokens": 5, "completion_tokens": 2})
            await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
    if scenario == "hang":
        obs.attempt(DEPS["a/gpt"], "gpt")
        await asyncio.Event().wait()
    raise AssertionError(scenario)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = logging.getLogger("watchfiles").level
    stream = io.StringIO()
    setup_logging("info", "json", Redactor(), stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("watchfiles").setLevel(quiet)


@pytest.fixture
async def app_server() -> AsyncIterator[tuple[TestServer, Metrics]]:
    metrics = Metrics()
    metrics.configure(CONFIG.models, {d.id: d.provider.type for d in CONFIG.deployments()})
    app = web.Application(middlewares=[observe_middleware, errors])
    app[METRICS] = metrics
    app[ACCESS_LOG] = AccessLog()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", healthz)
    server = TestServer(app, host="127.0.0.1", handler_cancellation=True)
    await server.start_server()
    yield server, metrics
    await server.close()


async def post(server: TestServer, scenario: str) -> int:
    async with aiohttp.ClientSession() as s:
        async with s.post(server.make_url("/v1/chat/completions"), json={"scenario": scenario}) as r:
            await r.read()
            return r.status


def v(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def req_labels(model: str, dep: str, provider: str, sc: str, stream: str = "false") -> dict[str, str]:
    return {"gen_ai_operation_name": "chat", "gen_ai_provider_name": provider, "gen_ai_request_model": model,
            "deployment": dep, "status_class": sc, "stream": stream}


def access_lines(stream: io.StringIO) -> list[dict[str, object]]:
    for h in logging.getLogger().handlers:
        h.flush()
    return [d for d in map(orjson.loads, stream.getvalue().splitlines()) if d["logger"] == "llmproxy.access"]


async def test_success_records_tokens_cost_and_one_access_line(app_server, log_stream) -> None:
    server, m = app_server
    assert await post(server, "ok") == 200
    assert v(m, "llmproxy_requests_total", **req_labels("gpt", "a/gpt", "openai", "2xx")) == 1
    base = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt",
            "deployment": "a/gpt"}
    assert v(m, "llmproxy_tokens_total", **base, gen_ai_token_type="input") == 1000
    assert v(m, "llmproxy_tokens_total", **base, gen_ai_token_type="output") == 500
    assert v(m, "llmproxy_cost_usd_total", **base) == pytest.approx((1000 * 2.5 + 500 * 10) / 1e6)
    assert v(m, "llmproxy_requests_in_flight", gen_ai_operation_name="chat", gen_ai_request_model="gpt") == 0
    assert v(m, "gen_ai_server_time_to_first_token_seconds_count", **base) is None  # unary
    (line,) = access_lines(log_stream)
    assert line["model"] == "gpt" and line["deployment"] == "a/gpt" and line["status"] == 200
    assert line["prompt_tokens"] == 1000 and line["retries"] == 0 and line["ttft_ms"] is None
    assert line["request_id"] == "rid" and line["method"] == "POST" and line["stream"] is False


async def test_retry_and_fallback_are_counted_once_each(app_server, log_stream) -> None:
    server, m = app_server
    assert await post(server, "retry") == 200
    assert await post(server, "fallback") == 200
    assert v(m, "llmproxy_retries_total", gen_ai_request_model="gpt", deployment="a/gpt", reason="status_5xx") == 1
    assert v(m, "llmproxy_upstream_errors_total", gen_ai_provider_name="openai", deployment="a/gpt",
             kind="status_5xx") == 1
    assert v(m, "llmproxy_fallbacks_total", gen_ai_request_model="claude", fallback_model="gpt") == 1
    assert v(m, "llmproxy_upstream_errors_total", gen_ai_provider_name="anthropic", deployment="b/claude",
             kind="timeout") == 1
    assert v(m, "llmproxy_requests_total", **req_labels("gpt", "a/mini", "openai", "2xx")) == 1
    assert v(m, "llmproxy_requests_total", **req_labels("claude", "a/gpt", "openai", "2xx")) == 1
    retry_line, fallback_line = access_lines(log_stream)
    assert retry_line["retries"] == 1 and retry_line["deployment"] == "a/mini"
    assert fallback_line["retries"] == 0 and fallback_line["model"] == "claude"


async def test_rejections_before_and_after_the_model_is_known(app_server, log_stream) -> None:
    server, m = app_server
    assert await post(server, "unknown-model") == 404
    assert await post(server, "invalid") == 400
    assert await post(server, "all-failed") == 502
    assert await post(server, "no-capacity") == 429
    assert v(m, "llmproxy_requests_total", **req_labels("", "", "", "4xx")) == 1
    assert v(m, "llmproxy_requests_total", **req_labels("gpt", "", "", "4xx")) == 2
    assert v(m, "llmproxy_rate_limited_total", gen_ai_request_model="gpt", deployment="a/gpt", kind="concurrency") == 1
    assert v(m, "llmproxy_rate_limited_total", gen_ai_request_model="gpt", deployment="a/mini", kind="rpm") == 1
    assert v(m, "llmproxy_requests_total", **req_labels("gpt", "a/gpt", "openai", "5xx")) == 1
    assert v(m, "llmproxy_requests_in_flight", gen_ai_operation_name="chat", gen_ai_request_model="gpt") == 0
    errors = [line["error"] for line in access_lines(log_stream)]
    assert errors == ["model_not_found", "invalid_request_error", "upstream_error", "no_capacity"]


async def test_stream_records_ttft_and_a_cut_stream_counts_as_its_error(app_server, log_stream) -> None:
    server, m = app_server
    assert await post(server, "stream") == 200
    assert await post(server, "stream-cut") == 200
    base = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt",
            "deployment": "a/gpt"}
    assert v(m, "llmproxy_requests_total", **req_labels("gpt", "a/gpt", "openai", "2xx", "true")) == 1
    assert v(m, "llmproxy_requests_total", **req_labels("gpt", "a/gpt", "openai", "5xx", "true")) == 1
    assert v(m, "gen_ai_server_time_to_first_token_seconds_count", **base) == 2
    assert v(m, "llmproxy_upstream_errors_total", gen_ai_provider_name="openai", deployment="a/gpt",
             kind="timeout") == 1
    ok, cut = access_lines(log_stream)
    assert ok["stream"] is True and isinstance(ok["ttft_ms"], float) and ok["status"] == 200
    assert cut["status"] == 504 and cut["error"] == "upstream_timeout"


async def test_a_client_that_leaves_is_finished_as_499(app_server, log_stream) -> None:
    server, m = app_server
    async with aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            async with s.post(server.make_url("/v1/chat/completions"), json={"scenario": "hang"},
                              timeout=aiohttp.ClientTimeout(total=0.3)) as r:
                await r.read()
    for _ in range(100):  # the server notices the disconnect asynchronously
        if v(m, "llmproxy_requests_total", **req_labels("gpt", "a/gpt", "openai", "4xx")) == 1:
            break
        await asyncio.sleep(0.01)
    assert v(m, "llmproxy_requests_total", **req_labels("gpt", "a/gpt", "openai", "4xx")) == 1
    assert v(m, "llmproxy_requests_in_flight", gen_ai_operation_name="chat", gen_ai_request_model="gpt") == 0
    (line,) = access_lines(log_stream)
    assert line["status"] == 499


async def test_probes_and_scrapes_are_neither_counted_nor_logged(app_server, log_stream) -> None:
    server, m = app_server
    async with aiohttp.ClientSession() as s:
        async with s.get(server.make_url("/healthz")) as r:
            assert r.status == 200
        async with s.get(server.make_url("/metrics")) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert "llmproxy_build_info" in await r.text()
        async with s.get(server.make_url("/nope")) as r:
            assert r.status == 404
    assert access_lines(log_stream)[0]["path"] == "/nope"
    assert len(access_lines(log_stream)) == 1
    assert "llmproxy_requests_total{" not in m.render()[0].decode()

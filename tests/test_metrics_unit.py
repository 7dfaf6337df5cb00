"""Metrics: exact values after known calls, the exposition parses, labels stay bounded."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmproxy.errors import (
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from llmproxy.observe.metrics import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    TTFT_BUCKETS,
    Metrics,
    gen_ai_provider_name,
    status_class,
    upstream_error_kind,
)

BASE = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o", "deployment": "up/gpt-4o"}


def configured() -> Metrics:
    m = Metrics("1.2.3")
    m.configure(["gpt-4o", "claude"], {"up/gpt-4o": "openai", "ant/claude": "anthropic"})
    return m


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def parse(m: Metrics) -> dict[str, list]:
    body, ctype = m.render()
    assert ctype.startswith("text/plain; version=0.0.4")
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def finish(m: Metrics, **kw: object) -> None:
    args: dict[str, object] = {"status": 200, "duration": 0.3, "ttft": None, "stream": False,
                               "prompt_tokens": None, "completion_tokens": None, "cost": None}
    args.update(kw)
    m.request_finished("gpt-4o", "up/gpt-4o", **args)  # type: ignore[arg-type]


def test_buckets_cover_llm_latencies_and_token_counts() -> None:
    assert DURATION_BUCKETS[0] == 0.01 and DURATION_BUCKETS[-1] == 300.0
    assert TTFT_BUCKETS[0] == 0.01 and TTFT_BUCKETS[-1] == 60.0
    assert TOKEN_BUCKETS == tuple(float(4**i) for i in range(11))
    for b in (DURATION_BUCKETS, TTFT_BUCKETS, TOKEN_BUCKETS):
        assert list(b) == sorted(set(b))


def test_a_finished_stream_records_every_series_exactly() -> None:
    m = configured()
    m.request_started("gpt-4o", "up/gpt-4o")
    assert value(m, "llmproxy_requests_in_flight", gen_ai_operation_name="chat", gen_ai_request_model="gpt-4o") == 1
    finish(m, status=200, duration=0.3, ttft=0.12, stream=True, prompt_tokens=5, completion_tokens=2, cost=0.00125)

    assert value(m, "llmproxy_requests_in_flight", gen_ai_operation_name="chat", gen_ai_request_model="gpt-4o") == 0
    assert value(m, "llmproxy_requests_total", **BASE, status_class="2xx", stream="true") == 1
    dur = dict(BASE, error_type="")
    assert value(m, "gen_ai_client_operation_duration_seconds_count", **dur) == 1
    assert value(m, "gen_ai_client_operation_duration_seconds_sum", **dur) == pytest.approx(0.3)
    assert value(m, "gen_ai_client_operation_duration_seconds_bucket", **dur, le="0.25") == 0
    assert value(m, "gen_ai_client_operation_duration_seconds_bucket", **dur, le="0.5") == 1
    assert value(m, "gen_ai_client_operation_duration_seconds_bucket", **dur, le="+Inf") == 1
    assert value(m, "gen_ai_server_time_to_first_token_seconds_bucket", **BASE, le="0.1") == 0
    assert value(m, "gen_ai_server_time_to_first_token_seconds_bucket", **BASE, le="0.15") == 1
    assert value(m, "gen_ai_server_time_to_first_token_seconds_sum", **BASE) == pytest.approx(0.12)
    assert value(m, "gen_ai_client_token_usage_sum", **BASE, gen_ai_token_type="input") == 5
    assert value(m, "gen_ai_client_token_usage_bucket", **BASE, gen_ai_token_type="input", le="4.0") == 0
    assert value(m, "gen_ai_client_token_usage_bucket", **BASE, gen_ai_token_type="input", le="16.0") == 1
    assert value(m, "gen_ai_client_token_usage_sum", **BASE, gen_ai_token_type="output") == 2
    assert value(m, "llmproxy_tokens_total", **BASE, gen_ai_token_type="input") == 5
    assert value(m, "llmproxy_tokens_total", **BASE, gen_ai_token_type="output") == 2
    assert value(m, "llmproxy_cost_usd_total", **BASE) == pytest.approx(0.00125)


def test_bucket_boundaries_are_inclusive() -> None:
    m = configured()
    for d in (0.01, 0.010001, 300.0, 301.0):
        m.request_started("gpt-4o")
        finish(m, duration=d)
    dur = dict(BASE, error_type="")
    assert value(m, "gen_ai_client_operation_duration_seconds_bucket", **dur, le="0.01") == 1
    assert value(m, "gen_ai_client_operation_duration_seconds_bucket", **dur, le="0.025") == 2
    assert value(m, "gen_ai_client_operation_duration_seconds_bucket", **dur, le="300.0") == 3
    assert value(m, "gen_ai_client_operation_duration_seconds_bucket", **dur, le="+Inf") == 4
    assert value(m, "gen_ai_client_operation_duration_seconds_count", **dur) == 4


def test_counts_add_up_across_requests_and_status_classes() -> None:
    m = configured()
    for status in (200, 200, 200, 429, 502, 504):
        m.request_started("gpt-4o", "up/gpt-4o")
        finish(m, status=status, prompt_tokens=10, completion_tokens=1, cost=0.5)
    assert value(m, "llmproxy_requests_total", **BASE, status_class="2xx", stream="false") == 3
    assert value(m, "llmproxy_requests_total", **BASE, status_class="4xx", stream="false") == 1
    assert value(m, "llmproxy_requests_total", **BASE, status_class="5xx", stream="false") == 2
    assert value(m, "gen_ai_client_operation_duration_seconds_count", **BASE, error_type="5xx") == 2
    assert value(m, "gen_ai_client_operation_duration_seconds_count", **BASE, error_type="4xx") == 1
    assert value(m, "llmproxy_tokens_total", **BASE, gen_ai_token_type="input") == 60
    assert value(m, "gen_ai_client_token_usage_count", **BASE, gen_ai_token_type="output") == 6
    assert value(m, "llmproxy_cost_usd_total", **BASE) == pytest.approx(3.0)
    assert value(m, "llmproxy_requests_in_flight", gen_ai_operation_name="chat", gen_ai_request_model="gpt-4o") == 0


def test_series_a_request_did_not_feed_are_absent() -> None:
    m = configured()
    m.request_started("gpt-4o")
    finish(m)  # unary, no usage, no price
    families = parse(m)
    assert families["gen_ai_server_time_to_first_token_seconds"] == []
    assert families["gen_ai_client_token_usage"] == []
    assert families["llmproxy_tokens"] == []
    assert families["llmproxy_cost_usd"] == []
    assert len(families["llmproxy_requests"]) == 1


def test_rejections_count_without_a_model_or_deployment() -> None:
    m = configured()
    m.request_rejected("", 400)
    m.request_rejected("", 404)
    m.request_rejected("", 413, operation="embeddings")
    labels = {"gen_ai_provider_name": "", "gen_ai_request_model": "", "deployment": "", "stream": "false"}
    assert value(m, "llmproxy_requests_total", gen_ai_operation_name="chat", status_class="4xx", **labels) == 2
    assert value(m, "llmproxy_requests_total", gen_ai_operation_name="embeddings", status_class="4xx", **labels) == 1
    assert value(m, "gen_ai_client_operation_duration_seconds_count", **BASE, error_type="") is None


def test_started_request_without_a_deployment_finishes_with_empty_deployment() -> None:
    m = configured()
    m.request_started("gpt-4o")
    m.request_finished("gpt-4o", "", status=503, duration=5.0, ttft=None, stream=False, prompt_tokens=None,
                       completion_tokens=None, cost=None)
    assert value(m, "llmproxy_requests_total", gen_ai_operation_name="chat", gen_ai_provider_name="",
                 gen_ai_request_model="gpt-4o", deployment="", status_class="5xx", stream="false") == 1
    assert value(m, "llmproxy_requests_in_flight", gen_ai_operation_name="chat", gen_ai_request_model="gpt-4o") == 0


def test_retries_fallbacks_limits_upstream_errors_and_reloads() -> None:
    m = configured()
    m.retry("gpt-4o", "up/gpt-4o", "status_5xx")
    m.retry("gpt-4o", "up/gpt-4o", "status_5xx")
    m.retry("gpt-4o", "up/gpt-4o", "timeout")
    m.fallback("gpt-4o", "claude")
    m.rate_limited("gpt-4o", "up/gpt-4o", "rpm")
    m.rate_limited("gpt-4o", "up/gpt-4o", "concurrency")
    m.upstream_error("ant/claude", "connect")
    m.upstream_error("ant/claude", "connect")
    m.reload(True)
    m.reload(False)
    m.reload(False)
    r = {"gen_ai_request_model": "gpt-4o", "deployment": "up/gpt-4o"}
    assert value(m, "llmproxy_retries_total", **r, reason="status_5xx") == 2
    assert value(m, "llmproxy_retries_total", **r, reason="timeout") == 1
    assert value(m, "llmproxy_fallbacks_total", gen_ai_request_model="gpt-4o", fallback_model="claude") == 1
    assert value(m, "llmproxy_rate_limited_total", **r, kind="rpm") == 1
    assert value(m, "llmproxy_rate_limited_total", **r, kind="concurrency") == 1
    assert value(m, "llmproxy_upstream_errors_total", gen_ai_provider_name="anthropic",
                 deployment="ant/claude", kind="connect") == 2
    assert value(m, "llmproxy_config_reloads_total", result="success") == 1
    assert value(m, "llmproxy_config_reloads_total", result="failure") == 2
    assert value(m, "llmproxy_config_last_reload_successful") == 0
    m.reload(True)
    assert value(m, "llmproxy_config_last_reload_successful") == 1
    assert value(m, "llmproxy_build_info", version="1.2.3") == 1


def test_breaker_state_is_one_series_per_state() -> None:
    m = configured()
    # configure() starts every deployment closed
    assert value(m, "llmproxy_breaker_state", deployment="up/gpt-4o", state="closed") == 1
    m.breaker_state("up/gpt-4o", "open")
    states = {s: value(m, "llmproxy_breaker_state", deployment="up/gpt-4o", state=s)
              for s in ("closed", "open", "half_open")}
    assert states == {"closed": 0, "open": 1, "half_open": 0}
    assert value(m, "llmproxy_breaker_state", deployment="ant/claude", state="closed") == 1


def test_watched_deployments_are_read_at_scrape_time() -> None:
    m = configured()
    live = [("up/gpt-4o", "half_open", 3, 2)]
    m.watch_deployments(lambda: live)
    assert value(m, "llmproxy_breaker_state", deployment="up/gpt-4o", state="half_open") == 1
    assert value(m, "llmproxy_deployment_in_flight", deployment="up/gpt-4o") == 3
    assert value(m, "llmproxy_breaker_opens_total", deployment="up/gpt-4o") == 2
    live[0] = ("up/gpt-4o", "closed", 0, 2)
    assert value(m, "llmproxy_breaker_state", deployment="up/gpt-4o", state="closed") == 1
    assert value(m, "llmproxy_deployment_in_flight", deployment="up/gpt-4o") == 0
    # the source is the truth: pushed states and ids it does not name are not shown
    assert value(m, "llmproxy_breaker_state", deployment="ant/claude", state="closed") is None


def test_label_values_come_only_from_the_configured_names() -> None:
    m = configured()
    m.request_started("gpt-4o' OR 1=1", "evil")
    m.request_finished("gpt-4o' OR 1=1", "evil", status=200, duration=0.1, ttft=None, stream=False,
                       prompt_tokens=1, completion_tokens=1, cost=None)
    m.request_rejected("client free text", 404)
    m.retry("x" * 500, "y" * 500, "made up reason!")
    m.rate_limited("gpt-4o", "up/gpt-4o", "weird")
    m.upstream_error("up/gpt-4o", "strange")
    m.breaker_state("nope", "melted")
    m.fallback("gpt-4o", "unknown-model")
    configured_values = {"", "chat", "embeddings", "gpt-4o", "claude", "up/gpt-4o", "ant/claude", "openai",
                         "anthropic", "other", "input", "output", "true", "false", "1.2.3", "success",
                         "failure", "closed", "open", "half_open", "2xx", "4xx", "5xx", "rpm", "tpm",
                         "concurrency", "connect", "timeout", "status_4xx", "status_429", "status_5xx",
                         "protocol"}
    seen: set[str] = set()
    for samples in parse(m).values():
        for s in samples:
            seen.update(v for k, v in s.labels.items() if k != "le")
    assert seen <= configured_values, seen - configured_values
    assert value(m, "llmproxy_requests_total", gen_ai_operation_name="chat", gen_ai_provider_name="",
                 gen_ai_request_model="other", deployment="other", status_class="2xx", stream="false") == 1


def test_without_configure_labels_are_the_arguments() -> None:
    m = Metrics()
    m.request_started("m1")
    m.request_finished("m1", "d1", status=201, duration=1.0, ttft=None, stream=False, prompt_tokens=None,
                       completion_tokens=None, cost=None)
    assert value(m, "llmproxy_requests_total", gen_ai_operation_name="chat", gen_ai_provider_name="",
                 gen_ai_request_model="m1", deployment="d1", status_class="2xx", stream="false") == 1


def test_retry_reasons_are_capped() -> None:
    m = Metrics()
    for i in range(40):
        m.retry("m", "d", f"reason_{i}")
    reasons = {s.labels["reason"] for s in parse(m)["llmproxy_retries"]}
    assert len(reasons) == 33 and "other" in reasons


def test_reload_forgets_removed_deployments_and_keeps_the_rest() -> None:
    m = configured()
    for dep, model in (("up/gpt-4o", "gpt-4o"), ("ant/claude", "claude")):
        m.request_started(model)
        m.request_finished(model, dep, status=200, duration=0.1, ttft=None, stream=False, prompt_tokens=3,
                           completion_tokens=4, cost=None)
        m.upstream_error(dep, "timeout")
    m.configure(["gpt-4o"], {"up/gpt-4o": "openai"})
    text = m.render()[0].decode()
    assert "ant/claude" not in text
    assert value(m, "llmproxy_requests_total", **BASE, status_class="2xx", stream="false") == 1
    # a request still finishing on the removed deployment re-creates its series
    m.request_started("claude")
    m.request_finished("claude", "ant/claude", status=200, duration=0.1, ttft=None, stream=False,
                       prompt_tokens=None, completion_tokens=None, cost=None)
    assert value(m, "llmproxy_requests_total", gen_ai_operation_name="chat", gen_ai_provider_name="",
                 gen_ai_request_model="claude", deployment="ant/claude", status_class="2xx", stream="false") == 1


def test_render_parses_and_uses_the_documented_names() -> None:
    m = configured()
    m.request_started("gpt-4o")
    finish(m, ttft=0.1, stream=True, prompt_tokens=1, completion_tokens=1, cost=0.1)
    m.retry("gpt-4o", "up/gpt-4o", "timeout")
    m.fallback("gpt-4o", "claude")
    m.rate_limited("gpt-4o", "up/gpt-4o", "tpm")
    m.upstream_error("up/gpt-4o", "timeout")
    m.dropped_param("up/gpt-4o", "logit_bias")
    types = {f.name: f.type for f in text_string_to_metric_families(m.render()[0].decode())}
    assert types == {
        "gen_ai_client_operation_duration_seconds": "histogram",
        "gen_ai_server_time_to_first_token_seconds": "histogram",
        "gen_ai_client_token_usage": "histogram",
        "llmproxy_requests": "counter",
        "llmproxy_tokens": "counter",
        "llmproxy_cost_usd": "counter",
        "llmproxy_requests_in_flight": "gauge",
        "llmproxy_retries": "counter",
        "llmproxy_fallbacks": "counter",
        "llmproxy_rate_limited": "counter",
        "llmproxy_upstream_errors": "counter",
        "llmproxy_dropped_params": "counter",
        "llmproxy_health_checks": "counter",
        "llmproxy_config_reloads": "counter",
        "llmproxy_config_last_reload_successful": "gauge",
        "llmproxy_config_last_reload_success_timestamp_seconds": "gauge",
        "llmproxy_build_info": "gauge",
        "llmproxy_breaker_state": "gauge",
    }


def test_two_instances_do_not_share_state() -> None:
    a, b = Metrics(), Metrics()
    a.request_rejected("", 400)
    assert "llmproxy_requests_total{" not in b.render()[0].decode()


@pytest.mark.parametrize(("status", "cls"), [(100, "1xx"), (200, "2xx"), (204, "2xx"), (301, "3xx"),
                                             (404, "4xx"), (499, "4xx"), (500, "5xx"), (599, "5xx"),
                                             (0, "other"), (600, "other")])
def test_status_class(status: int, cls: str) -> None:
    assert status_class(status) == cls


def test_upstream_error_kinds() -> None:
    assert upstream_error_kind(UpstreamTimeout("t")) == "timeout"
    assert upstream_error_kind(UpstreamUnreachable("u")) == "connect"
    assert upstream_error_kind(UpstreamProtocolError("p")) == "protocol"
    assert upstream_error_kind(UpstreamStatusError("s", status=429)) == "status_429"
    assert upstream_error_kind(UpstreamStatusError("s", status=503)) == "status_5xx"
    assert upstream_error_kind(UpstreamStatusError("s", status=400)) == "status_4xx"


def test_provider_names_follow_the_semconv_registry() -> None:
    assert gen_ai_provider_name("openai") == "openai"
    assert gen_ai_provider_name("azure") == "azure.ai.openai"
    assert gen_ai_provider_name("bedrock") == "aws.bedrock"
    assert gen_ai_provider_name("gemini") == "gcp.gemini"
    assert gen_ai_provider_name("ollama") == "ollama"  # no registered value: the type itself


def test_the_grafana_dashboard_uses_only_exposed_series_and_labels() -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parent.parent / "helm/llmproxy/dashboards/llmproxy.json").read_text())
    assert {i["name"] for i in dashboard["__inputs"]} == {"DS_PROMETHEUS"}
    m = configured()
    m.watch_deployments(lambda: [("up/gpt-4o", "closed", 0, 0)])
    m.request_started("gpt-4o")
    finish(m, ttft=0.1, stream=True, prompt_tokens=1, completion_tokens=1, cost=0.1)
    m.retry("gpt-4o", "up/gpt-4o", "timeout")
    m.fallback("gpt-4o", "claude")
    m.rate_limited("gpt-4o", "up/gpt-4o", "tpm")
    m.upstream_error("up/gpt-4o", "timeout")
    exposed: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(m.render()[0].decode()):
        for s in fam.samples:
            exposed.setdefault(s.name, set()).update(s.labels)

    exprs = []

    def walk(panels: list[dict]) -> None:
        for p in panels:
            assert p["type"] == "row" or p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
            exprs.extend(t["expr"] for t in p.get("targets", []))
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    exprs.extend(v["definition"] for v in dashboard["templating"]["list"])
    assert len(exprs) > 30
    labels_everywhere = set().union(*exposed.values())
    for expr in exprs:
        for name in re.findall(r"\b((?:gen_ai|llmproxy)_[a-z_]+)\b(?!\s*=)", expr):
            if name in ("gen_ai_request_model", "gen_ai_token_type", "gen_ai_provider_name"):
                continue  # label names
            assert name in exposed, (name, expr)
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for label in (x.strip() for x in group.split(",")):
                assert label in labels_everywhere, (label, expr)

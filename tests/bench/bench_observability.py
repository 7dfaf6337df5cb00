"""Per-request cost of metrics, the access line, redaction and tracing (run by hand).

    .venv/bin/python tests/bench/bench_observability.py [--n 200000]

Prints microseconds per call, best of a few rounds. The end-to-end figure
(requests/s with metrics and access logs on vs off) comes from
``bash tests/bench/run.sh --observability-ab``; this isolates what the
observability code adds to each request so a regression shows up here first.
In a loaded server the same code costs two to three times these figures
(cold caches between requests).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiohttp.test_utils import make_mocked_request

from llmproxy.config.tree import parse_config
from llmproxy.observe.logs import AccessLog, Redactor, setup_logging
from llmproxy.observe.metrics import Metrics
from llmproxy.observe.observation import Observation
from llmproxy.observe.tracing import NOOP_TRACER
from llmproxy.server.runtime import REQUEST_ID


def per_call(fn: Callable[[], object], n: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    n = ap.parse_args().n
    rows: list[tuple[str, float]] = []

    m = Metrics("bench")
    m.configure(["gpt-4o"], {"up/gpt-4o": "openai"})

    def metrics_full() -> None:
        m.request_started("gpt-4o")
        m.request_finished("gpt-4o", "up/gpt-4o", status=200, duration=0.42, ttft=0.08, stream=True,
                           prompt_tokens=812, completion_tokens=95, cost=0.003)

    def metrics_min() -> None:
        m.request_started("gpt-4o")
        m.request_finished("gpt-4o", "up/gpt-4o", status=200, duration=0.42, ttft=None, stream=False,
                           prompt_tokens=None, completion_tokens=None, cost=None)

    rows.append(("metrics: started+finished (stream, tokens, cost)", per_call(metrics_full, n)))
    rows.append(("metrics: started+finished (no ttft/tokens/cost)", per_call(metrics_min, n)))

    devnull = open(os.devnull, "w")
    config = parse_config("""
        providers: {up: {type: openai, base_url: "http://u.test/v1", api_key: sk-bench-0123456789abcdef}}
        models: {gpt-4o: {deployments: [{provider: up, model: gpt-4o, id: up/gpt-4o}]}}
        """, env={})
    redactor = Redactor(secrets=["sk-bench-0123456789abcdef", "client-key-0123456789"])
    access = AccessLog()
    rid = [uuid.uuid4().hex for _ in range(1000)]
    i = [0]

    def access_line() -> None:
        i[0] += 1
        access.log(request_id=rid[i[0] % 1000] + str(i[0]), method="POST", path="/v1/chat/completions",
                   model="gpt-4o", deployment="up/gpt-4o", status=200, duration_ms=420.123, ttft_ms=80.5,
                   prompt_tokens=812, completion_tokens=95, retries=0, stream=True)

    for fmt in ("json", "text"):
        setup_logging("info", fmt, redactor, stream=devnull, exclusive=True)
        rows.append((f"access line: {fmt}, redacting filter, to /dev/null", per_call(access_line, n)))
    setup_logging("warning", "json", redactor, stream=devnull, exclusive=True)
    rows.append(("access line: logger below INFO (fast path)", per_call(access_line, n)))
    setup_logging("info", "json", redactor, stream=devnull, exclusive=True)

    request = make_mocked_request("POST", "/v1/chat/completions")
    request[REQUEST_ID] = "0e6c565e2f054cb190208227df2bb922"
    dep = config.deployments()[0]
    usage = {"prompt_tokens": 812, "completion_tokens": 95, "total_tokens": 907}

    def observation() -> None:
        obs = Observation(m, NOOP_TRACER, "chat", time.perf_counter)
        obs.resolved("gpt-4o", stream=True)
        obs.attempt(dep, "gpt-4o")
        obs.first_byte_sent()
        obs.attempt_succeeded(usage)
        obs.finish(request, 200, access)

    rows.append(("whole observation (metrics + access line, no tracing)", per_call(observation, n)))

    def observation_no_log() -> None:
        obs = Observation(m, NOOP_TRACER, "chat", time.perf_counter)
        obs.resolved("gpt-4o", stream=True)
        obs.attempt(dep, "gpt-4o")
        obs.first_byte_sent()
        obs.attempt_succeeded(usage)
        obs.finish(request, 200, None)

    rows.append(("whole observation, access line off", per_call(observation_no_log, n)))

    from llmproxy.observe.request_log import RequestLog

    request_log = RequestLog(1000, redact=redactor.redact)

    def observation_logged() -> None:
        obs = Observation(m, NOOP_TRACER, "chat", time.perf_counter)
        obs.request_log = request_log
        obs.resolved("gpt-4o", stream=True)
        obs.attempt(dep, "gpt-4o")
        obs.first_byte_sent()
        obs.attempt_succeeded(usage)
        obs.finish(request, 200, None)

    rows.append(("whole observation, access line off, request log on", per_call(observation_logged, n)))

    r = Redactor()
    rows.append(("redact: short repeated string (memo hit)", per_call(lambda: r.redact("up/gpt-4o"), n)))
    rows.append(("redact: fresh request id (memo miss)", per_call(lambda: r._redact(uuid.uuid4().hex), n // 4)))
    try:
        json.loads("{bad")
    except ValueError:
        tb = traceback.format_exc()
    text = (tb + "  File \"/x/aiohttp/client.py\", line 1, in _request\n    raise ClientConnectorError(k)\n") * 8
    rows.append((f"redact: {len(text)}-char traceback", per_call(lambda: r.redact(text), 2000)))
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello " * 200}],
                       "headers": {"Authorization": "Bearer sk-abcdefghijklmnopqrstuvwx"}})
    rows.append((f"redact: {len(body)}-char JSON body with a key", per_call(lambda: r.redact(body), 2000)))

    def noop_tracing() -> None:
        with NOOP_TRACER.start_span("POST /v1/chat/completions", kind="server") as span:
            span.set_attribute("http.response.status_code", 200)

    rows.append(("tracing off: server span + attribute", per_call(noop_tracing, n)))

    devnull.close()
    logging.getLogger().handlers.clear()
    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}}  µs/call")
    for name, us in rows:
        print(f"{name:<{width}}  {us:7.2f}")


if __name__ == "__main__":
    main()

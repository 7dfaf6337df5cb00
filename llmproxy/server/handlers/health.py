"""Probes: /healthz (the process answers) and /readyz (it should get traffic).

Ready means: a config is loaded, the process is not draining, and at least
one deployment of any model is usable, i.e. its breaker lets traffic through,
it is not cooling after an upstream's Retry-After, and, where an active
health check runs (``health_check``), its latest probe passed (a deployment
not probed yet counts as usable: a start-up is not held back by the first
interval). Failed probes also count toward the breaker, so a deployment
that keeps failing them is benched for traffic too. Concurrency and rate
limits do not count: a full deployment is busy, not broken. Neither does
``state.redis``: without it the proxy serves on local state, so /readyz stays
200 and says ``"redis": "down"`` (``"up"`` when it answers).
"""

from __future__ import annotations

from aiohttp import web

from ...state.redis import shared_redis
from ..runtime import PROXY
from .common import json_response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    proxy = request.app[PROXY]
    if proxy.draining:
        return json_response({"status": "draining"}, status=503)
    router = proxy.runtime.router
    if not router.usable():
        return json_response(
            {
                "status": "no usable deployment",
                "reason": "every deployment's circuit breaker is open, it is cooling down after Retry-After, "
                          "or its latest health probe failed",
                "retry_in": round(router.back_in(), 3),
            },
            status=503,
        )
    body = {"status": "ready", "config_sha256": proxy.runtime.config.sha256}
    redis = shared_redis(request.app)
    if redis is not None:
        body["redis"] = redis.detail()
    return json_response(body)

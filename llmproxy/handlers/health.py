"""Probes: /healthz (the process answers) and /readyz (it should get traffic)."""

from __future__ import annotations

from aiohttp import web

from ..runtime import PROXY
from .common import json_response


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    proxy = request.app[PROXY]
    if proxy.draining:
        return json_response({"status": "draining"}, status=503)
    if not proxy.runtime.router.usable():
        return json_response({"status": "no usable deployment"}, status=503)
    return json_response(
        {"status": "ready", "config_sha256": proxy.runtime.config.sha256}
    )

"""Probes: /healthz (the process answers) and /readyz (it should get traffic)."""

from __future__ import annotations

from aiohttp import web

from ..runtime import PROXY


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    proxy = request.app[PROXY]
    if proxy.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not proxy.runtime.router.usable():
        return web.json_response({"status": "no usable deployment"}, status=503)
    return web.json_response(
        {"status": "ready", "config_sha256": proxy.runtime.config.sha256}
    )

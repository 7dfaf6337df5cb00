"""/admin/*: live config and reloads (routing state joins them later).

Admin endpoints require ``Authorization: Bearer <admin.token>`` when a token
is configured, and are refused to anything but loopback clients when none is.
Nothing here ever shows a credential (config.redacted_view).
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from typing import Any

from aiohttp import web

from ..config import redacted_view
from ..errors import AuthenticationFailed, ProxyError
from ..reload import RELOADER
from ..runtime import PROXY
from .common import json_response


def require_admin(request: web.Request) -> None:
    token = request.app[PROXY].runtime.config.admin.token
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
            raise AuthenticationFailed("admin endpoints need 'Authorization: Bearer <admin.token>'")
        return
    peer = request.remote or ""
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ProxyError(
            "admin endpoints answer loopback clients only unless admin.token is configured",
            status=403, type="permission_error",
        )


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def get_config(request: web.Request) -> web.Response:
    require_admin(request)
    proxy = request.app[PROXY]
    runtime = proxy.runtime
    doc: dict[str, Any] = {
        "source": runtime.config.source,
        "sha256": runtime.config.sha256,
        "loaded_at": _iso(runtime.loaded_at),
        "config": redacted_view(runtime.config),
        "reload": None,
    }
    reloader = request.app.get(RELOADER)
    if reloader is not None:
        st = reloader.status
        doc["reload"] = {
            "reloads": st.reloads,
            "failures": st.failures,
            "last_error": st.last_error,
            "last_error_at": _iso(st.last_error_at),
        }
    return json_response(doc)


async def post_reload(request: web.Request) -> web.Response:
    require_admin(request)
    reloader = request.app.get(RELOADER)
    if reloader is None:
        raise ProxyError("this proxy was not started from a config file; nothing to reload",
                         status=409, type="invalid_request_error")
    swapped = await reloader.reload("POST /admin/reload", force=True)
    if not swapped:
        raise ProxyError(
            "config rejected; the previous config keeps serving: "
            + "; ".join(reloader.status.last_error or []),
            status=422, type="invalid_request_error", code="invalid_config",
        )
    config = request.app[PROXY].runtime.config
    return json_response({"status": "reloaded", "sha256": config.sha256})

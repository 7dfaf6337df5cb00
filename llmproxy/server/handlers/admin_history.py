"""/admin/config/history, /admin/config/diff, /admin/config/rollback.

``GET /admin/config/history`` lists the applied configs newest first;
``GET /admin/config/history/{sha256}`` is one entry with its secret-free
view; ``GET /admin/config/diff?from=<sha>&to=<sha>`` a unified diff of two
views (``to`` defaults to the config serving now; a sha256 may be given by
its first 7+ hex digits). ``POST /admin/config/rollback {"sha256": ...}``
re-applies an earlier config from its kept bytes (``server/reload.py``).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..config_history import CONFIG_HISTORY, Applied, ConfigHistory, unified_diff
from ..reload import RELOADER, RollbackResult
from ..runtime import PROXY
from .admin import admin_error, masked, require_admin
from .common import json_response

MAX_ROLLBACK_BODY = 4096


def _history(request: web.Request) -> ConfigHistory:
    history = request.app.get(CONFIG_HISTORY)
    if history is None:
        raise admin_error("no config history in this proxy", status=404)
    return history


def _entry(history: ConfigHistory, ref: str, what: str) -> Applied:
    try:
        entry = history.find(ref)
    except ValueError as exc:
        raise admin_error(f"{what}: {exc}") from None
    if entry is None:
        raise admin_error(f"{what}: no config with sha256 {ref[:80]!r} in the history "
                          f"(it keeps the last {history.entries.maxlen})", status=404, code="unknown_config")
    return entry


async def get_history(request: web.Request) -> web.Response:
    require_admin(request)
    history = _history(request)
    current = request.app[PROXY].runtime.config.sha256
    return masked(request, {"current": current, "history": [e.summary(current) for e in history.newest_first()]})


async def get_history_entry(request: web.Request) -> web.Response:
    require_admin(request)
    history = _history(request)
    entry = _entry(history, request.match_info["sha"], "sha256")
    doc: dict[str, Any] = entry.summary(request.app[PROXY].runtime.config.sha256)
    doc["config"] = entry.view
    return masked(request, doc)


async def get_diff(request: web.Request) -> web.Response:
    require_admin(request)
    history = _history(request)
    q = request.query
    if not q.get("from"):
        raise admin_error("give ?from=<sha256> (and optionally &to=<sha256>, default: the config serving now)")
    old = _entry(history, q["from"], "from")
    new = _entry(history, q.get("to") or request.app[PROXY].runtime.config.sha256, "to")
    return masked(request, {"from": old.sha256, "to": new.sha256, "diff": unified_diff(old, new)})


async def post_rollback(request: web.Request) -> web.Response:
    require_admin(request)
    reloader = request.app.get(RELOADER)
    if reloader is None:
        raise admin_error("this proxy was not started from a config file; nothing to roll back to", status=409)
    raw = await request.content.read(MAX_ROLLBACK_BODY + 1)
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    if len(raw) > MAX_ROLLBACK_BODY or not isinstance(body, dict) or not isinstance(body.get("sha256"), str):
        raise admin_error('the body must be a JSON object such as {"sha256": "<a sha256 from '
                          '/admin/config/history>"}')
    entry = _entry(_history(request), body["sha256"], "sha256")
    if entry.raw is None:
        raise admin_error(f"config {entry.sha256[:12]} was not read from a file; it cannot be re-applied",
                          status=409)
    result = await reloader.rollback(entry.raw)
    if not isinstance(result, RollbackResult):
        raise admin_error("rollback rejected; the current config keeps serving: " + "; ".join(result),
                          status=422, code="invalid_config")
    return json_response({"status": "rolled back", "sha256": result.config.sha256, "written": result.written,
                          "note": result.note})

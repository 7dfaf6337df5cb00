"""/admin/requests: the request log (``observe/request_log.py``) and its live tail.

``GET /admin/requests?model=&status=&key=&since=&limit=`` answers the newest
entries first; ``status`` is a code (``429``), a class (``5xx``) or
``error`` (>= 400); ``since`` is unix seconds or an ISO-8601 UTC time;
``limit`` 1..1000 (default 100). ``GET /admin/requests/stream`` is the same
entries as Server-Sent Events (``event: request``) as they finish, with the
same filters but ``since``/``limit``; a comment line every
``KEEPALIVE`` seconds keeps idle proxies from closing it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web

from ...observe.request_log import REQUEST_LOG, RequestLog, matches, status_filter
from .admin import admin_error, masked, require_admin

MAX_LIMIT = 1000
KEEPALIVE = 15.0


def _filters(request: web.Request) -> dict[str, Any]:
    q = request.query
    out: dict[str, Any] = {"model": q.get("model") or None, "key": q.get("key"), "status": None}
    if "status" in q:
        out["status"] = status_filter(q["status"])
        if out["status"] is None:
            raise admin_error(f"status must be a code such as 429, a class such as 5xx, or 'error'; "
                              f"got {q['status'][:40]!r}")
    return out


def _since(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise admin_error(f"since must be unix seconds or an ISO-8601 time such as 2026-01-02T03:04:05Z; "
                          f"got {text[:40]!r}") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.timestamp()


def _log(request: web.Request) -> RequestLog:
    log = request.app.get(REQUEST_LOG)
    if log is None or not log.enabled:
        raise admin_error("the request log is off (admin.request_log: 0)", status=404, code="request_log_off")
    return log


async def get_requests(request: web.Request) -> web.Response:
    require_admin(request)
    log = _log(request)
    f = _filters(request)
    since = _since(request.query["since"]) if request.query.get("since") else None
    raw_limit = request.query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise admin_error(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw_limit[:20]!r}")
    entries = log.query(model=f["model"], status=f["status"], key=f["key"], since=since, limit=int(raw_limit))
    return masked(request, {"requests": entries, "size": log.size, "kept": len(log.entries)})


async def stream_requests(request: web.Request) -> web.StreamResponse:
    require_admin(request)
    log = _log(request)
    f = _filters(request)
    sub = log.subscribe()
    if sub is None:
        raise admin_error("too many live tails of the request log are open", status=429, code="too_many_tails")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        await response.write(b": llmproxy request log\n\n")
        while True:
            try:
                entry = await asyncio.wait_for(sub.queue.get(), KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if entry is None:
                if sub.dropped:
                    await response.write(b"event: dropped\ndata: {\"reason\": \"this client fell behind\"}\n\n")
                break
            if matches(entry, f["model"], f["status"], f["key"]):
                await response.write(b"event: request\ndata: " + orjson.dumps(entry) + b"\n\n")
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        log.unsubscribe(sub)
    return response

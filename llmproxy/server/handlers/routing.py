"""From a parsed request to a routing plan (session key, token estimates)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...router import ModelGroup, RouteContext, Router
from ...router.estimate import completion_tokens, prompt_tokens
from ...router.plan import Plan


def make_plan(request: web.Request, router: Router, group: ModelGroup, body: dict[str, Any],
              exclude: frozenset[str] = frozenset()) -> Plan:
    session: str | None = None
    if group.needs_session:
        cfg = group.config
        session = request.headers.get(cfg.session_header)
        if not session and cfg.session_field:
            value = body.get(cfg.session_field)
            session = value if isinstance(value, str) and value else None
    if group.needs_tokens:
        ctx = RouteContext(session, prompt_tokens(body), completion_tokens(body))
    else:
        ctx = RouteContext(session)
    return Plan(router, group, ctx, exclude=exclude)

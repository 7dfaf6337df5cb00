"""/admin/*: live config, reloads and routing state.

Admin endpoints require ``Authorization: Bearer <admin.token>`` when a token
is configured, and are refused to anything but loopback clients when none is;
a ``keys:`` entry with ``role: admin`` is accepted as well as the token.
Nothing here ever shows a credential: the config view replaces them
(``config.views.redacted_view``) and every document passes the redactor
before it is sent, so an upstream error quoting a key (a deployment's
``last_error``) is masked too.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ...cache.response_cache import RESPONSE_CACHE
from ...config.views import redacted_view
from ...errors import AuthenticationFailed, ProxyError
from ...keys.service import lookup, presented_key
from ...observe.logs import REDACTOR
from ...router import DeploymentState
from ...router.state import share_of
from ..reload import RELOADER
from ..runtime import PROXY
from ..siblings import SIBLINGS, merge_cache, merge_deployments, merge_keys
from .admin_keys import keys_view
from .common import json_response


def require_admin(request: web.Request) -> None:
    runtime = request.app[PROXY].runtime
    if runtime.keys.enabled:  # a ``role: admin`` key opens /admin/* as admin.token does
        caller = lookup(runtime.keys, presented_key(request.headers))
        if caller is not None and caller.admin:
            return
    token = runtime.config.admin.token
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


def masked(request: web.Request, doc: dict[str, Any]) -> web.Response:
    redactor = request.app.get(REDACTOR)
    return json_response(doc if redactor is None else redactor.redact_doc(doc))


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def admin_error(message: str, status: int = 400, code: str | None = None) -> ProxyError:
    return ProxyError(message, status=status, type="invalid_request_error", code=code)


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
    return masked(request, doc)


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
    doc: dict[str, Any] = {"status": "reloaded", "sha256": config.sha256}
    group = request.app.get(SIBLINGS)
    if group is not None:  # every worker reads the same file now
        answers = await group.act("reload")
        doc["workers"] = {str(group.info.index): config.sha256,
                          **{str(i): a.get("sha256") for i, a in answers.items() if isinstance(a, dict)}}
    return json_response(doc)


async def reload_here(app: web.Application, query: Mapping[str, str]) -> dict[str, Any]:
    """A sibling's ``POST /admin/reload``, applied to this worker."""
    reloader = app.get(RELOADER)
    swapped = reloader is not None and await reloader.reload("POST /admin/reload (another worker)", force=True)
    return {"swapped": swapped, "sha256": app[PROXY].runtime.config.sha256}


async def local_deployments(app: web.Application) -> list[dict[str, Any]]:
    return deployment_views(app)



def _deployment_view(state: DeploymentState) -> dict[str, Any]:
    cfg = state.config
    cooling = state.cooling_for()
    return {
        "id": state.id,
        "provider": cfg.provider.name,
        "type": cfg.provider.type,
        "model": cfg.model,
        "breaker": state.breaker.state,
        "breaker_retry_in": round(state.breaker.retry_in(), 3),
        "in_flight": state.in_flight,
        "max_concurrency": cfg.max_concurrency,
        "ewma_latency_ms": None if state.ewma is None else round(state.ewma * 1000, 3),
        "cooling_for": round(cooling, 3),
        "rpm": None if state.rpm is None else {"limit": cfg.rpm, "headroom": int(state.rpm.headroom())},
        "tpm": None if state.tpm is None else {"limit": cfg.tpm, "headroom": int(state.tpm.headroom())},
        "requests": state.requests,
        "failures": state.failures,
        # Who enforces rpm / tpm / max_concurrency: the fleet's counters on
        # state.redis ("shared"), or this process ("local"); None: no limit.
        "limits": state.limits_mode(),
        # A --workers group divides the limits when they are local: what this
        # worker enforces then (with "shared": what it falls back to without Redis).
        **({"worker_share": {"max_concurrency": share_of(cfg.max_concurrency, state.workers),
                             "rpm": share_of(cfg.rpm, state.workers),
                             "tpm": share_of(cfg.tpm, state.workers)}}
           if state.workers > 1 else {}),
        "last_error": state.last_error,
        "usable": state.usable(),
        "health_check": _health_view(state),
    }


def _health_view(state: DeploymentState) -> dict[str, Any] | None:
    hc = state.config.health_check
    if not hc.active(state.config.provider.type):
        return None
    h = state.health
    return {
        "kind": hc.kind,
        "interval": hc.interval,
        "ok": None if h is None else h.ok,
        "checked_at": None if h is None else _iso(h.checked_at),
        "latency_ms": None if h is None or h.latency is None else round(h.latency * 1000, 3),
        "error": None if h is None else h.error,
        "consecutive_failures": 0 if h is None else h.consecutive_failures,
        "probes": 0 if h is None else h.probes,
        "failures": 0 if h is None else h.failures,
    }


def deployment_views(app: web.Application) -> list[dict[str, Any]]:
    """This process's view of each deployment (a worker's own, in a group)."""
    return [_deployment_view(s) for s in app[PROXY].runtime.router.states.values()]
async def local_keys(app: web.Application) -> dict[str, Any]:
    proxy = app[PROXY]
    return await keys_view(proxy.runtime.keys, proxy.keys)


async def get_keys(request: web.Request) -> web.Response:
    require_admin(request)
    doc = await local_keys(request.app)
    group = request.app.get(SIBLINGS)
    if group is not None:
        doc = await group.merged("keys", doc, merge_keys)
    return masked(request, doc)


async def get_deployments(request: web.Request) -> web.Response:
    require_admin(request)
    group = request.app.get(SIBLINGS)
    if group is None:
        return masked(request, {"deployments": deployment_views(request.app)})
    return masked(request, await group.merged(
        "deployments", deployment_views(request.app),
        lambda mine, views: {"deployments": merge_deployments(mine, views)}))


async def get_models(request: web.Request) -> web.Response:
    require_admin(request)
    router = request.app[PROXY].runtime.router
    models = []
    for group in (*router.groups.values(), *router.patterns.values()):
        cfg = group.config
        models.append({
            "model": cfg.name,
            "strategy": cfg.strategy,
            "fallbacks": list(cfg.fallbacks),
            "retries": cfg.retry.retries,
            "deployments": [
                {"id": m.id, "provider": m.config.provider.name, "model": m.config.model,
                 "weight": m.config.weight, "priority": m.config.priority,
                 "breaker": m.state.breaker.state, "usable": m.state.usable()}
                for m in group.members
            ],
        })
    return masked(request, {"models": models})


async def local_cache(app: web.Application) -> dict[str, Any]:
    cache = app[RESPONSE_CACHE].cache
    return {"enabled": False} if cache is None else await cache.view()


async def get_cache(request: web.Request) -> web.Response:
    """The response cache: size, entries, hit ratio (``cache.enabled: false``: just that)."""
    require_admin(request)
    doc = await local_cache(request.app)
    group = request.app.get(SIBLINGS)
    if group is not None:
        doc = await group.merged("cache", doc, merge_cache)
    return masked(request, doc)


async def delete_cache(request: web.Request) -> web.Response:
    """Flush the response cache, or only ``?model=`` 's entries."""
    require_admin(request)
    cache = request.app[RESPONSE_CACHE].cache
    if cache is None:
        raise ProxyError("the response cache is off (cache.enabled: false); nothing to flush",
                         status=409, type="invalid_request_error")
    model = request.query.get("model")
    if model is not None and model not in request.app[PROXY].runtime.config.models:
        raise ProxyError(f"model {model!r} does not exist on this proxy", status=404,
                         type="invalid_request_error", param="model")
    flushed = await cache.backend.flush(model)
    group = request.app.get(SIBLINGS)
    if group is not None and cache.backend.kind == "memory":  # each worker holds its own entries
        answers = await group.act("cache_flush", {"model": model} if model else None)
        flushed += sum(a.get("flushed", 0) for a in answers.values() if isinstance(a, dict))
    return json_response({"flushed": flushed, "model": model})


async def flush_here(app: web.Application, query: Mapping[str, str]) -> dict[str, Any]:
    """A sibling's ``DELETE /admin/cache``, applied to this worker's memory cache."""
    cache = app[RESPONSE_CACHE].cache
    if cache is None:
        return {"flushed": 0}
    return {"flushed": await cache.backend.flush(query.get("model"))}


# What a --workers group's siblings ask one another for (server/siblings.py).
GROUP_VIEWS = {"deployments": local_deployments, "keys": local_keys, "cache": local_cache}
GROUP_ACTIONS = {"reload": reload_here, "cache_flush": flush_here}

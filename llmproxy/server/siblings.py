"""One view of a ``--workers`` group from whichever worker answers.

Each worker serves a small private app on its unix socket (in the group's
0700 directory, ``server.workers``): its own metric samples, its own
deployment views, and a reload trigger. A worker answering ``/metrics`` or
``/admin/deployments`` asks its siblings concurrently (bounded by
``ASK_TIMEOUT``), merges what came back with its own figures
(``observe.merge``) and says how many workers answered; a reload through
``POST /admin/reload`` is passed to every sibling.

A sibling that does not answer in time (restarting, stuck) is left out and
counted as missing: a scrape is never held up by one worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from ..observe.merge import (
    Family,
    local_families,
    merge_families,
    render_merged,
    supervisor_families,
)
from ..observe.metrics import CONTENT_TYPE, METRICS
from .workers import STATUS_FILE, WorkerInfo

log = logging.getLogger("llmproxy.workers")

ASK_TIMEOUT = 2.0


class Siblings:
    """This worker's view of the others (one per app, under ``SIBLINGS``)."""

    def __init__(self, info: WorkerInfo) -> None:
        self.info = info
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    def others(self) -> list[int]:
        return [i for i in range(self.info.count) if i != self.info.index]

    def _session(self, index: int) -> aiohttp.ClientSession:
        session = self._sessions.get(index)
        if session is None or session.closed:
            connector = aiohttp.UnixConnector(path=str(self.info.socket(index)))
            session = self._sessions[index] = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT))
        return session

    async def view(self, name: str, mine: Any) -> dict[int, Any]:
        """Every worker's figures for view ``name``, this one's (``mine``) included."""
        views = await self.ask("GET", f"/view/{name}")
        views[self.info.index] = mine
        return views

    async def merged(self, name: str, mine: Any,
                     merge: Callable[[int, dict[int, Any]], dict[str, Any]]) -> dict[str, Any]:
        """View ``name`` of the whole group: every worker's figures (``mine``
        for this one) merged by ``merge``, with how many took part."""
        views = await self.view(name, mine)
        return {**merge(self.info.index, views), "workers": self.info.count, "workers_answering": len(views)}

    async def act(self, name: str, query: Mapping[str, str] | None = None) -> dict[int, Any]:
        """Have every sibling take action ``name``; their answers by worker index."""
        path = f"/action/{name}"
        if query:
            from urllib.parse import urlencode

            path += "?" + urlencode(dict(query))
        return await self.ask("POST", path)

    async def ask(self, method: str, path: str) -> dict[int, Any]:
        """Every sibling's JSON answer to ``method path``, by worker index."""
        async def one(index: int) -> tuple[int, Any]:
            try:
                async with self._session(index).request(method, "http://worker" + path) as resp:
                    if resp.status != 200:
                        return index, None
                    return index, orjson.loads(await resp.read())
            except (aiohttp.ClientError, TimeoutError, OSError, orjson.JSONDecodeError) as exc:
                log.debug("worker %d did not answer %s %s: %s", index, method, path, exc)
                return index, None

        answers = await asyncio.gather(*(one(i) for i in self.others()))
        return {i: doc for i, doc in answers if doc is not None}

    def supervisor_status(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.info.dir / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


SIBLINGS = web.AppKey("llmproxy.siblings", Siblings)


# A worker's own figures for one admin view, and an action every worker takes
# (a reload, a cache flush): what a sibling asks over the socket.
View = Callable[[web.Application], Awaitable[Any]]
Action = Callable[[web.Application, Mapping[str, str]], Awaitable[Any]]


def join_group(app: web.Application, info: WorkerInfo, views: Mapping[str, View],
               actions: Mapping[str, Action]) -> None:
    """Make ``app`` a member of its group: serve its socket, know the others."""
    app[SIBLINGS] = Siblings(info)
    internal = internal_app(app, views, actions)

    def ctx(a: web.Application) -> AsyncIterator[None]:
        return siblings_ctx(a, info, internal)

    app.cleanup_ctx.append(ctx)


def internal_app(main: web.Application, views: Mapping[str, View], actions: Mapping[str, Action]) -> web.Application:
    """The private app on this worker's unix socket (never on the TCP port):
    ``GET /metrics``, ``GET /view/{name}``, ``POST /action/{name}``."""
    app = web.Application()

    def answer(doc: Any) -> web.Response:
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def metrics(_: web.Request) -> web.Response:
        return answer(local_families(main[METRICS]))

    async def view(request: web.Request) -> web.Response:
        fn = views.get(request.match_info["name"])
        if fn is None:
            raise web.HTTPNotFound()
        return answer(await fn(main))

    async def action(request: web.Request) -> web.Response:
        fn = actions.get(request.match_info["name"])
        if fn is None:
            raise web.HTTPNotFound()
        return answer(await fn(main, request.query))

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/view/{name}", view)
    app.router.add_post("/action/{name}", action)
    return app


async def siblings_ctx(app: web.Application, info: WorkerInfo, internal: web.Application) -> AsyncIterator[None]:
    """Serve this worker's socket and hold the sessions to the others."""
    path = info.socket(info.index)
    path.unlink(missing_ok=True)  # a predecessor's, if this worker was restarted
    runner = web.AppRunner(internal, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    siblings = app[SIBLINGS]
    try:
        yield
    finally:
        await siblings.close()
        await runner.cleanup()
        Path(path).unlink(missing_ok=True)


async def group_metrics(app: web.Application) -> bytes:
    """The whole group's exposition: every worker's figures merged."""
    siblings = app[SIBLINGS]
    answers = await siblings.ask("GET", "/metrics")
    by_worker: dict[int, list[Family]] = {i: doc for i, doc in answers.items() if isinstance(doc, list)}
    by_worker[siblings.info.index] = local_families(app[METRICS])
    status = await asyncio.to_thread(siblings.supervisor_status)
    families = merge_families(by_worker)
    families += supervisor_families(siblings.info.count, len(by_worker), int(status.get("restarts", 0)))
    return render_merged(families)


async def handle_group_metrics(request: web.Request) -> web.Response:
    return web.Response(body=await group_metrics(request.app), headers={"Content-Type": CONTENT_TYPE})


def group_metrics_app(main: web.Application) -> web.Application:
    """The separate metrics port of a worker: the group's figures too."""
    app = web.Application()

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=await group_metrics(main), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", handle)
    return app


# Per-deployment figures that add up over workers; the rest is per worker.
_SUMMED = ("in_flight", "requests", "failures")
_PER_WORKER = ("breaker", "breaker_retry_in", "in_flight", "ewma_latency_ms", "cooling_for", "rpm", "tpm",
               "last_error", "usable")


def merge_deployments(mine: int, views: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per deployment id: counts summed, per-worker state under ``workers``."""
    out: dict[str, dict[str, Any]] = {}
    for worker in sorted(views, key=lambda w: (w != mine, w)):
        for view in views[worker]:
            if not isinstance(view, dict) or not isinstance(view.get("id"), str):
                continue
            entry = out.get(view["id"])
            if entry is None:
                entry = out[view["id"]] = {**view, "workers": []}
                for k in _SUMMED:
                    entry[k] = 0
            for k in _SUMMED:
                entry[k] += view.get(k) or 0
            entry["workers"].append({"worker": worker, **{k: view.get(k) for k in _PER_WORKER}})
            entry["usable"] = bool(entry.get("usable")) or bool(view.get("usable"))
    return list(out.values())


def _add(into: dict[str, Any], more: dict[str, Any], fields: tuple[str, ...]) -> None:
    for k in fields:
        into[k] = (into.get(k) or 0) + (more.get(k) or 0)


def merge_keys(mine: int, views: dict[int, Any]) -> dict[str, Any]:
    """``/admin/keys`` of the group. What each worker shows depends on where
    spend lives: on Redis (``shared``), its USD is the fleet's and only the
    request and token counts are the worker's own; in a state file every
    worker re-reads, all of it is the instance's already; in memory only
    (``state.path: null``) all of it is the worker's own. Own figures are
    summed, shared ones stand; in flight always adds up."""
    base = views[mine]
    if base.get("shared") in ("redis", "unavailable"):
        summed: tuple[str, ...] = ("requests", "tokens")
    elif (base.get("store") or {}).get("path") and not base["store"].get("problem"):
        summed = ()
    else:
        summed = ("usd", "requests", "tokens")
    out = {**base, "keys": []}
    others = [v for w, v in sorted(views.items()) if w != mine and isinstance(v, dict)]
    for entry in base.get("keys", []):
        merged = {**entry, "spend": {k: (dict(v) if isinstance(v, dict) else v)
                                     for k, v in entry["spend"].items()}}
        for view in others:
            theirs = next((k for k in view.get("keys", []) if k.get("name") == entry["name"]), None)
            if theirs is None:
                continue
            _add(merged, theirs, ("in_flight",))
            for window in ("period", "lifetime"):
                if isinstance(merged["spend"].get(window), dict) and isinstance(theirs["spend"].get(window), dict):
                    _add(merged["spend"][window], theirs["spend"][window], summed)
            _add(merged, theirs, tuple(k for k in ("requests", "tokens") if k in summed))
        budget = merged.get("budget")
        if "usd" in summed and isinstance(budget, dict):
            period = merged["spend"]["period"] or merged["spend"]["lifetime"]
            merged["budget"] = {**budget, "remaining_usd": round(max(budget["usd"] - period["usd"], 0.0), 9)}
        out["keys"].append(merged)
    return out


_CACHE_SUMMED = ("hits", "misses", "bypasses", "evictions", "in_flight")


def merge_cache(mine: int, views: dict[int, Any]) -> dict[str, Any]:
    """``/admin/cache`` of the group: verdict counts add up; a memory cache is
    per worker, so its bytes and entries add up too (Redis': one store)."""
    base = dict(views[mine])
    if not base.get("enabled"):
        return base
    others = [v for w, v in views.items() if w != mine and isinstance(v, dict) and v.get("enabled")]
    for view in others:
        for k in _CACHE_SUMMED + (("bytes", "entries") if base.get("backend") == "memory" else ()):
            base[k] = (base.get(k) or 0) + (view.get(k) or 0)
    looked = base["hits"] + base["misses"]
    base["hit_ratio"] = round(base["hits"] / looked, 4) if looked else None
    return base

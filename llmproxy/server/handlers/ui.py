"""GET /ui: the status page, static files shipped in the package (server/ui/).

The page is a shell: it holds no data and no secret; everything it shows
comes from /admin/* JSON, fetched by its script with the admin token the
operator types into the page (kept in sessionStorage, sent as
``Authorization: Bearer``: a browser never attaches it by itself, so another
site cannot make it act; door.py refuses cross-site Origins anyway). Without
``admin.token`` the page and its data answer loopback clients only, as
/admin does; with one, the shell is served to anyone who reaches the port
(it is the same for everyone) and its data needs the token.
"""

from __future__ import annotations

import asyncio
from importlib import resources

from aiohttp import web

from ..runtime import PROXY
from .admin import require_admin

# name → content type: only these files are served (no path from the URL reaches the filesystem).
FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
# The page loads nothing from elsewhere: a CSP that says so stops an injected script or a CDN.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
}


def _read(name: str) -> bytes:
    return resources.files("llmproxy.server").joinpath("ui", name).read_bytes()


# Each file read once, on first use, off the event loop (package files do not change while it runs).
UI_FILES = web.AppKey("llmproxy.ui_files", dict)


async def ui_file(request: web.Request) -> web.Response:
    if not request.app[PROXY].runtime.config.admin.token:
        require_admin(request)  # loopback only, as /admin
    name = request.match_info.get("name") or "index.html"
    if name not in FILES:
        raise web.HTTPNotFound()
    cache = request.app[UI_FILES]
    body = cache.get(name)
    if body is None:
        body = cache[name] = await asyncio.to_thread(_read, name)
    return web.Response(body=body, content_type=FILES[name], charset="utf-8", headers=HEADERS)

"""Who may knock: browser origins, the Host a loopback listener answers to, CORS.

A web page can make a browser send a "simple" cross-site POST (text/plain,
no preflight) to 127.0.0.1:8080, and DNS rebinding lets it read the answer
under its own name. Two rules stop both, whatever ``server.api_keys`` is:

- a request with an ``Origin`` header is refused unless the origin is in
  ``server.cors_origins`` (``"*"``: any). SDKs and curl send no Origin.
- while the proxy listens on a loopback address, a ``Host`` that is not a
  loopback name (localhost, *.localhost, 127.0.0.0/8, [::1], any port) nor in
  ``server.allowed_hosts`` is refused: a rebound name never matches.

Allowed origins get real CORS: preflights are answered here (before any key
is asked for: browsers send none on a preflight) and answers carry
``Access-Control-Allow-Origin``.
"""

from __future__ import annotations

import ipaddress
import re

from aiohttp import web

from ..config.tree import ServerConfig
from ..errors import Forbidden

# True when the listener is on loopback; set from the config by create_app,
# from the address actually bound by serve().
LOOPBACK = web.AppKey("llmproxy.loopback", bool)
# The allowed Origin of this request, for the response's CORS headers.
CORS_ORIGIN = web.RequestKey("llmproxy.cors_origin", str)

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_TOKEN_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")
_PREFLIGHT_MAX_AGE = "600"


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def admit(request: web.Request, server: ServerConfig, loopback: bool) -> web.Response | None:
    """Raise ``Forbidden`` for a refused Host or Origin; the answer to a CORS
    preflight, or None to go on with the request."""
    headers = request.headers
    if loopback:
        host = headers.get("Host")
        if host is not None and not _host_verdict(host, server.allowed_hosts):
            raise Forbidden(
                f"Host {host[:100]!r} is not a loopback name; a proxy listening on loopback "
                "answers only those and server.allowed_hosts",
                code="host_not_allowed",
            )
    origin = headers.get("Origin")
    if origin is None:
        return None
    allowed = server.cors_origins
    if _same_origin(origin, headers.get("Host"), server.allowed_hosts):
        return None  # the proxy's own page (/ui): no CORS needed
    if not ("*" in allowed or origin.lower().rstrip("/") in allowed):
        raise Forbidden(
            f"requests from origin {origin[:100]!r} are not allowed; list it in server.cors_origins",
            code="origin_not_allowed",
        )
    request[CORS_ORIGIN] = origin
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in headers:
        return _preflight(origin, headers.get("Access-Control-Request-Headers", ""))
    return None


# The verdicts for recently seen Host values (clients send the same one on
# every request), for one ``allowed_hosts`` tuple; bounded.
_HOSTS_MAX = 256
_hosts_for: tuple[str, ...] | None = None
_hosts: dict[str, bool] = {}


def _host_verdict(host: str, extra: tuple[str, ...]) -> bool:
    global _hosts_for, _hosts
    if extra is not _hosts_for:
        _hosts_for, _hosts = extra, {}
    verdict = _hosts.get(host)
    if verdict is None:
        if len(_hosts) >= _HOSTS_MAX:
            _hosts = {}
        verdict = _hosts[host] = _host_allowed(host, extra)
    return verdict


def _host_allowed(host: str, extra: tuple[str, ...]) -> bool:
    name = host.lower()
    if name.startswith("["):
        name = name[: name.find("]") + 1]
    else:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    if name[:4] == "127." and is_loopback(name):
        return True
    if not extra:
        return False
    return "*" in extra or name in extra or any(
        e.startswith("*.") and name.endswith(e[1:]) for e in extra
    )


def _same_origin(origin: str, host: str | None, extra: tuple[str, ...]) -> bool:
    """``Origin`` names the very host:port the request was sent to, a loopback
    name or one of ``server.allowed_hosts`` (a browser sends Origin on its own
    page's POSTs, e.g. /ui's reload button). A rebound name (DNS rebinding)
    is same-origin too, so only hosts the operator vouches for count."""
    if host is None:
        return False
    scheme, sep, rest = origin.lower().partition("://")
    return bool(sep) and scheme in ("http", "https") and rest == host.lower() and _host_verdict(host, extra)


def _preflight(origin: str, requested_headers: str) -> web.Response:
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE,
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    requested = requested_headers.strip()
    # SDKs send their own headers (x-stainless-*): echo what was asked, if well formed.
    if requested and len(requested) <= 4096 and _TOKEN_LIST.fullmatch(requested):
        headers["Access-Control-Allow-Headers"] = requested
    else:
        headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
    return web.Response(status=204, headers=headers)


def cors_headers(response: web.StreamResponse, origin: str) -> None:
    """An allowed origin may read the answer (streams too). Called where
    answers are built (the error middleware, the stream relay), not from a
    per-response signal: aiohttp's signal dispatch costs on every answer."""
    headers = response.headers
    if "Access-Control-Allow-Origin" not in headers:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = "X-Request-ID"
        headers.add("Vary", "Origin")

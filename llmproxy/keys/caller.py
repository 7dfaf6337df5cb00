"""The caller of a request, as authentication established it.

Set on the request by the error middleware before any handler runs
(``request[CALLER]``); everything downstream that is per caller (per-key
limits, spend, the cache's ``scope: key``, the access line) reads it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Caller:
    # The key's ``name`` (``keys:``), or "" for a caller the proxy does not
    # tell apart (no keys configured, or a plain ``server.api_keys`` entry).
    name: str


ANONYMOUS = Caller("")
CALLER = web.RequestKey("llmproxy.caller", Caller)

"""The caller of a request, as authentication established it.

Set on the request by the error middleware before any handler runs
(``request[CALLER]``); everything downstream that is per caller (per-key
limits, spend, the cache's ``scope: key``, the access line) reads it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .policy import KeyPolicy


@dataclass(frozen=True, slots=True)
class Caller:
    # The key's ``name`` (``keys:``); ``api-key-<8 hex of its sha256>`` for a
    # plain ``server.api_keys`` entry; "" when the proxy asks for no key.
    name: str
    # What the key may do; None for a caller the proxy does not tell apart.
    policy: KeyPolicy | None = None

    @property
    def admin(self) -> bool:
        return self.policy is not None and self.policy.admin


ANONYMOUS = Caller("")
CALLER = web.RequestKey("llmproxy.caller", Caller)

"""JWT callers on the request path (``auth.jwt``): which tokens are JWTs,
and the caller a verified one names.

A Bearer token shaped like a JWS compact serialization (three base64url
parts, RFC 7515 §7.1) is a JWT when ``auth.jwt`` is set, unless it is a
configured key (looked up first by hash: a key that happens to hold two
dots keeps working). The verified token's ``key_claim`` selects a
``keys:`` entry by ``name`` (``server.api_keys`` entries are never
selectable); its policy (models, limits, budget) applies as to a key.

Refusals: a token that does not verify is 401 ``invalid_token`` with the
verifier's reason (expired, not yet valid, wrong audience or issuer, bad
signature, an alg not accepted, ``none`` included...); a verified token
whose claim is missing or names no entry is 403 ``unknown_caller``: the
issuer vouched for the caller, this proxy has no policy for it.

The verifier (``keys.jwt``, which imports pyjwt) is imported and started
only when ``auth.jwt`` is set (``jwt_ctx``); without it this module costs
a dict lookup per request and nothing else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import AuthenticationFailed, CallerUnknown, TokenRejected
from .caller import Caller
from .service import lookup, presented_key
from .table import KeyTable

if TYPE_CHECKING:
    from .jwt import JwtVerifier

log = logging.getLogger("llmproxy.auth")

_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts (the signature part is empty for ``alg: none``, refused later)."""
    return token.count(".") == 2 and _JWS.fullmatch(token) is not None


@dataclass(slots=True)
class JwtSlot:
    """The app's verifier: set at start-up by ``jwt_ctx`` when ``auth.jwt`` is configured."""

    verifier: JwtVerifier | None = None


JWT_SLOT = web.AppKey("llmproxy.jwt", JwtSlot)


async def key_or_jwt_caller(verifier: JwtVerifier, table: KeyTable, headers: Mapping[str, str]) -> Caller:
    """The error middleware's authentication when ``auth.jwt`` is on: a key, else a JWT."""
    token = presented_key(headers)
    caller = lookup(table, token)
    if caller is not None:
        return caller
    if looks_like_jwt(token):
        return await jwt_caller(verifier, table, token)
    raise AuthenticationFailed("missing or invalid API key or JWT for this proxy")


async def jwt_caller(verifier: JwtVerifier, table: KeyTable, token: str) -> Caller:
    """The caller a JWT names, or the 401/403 that says why not."""
    from .jwt import JwtRejected, caller_name_from_claims

    claims = await verifier.verify(token)
    if isinstance(claims, JwtRejected):
        raise TokenRejected(f"JWT rejected ({claims.reason}): {claims.message}")
    claim = verifier.config.key_claim
    name = caller_name_from_claims(claims, claim)
    if name is None:
        raise CallerUnknown(f"the JWT has no string claim {claim!r} (auth.jwt.key_claim) naming its caller")
    caller = table.by_claim.get(name)
    if caller is None:
        raise CallerUnknown(f"the JWT's {claim!r} claim names no keys: entry of this proxy")
    return caller


async def jwt_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the verifier started (its first JWKS read) before serving, closed at the end.

    ``auth.jwt`` is read at start-up: a reload that changes it is reported as
    needing a restart (``server.reload``)."""
    from ..server.runtime import PROXY

    proxy = app[PROXY]
    config = proxy.runtime.config.auth.jwt
    slot = app[JWT_SLOT]
    if config is not None:
        from .jwt import JwksError, JwtVerifier

        base = Path(proxy.config_path).parent if proxy.config_path else None
        verifier = JwtVerifier(config, upstream=proxy.upstream, base_dir=base, clock=proxy.clock)
        try:
            await verifier.start()
        except JwksError as exc:
            # Keys and probes keep working; JWT callers are refused (401,
            # "keys are unavailable") until a read succeeds: each unknown
            # kid retries, at most every jwks_refresh_min seconds.
            log.error("%s: JWT callers are refused until the JWKS can be read", exc)
        slot.verifier = verifier
    yield
    if slot.verifier is not None:
        await slot.verifier.close()
        slot.verifier = None

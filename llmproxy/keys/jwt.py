"""JWT bearer tokens (``auth.jwt``): verification and the caller they name.

``JwtVerifier.verify(token)`` returns the token's claims, or a ``JwtRejected``
with the reason (the middleware answers 401 with its message; the messages
name no token content). The signature check is pyjwt's on cryptography's
RSA / ECDSA / EdDSA (the ``jwt`` extra): hand-rolled signature verification
is where JWT libraries historically broke (alg confusion, unchecked curves,
malleable encodings), so it is not done here. What is done here, before
pyjwt sees the token:

- ``alg`` must be one of ``auth.jwt.algorithms`` (public-key algorithms
  only, enforced by the config): ``none`` and ``HS*`` are refused whatever
  the config says, so a public JWKS key is never used as an HMAC secret;
- the key is chosen by the token's ``kid`` from the JWKS, and must fit the
  ``alg`` (RSA for RS*/PS*, the matching curve for ES*, Ed25519/Ed448 for
  EdDSA; a JWK's own ``alg`` and ``use`` are honoured); ``jku``/``x5u``/
  ``jwk`` headers are ignored: keys come from the config's JWKS only;
- ``exp``, ``iss`` and ``aud`` are required; ``nbf`` and ``iat`` are checked
  when present; ``leeway`` seconds of clock skew are allowed.

JWKS sources: ``jwks_file`` (read off the event loop) and/or ``jwks_url``
(fetched on the upstream seam, ``Upstream.fetch_document``: 1 MiB, 5 s);
with both, the union. They are read at ``start()``, again in the
background every ``jwks_refresh`` seconds (a failed refresh keeps the keys
it had), and at once when a token names an unknown ``kid`` (a key rotation),
at most once per ``jwks_refresh_min`` seconds so a flood of made-up kids
cannot hammer the identity provider; concurrent refreshes share one fetch.
Symmetric (``oct``) keys and RSA keys under 2048 bits in a JWKS are skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jwt
from jwt import PyJWK

from ..config.tree import JWT_ALGORITHMS, JwtConfig
from ..upstream.documents import FetchError

if TYPE_CHECKING:
    from ..upstream import Upstream

log = logging.getLogger("llmproxy.auth")

MAX_TOKEN_BYTES = 16 * 1024
MAX_JWKS_BYTES = 1024 * 1024
MAX_JWKS_KEYS = 100
JWKS_TIMEOUT = 5.0
MAX_CALLER_NAME = 256

Reason = Literal[
    "malformed", "alg_not_allowed", "unknown_kid", "bad_signature", "expired", "not_yet_valid",
    "wrong_audience", "wrong_issuer", "missing_claim", "invalid", "jwks_unavailable",
]

_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A JWKS entry pyjwt could load, with what decides which ``alg`` it checks."""

    jwk: PyJWK
    kty: str
    crv: str | None
    alg: str | None  # the JWK's own "alg", if it declares one


@dataclass(frozen=True, slots=True)
class JwtRejected:
    reason: Reason
    message: str  # for the client's 401: says what is wrong, quotes nothing from the token

    def __bool__(self) -> bool:
        return False


class JwksError(Exception):
    """A JWKS source could not be read or holds no usable key."""


def caller_name_from_claims(claims: Mapping[str, Any], key_claim: str) -> str | None:
    """The ``keys:`` entry name a verified token names through ``key_claim``.

    A top-level claim, or a dotted path into nested objects (``org.team``)
    when no top-level claim has that name. Only a non-empty string of at most
    256 characters names a caller; anything else (missing, a number, a list)
    is None, for the middleware to refuse.
    """
    value: Any = claims.get(key_claim)
    if value is None and "." in key_claim:
        value = claims
        for part in key_claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str) and 0 < len(value) <= MAX_CALLER_NAME:
        return value
    return None


def parse_jwks(data: bytes, source: str) -> dict[str | None, list[SigningKey]]:
    """The usable signing keys of a JWKS document, by ``kid`` (pure)."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise JwksError(f"{source} is not JSON: {exc}") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise JwksError(f'{source} is not a JWKS (an object with a "keys" list)')
    out: dict[str | None, list[SigningKey]] = {}
    skipped: list[str] = []
    for i, entry in enumerate(keys[:MAX_JWKS_KEYS]):
        why = _unusable(entry)
        if why is None:
            try:
                key = PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
                why = f"not a usable key ({type(exc).__name__})"
            else:
                size = getattr(key.key, "key_size", None)
                if key.key_type == "RSA" and isinstance(size, int) and size < 2048:
                    why = f"an RSA key of {size} bits (at least 2048)"
                else:
                    crv, alg = entry.get("crv"), entry.get("alg")
                    out.setdefault(key.key_id, []).append(SigningKey(
                        key, entry["kty"], crv if isinstance(crv, str) else None, alg if isinstance(alg, str) else None,
                    ))
                    continue
        skipped.append(f"keys[{i}]: {why}")
    if skipped:
        log.warning("auth.jwt: %s: skipped %s", source, "; ".join(skipped[:5]))
    if not out:
        raise JwksError(f"{source} holds no usable signing key")
    return out


def _unusable(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    kty = entry.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        return f"kty {kty!r} (public keys only: RSA, EC, OKP)" if isinstance(kty, str) else "no kty"
    if entry.get("use", "sig") != "sig":
        return "not a signing key (use is not sig)"
    if any(p in entry for p in ("d", "p", "q")):
        return "a private key (publish public keys only)"
    return None


def _fits(key: SigningKey, alg: str) -> bool:
    """Whether ``key`` may check a signature made with ``alg``."""
    if key.alg is not None and key.alg != alg:
        return False
    kty, crv = key.kty, key.crv
    if alg[:2] in ("RS", "PS"):
        return kty == "RSA"
    if alg in _CURVES:
        return kty == "EC" and crv == _CURVES[alg]
    if alg == "EdDSA":
        return kty == "OKP" and crv in ("Ed25519", "Ed448")
    return False


class JwtVerifier:
    def __init__(self, config: JwtConfig, *, upstream: Upstream | None = None, base_dir: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if config.jwks_url and upstream is None:
            raise ValueError("auth.jwt.jwks_url needs the Upstream to fetch it on")
        self.config = config
        self._upstream = upstream
        path = Path(config.jwks_file) if config.jwks_file else None
        self._file = (base_dir / path if base_dir is not None and not path.is_absolute() else path) if path else None
        self._clock = clock
        self._allowed = frozenset(a for a in config.algorithms if a in JWT_ALGORITHMS)
        self._file_keys: dict[str | None, list[SigningKey]] = {}
        self._url_keys: dict[str | None, list[SigningKey]] = {}
        self._keys: dict[str | None, list[SigningKey]] = {}
        self._loaded_at = -float("inf")  # last successful read of every source
        self._tried_at = -float("inf")  # last attempt of any refresh
        self._refresh: asyncio.Task[None] | None = None
        self._failing = False
        self.fetches = 0  # reads of the JWKS sources (tests, /admin)

    # -- keys

    async def start(self) -> None:
        """First read of the JWKS; a broken ``jwks_file`` is an error here,
        an unreachable ``jwks_url`` a WARNING (it is retried)."""
        if self._file is not None:
            self._file_keys = await self._read_file()
        await self._refresh_now(file_read=True)

    async def close(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            try:
                await self._refresh
            except asyncio.CancelledError:
                pass

    async def _read_file(self) -> dict[str | None, list[SigningKey]]:
        assert self._file is not None
        path = self._file

        def read() -> bytes:
            with path.open("rb") as f:
                data = f.read(MAX_JWKS_BYTES + 1)
            if len(data) > MAX_JWKS_BYTES:
                raise JwksError(f"auth.jwt.jwks_file {path} is larger than {MAX_JWKS_BYTES} bytes")
            return data

        try:
            data = await asyncio.to_thread(read)
        except OSError as exc:
            raise JwksError(f"auth.jwt.jwks_file {path}: {exc.strerror or exc}") from None
        return parse_jwks(data, f"auth.jwt.jwks_file {path}")

    async def _read_url(self) -> dict[str | None, list[SigningKey]]:
        assert self._upstream is not None and self.config.jwks_url
        try:
            data = await self._upstream.fetch_document(self.config.jwks_url, max_bytes=MAX_JWKS_BYTES,
                                                       timeout=JWKS_TIMEOUT)
        except FetchError as exc:
            raise JwksError(f"auth.jwt.jwks_url: {exc}") from None
        return parse_jwks(data, "auth.jwt.jwks_url")

    async def _refresh_now(self, *, file_read: bool = False) -> None:
        self._tried_at = self._clock()
        self.fetches += 1
        problems: list[str] = []
        ok = True
        if self._file is not None and not file_read:
            try:
                self._file_keys = await self._read_file()
            except JwksError as exc:
                problems.append(str(exc))
                ok = False
        if self.config.jwks_url:
            try:
                self._url_keys = await self._read_url()
            except JwksError as exc:
                problems.append(str(exc))
                ok = False
        merged: dict[str | None, list[SigningKey]] = {}
        for source in (self._file_keys, self._url_keys):
            for kid, keys in source.items():
                merged.setdefault(kid, []).extend(keys)
        self._keys = merged
        if ok:
            self._loaded_at = self._tried_at
            if self._failing:
                log.info("auth.jwt: the JWKS is readable again")
            self._failing = False
        elif not self._failing:  # once per failure streak, not per refresh
            self._failing = True
            log.warning("auth.jwt: cannot refresh the JWKS (%s); keeping the %d key(s) it had",
                        "; ".join(problems), sum(map(len, merged.values())))

    async def _refreshed(self) -> None:
        """Refresh (sharing a refresh already under way)."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_now())
        await asyncio.shield(self._refresh)

    def _maybe_refresh_in_background(self) -> None:
        now = self._clock()
        stale = now - self._loaded_at >= self.config.jwks_refresh
        if stale and now - self._tried_at >= self.config.jwks_refresh_min and (
                self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_now())

    async def _key_for(self, kid: str | None, alg: str) -> SigningKey | JwtRejected:
        self._maybe_refresh_in_background()
        found = self._lookup(kid, alg)
        if found is None and self._clock() - self._tried_at >= self.config.jwks_refresh_min:
            await self._refreshed()  # a rotated key: read the JWKS again (rate-limited)
            found = self._lookup(kid, alg)
        if found is not None:
            return found
        if not self._keys:
            return JwtRejected("jwks_unavailable", "the token cannot be checked: the issuer's keys are unavailable")
        if kid is None:
            return JwtRejected("unknown_kid", "the token names no key (kid) and the issuer has several for its alg")
        return JwtRejected("unknown_kid", "the token is signed with a key (kid) the issuer does not publish")

    def _lookup(self, kid: str | None, alg: str) -> SigningKey | None:
        if kid is not None:
            fitting = [k for k in self._keys.get(kid, ()) if _fits(k, alg)]
        else:  # no kid: only an unambiguous key (never try them all: each try is a signature check)
            fitting = [k for keys in self._keys.values() for k in keys if _fits(k, alg)]
        return fitting[0] if len(fitting) == 1 else None

    # -- tokens

    async def verify(self, token: str) -> dict[str, Any] | JwtRejected:
        if len(token) > MAX_TOKEN_BYTES:
            return JwtRejected("malformed", f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return JwtRejected("malformed", "the token is not a JWT (header.payload.signature)")
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or (kid is not None and not isinstance(kid, str)):
            return JwtRejected("malformed", "the token's header has no valid alg or kid")
        if alg.lower() == "none" or alg.upper().startswith("HS") or alg not in self._allowed:
            shown = alg if len(alg) <= 20 else alg[:20] + "..."
            return JwtRejected("alg_not_allowed", f"the token's alg {shown!r} is not accepted; "
                                                  f"accepted: {', '.join(sorted(self._allowed))}")
        key = await self._key_for(kid, alg)
        if isinstance(key, JwtRejected):
            return key
        c = self.config
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.jwk.key, algorithms=[alg], audience=c.audience, issuer=c.issuer, leeway=c.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            return JwtRejected("expired", "the token has expired")
        except jwt.ImmatureSignatureError:
            return JwtRejected("not_yet_valid", "the token is not valid yet (nbf or iat is in the future)")
        except jwt.InvalidAudienceError:
            return JwtRejected("wrong_audience", f"the token is not for this audience (expected {c.audience})")
        except jwt.InvalidIssuerError:
            return JwtRejected("wrong_issuer", f"the token is not from the expected issuer {c.issuer}")
        except jwt.MissingRequiredClaimError as exc:
            return JwtRejected("missing_claim", f"the token has no {exc.claim} claim")
        except jwt.InvalidSignatureError:
            return JwtRejected("bad_signature", "the token's signature does not verify")
        except jwt.InvalidAlgorithmError:
            return JwtRejected("alg_not_allowed", "the token's alg is not accepted")
        except jwt.DecodeError:
            return JwtRejected("malformed", "the token cannot be decoded")
        except jwt.InvalidTokenError as exc:
            return JwtRejected("invalid", f"the token is invalid ({type(exc).__name__})")
        return claims

"""auth.jwt: JWT verification with real RSA, EC and Ed25519 keys made here,
a JWKS served by a real HTTP server on 127.0.0.1 (fetched on the upstream
seam) or read from a file, and every way a token is refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from llmproxy.config.tree import (
    ConfigError,
    JwtConfig,
    UpstreamPoolConfig,
    parse_config,
)
from llmproxy.keys import jwt as jwt_module
from llmproxy.keys.jwt import (
    JwksError,
    JwtRejected,
    JwtVerifier,
    caller_name_from_claims,
    parse_jwks,
)
from llmproxy.upstream import Upstream

ISSUER, AUDIENCE = "https://idp.example.com/", "llmproxy"


@dataclass
class Signer:
    kid: str
    alg: str
    private: Any
    jwk: dict[str, Any]

    def token(self, claims: dict[str, Any] | None = None, *, kid: str | None = "same", alg: str | None = None,
              **extra: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "team": "search", "iat": now,
                   "exp": now + 300, **(claims or {}), **extra}
        payload = {k: v for k, v in payload.items() if v is not None}
        headers = {} if kid is None else {"kid": self.kid if kid == "same" else kid}
        return jwt.encode(payload, self.private, algorithm=alg or self.alg, headers=headers)


def _jwk(algorithm: Any, public: Any, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


@pytest.fixture(scope="module")
def keys() -> dict[str, Signer]:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    r1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    e1 = ec.generate_private_key(ec.SECP256R1())
    e3 = ec.generate_private_key(ec.SECP384R1())
    o1 = ed25519.Ed25519PrivateKey.generate()
    return {
        "rsa": Signer("rsa-1", "RS256", r1, _jwk(RSAAlgorithm, r1.public_key(), "rsa-1")),
        "rsa2": Signer("rsa-2", "RS256", r2, _jwk(RSAAlgorithm, r2.public_key(), "rsa-2")),
        "ec": Signer("ec-1", "ES256", e1, _jwk(ECAlgorithm, e1.public_key(), "ec-1")),
        "ec384": Signer("ec-384", "ES384", e3, _jwk(ECAlgorithm, e3.public_key(), "ec-384")),
        "ed": Signer("ed-1", "EdDSA", o1, _jwk(OKPAlgorithm, o1.public_key(), "ed-1")),
    }


@dataclass
class JwksServer:
    keys: list[dict[str, Any]]
    status: int = 200
    hits: int = 0
    body: bytes | None = None
    delay: float = 0.0
    url: str = ""
    server: TestServer | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.delay:
            try:
                await asyncio.wait_for(self.released.wait(), self.delay)
            except TimeoutError:
                pass
        body = self.body if self.body is not None else json.dumps({"keys": self.keys}).encode()
        return web.Response(body=body, status=self.status, content_type="application/json")


@pytest.fixture
async def jwks_server(keys: dict[str, Signer]) -> AsyncIterator[JwksServer]:
    fake = JwksServer([keys["rsa"].jwk, keys["ec"].jwk, keys["ed"].jwk])
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", fake.handle)
    fake.server = TestServer(app, host="127.0.0.1")
    await fake.server.start_server()
    fake.url = str(fake.server.make_url("/.well-known/jwks.json"))
    yield fake
    fake.released.set()
    await fake.server.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream(UpstreamPoolConfig())
    await up.start()
    yield up
    await up.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def verifier_for(upstream: Upstream) -> Any:
    made: list[JwtVerifier] = []

    async def make(config: JwtConfig, clock: Callable[[], float] = time.monotonic,
                   base_dir: Path | None = None) -> JwtVerifier:
        v = JwtVerifier(config, upstream=upstream, base_dir=base_dir, clock=clock)
        await v.start()
        made.append(v)
        return v

    yield make
    for v in made:
        await v.close()


def config(url: str | None = None, **kw: Any) -> JwtConfig:
    return JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=url, **kw)


def rejected(result: Any, reason: str) -> JwtRejected:
    assert isinstance(result, JwtRejected), result
    assert result.reason == reason, result
    return result


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"


# --------------------------------------------------------------------------- accepted


async def test_rs256_es256_and_eddsa_tokens_verify(jwks_server: JwksServer, verifier_for: Any,
                                                   keys: dict[str, Signer]) -> None:
    v = await verifier_for(config(jwks_server.url))
    for name in ("rsa", "ec", "ed"):
        claims = await v.verify(keys[name].token())
        assert isinstance(claims, dict), (name, claims)
        assert claims["team"] == "search" and claims["iss"] == ISSUER
        assert caller_name_from_claims(claims, "team") == "search"
    assert jwks_server.hits == 1  # read once at start, cached


async def test_a_token_without_kid_uses_the_only_key_for_its_alg(jwks_server: JwksServer, verifier_for: Any,
                                                                  keys: dict[str, Signer]) -> None:
    v = await verifier_for(config(jwks_server.url))
    assert isinstance(await v.verify(keys["ed"].token(kid=None)), dict)
    jwks_server.keys.append(keys["rsa2"].jwk)
    v2 = await verifier_for(config(jwks_server.url))
    # Two RSA keys and no kid: ambiguous, never "try them all".
    rejected(await v2.verify(keys["rsa"].token(kid=None)), "unknown_kid")


async def test_a_jwks_file_relative_to_the_config_and_the_union_with_the_url(
        tmp_path: Path, jwks_server: JwksServer, verifier_for: Any, keys: dict[str, Signer]) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [keys["ec384"].jwk]}))
    only_file = JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_file="jwks.json", algorithms=("ES384",))
    v = await verifier_for(only_file, base_dir=tmp_path)
    assert isinstance(await v.verify(keys["ec384"].token()), dict)
    both = replace(only_file, jwks_url=jwks_server.url, algorithms=("ES384", "RS256"))
    v2 = await verifier_for(both, base_dir=tmp_path)
    assert isinstance(await v2.verify(keys["ec384"].token()), dict)
    assert isinstance(await v2.verify(keys["rsa"].token()), dict)


# --------------------------------------------------------------------------- refused


async def test_every_claim_rejection_has_its_reason(jwks_server: JwksServer, verifier_for: Any,
                                                    keys: dict[str, Signer]) -> None:
    v = await verifier_for(config(jwks_server.url, leeway=5))
    s = keys["rsa"]
    now = int(time.time())
    rejected(await v.verify(s.token(exp=now - 60)), "expired")
    assert isinstance(await v.verify(s.token(exp=now - 2)), dict)  # within the leeway
    rejected(await v.verify(s.token(nbf=now + 600)), "not_yet_valid")
    rejected(await v.verify(s.token(iat=now + 600)), "not_yet_valid")
    msg = rejected(await v.verify(s.token(aud="another-service")), "wrong_audience").message
    assert AUDIENCE in msg and "another-service" not in msg  # nothing quoted from the token
    assert isinstance(await v.verify(s.token(aud=["another-service", AUDIENCE])), dict)
    rejected(await v.verify(s.token(iss="https://evil.example.com/")), "wrong_issuer")
    for claim in ("exp", "iss", "aud"):
        msg = rejected(await v.verify(s.token(**{claim: None})), "missing_claim").message
        assert claim in msg


async def test_a_bad_signature_is_refused(jwks_server: JwksServer, verifier_for: Any,
                                          keys: dict[str, Signer]) -> None:
    v = await verifier_for(config(jwks_server.url))
    # Signed by another key under the published key's kid.
    impostor = replace(keys["rsa2"], kid=keys["rsa"].kid)
    rejected(await v.verify(impostor.token()), "bad_signature")
    # A real token whose payload was changed after signing.
    header, _, sig = keys["ec"].token().split(".")
    changed = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "team": "admin", "exp": int(time.time()) + 60}).encode())
    rejected(await v.verify(f"{header}.{changed}.{sig}"), "bad_signature")


async def test_alg_none_is_always_refused(jwks_server: JwksServer, verifier_for: Any,
                                          keys: dict[str, Signer]) -> None:
    v = await verifier_for(config(jwks_server.url))
    payload = {"iss": ISSUER, "aud": AUDIENCE, "team": "search", "exp": int(time.time()) + 60}
    for alg in ("none", "None", "NONE"):
        rejected(await v.verify(forged({"alg": alg, "kid": "rsa-1"}, payload)), "alg_not_allowed")
    # Even a verifier whose config (bypassing validation) lists it.
    v2 = await verifier_for(config(jwks_server.url, algorithms=("none", "RS256")))
    rejected(await v2.verify(forged({"alg": "none"}, payload)), "alg_not_allowed")


async def test_hs256_signed_with_the_public_key_is_refused(jwks_server: JwksServer, verifier_for: Any,
                                                           keys: dict[str, Signer]) -> None:
    # The classic key-confusion forgery: HMAC with the RSA public key (which
    # anyone can download) as the secret.
    pem = keys["rsa"].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    payload = {"iss": ISSUER, "aud": AUDIENCE, "team": "admin", "exp": int(time.time()) + 60}
    header = {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(sig)}"
    v = await verifier_for(config(jwks_server.url, algorithms=("HS256", "RS256")))  # validation would refuse
    rejected(await v.verify(token), "alg_not_allowed")


async def test_an_alg_outside_the_list_or_unfit_for_the_key_is_refused(jwks_server: JwksServer, verifier_for: Any,
                                                                       keys: dict[str, Signer]) -> None:
    v = await verifier_for(config(jwks_server.url, algorithms=("ES256",)))
    rejected(await v.verify(keys["rsa"].token()), "alg_not_allowed")
    v2 = await verifier_for(config(jwks_server.url, algorithms=("RS256", "PS256", "ES256")))
    # PS256 is allowed and the RSA key fits it: a real PS256 signature verifies...
    assert isinstance(await v2.verify(keys["rsa"].token(alg="PS256")), dict)
    # ...but an RSA key's kid does not check an ES256 signature.
    rejected(await v2.verify(keys["ec"].token(kid="rsa-1")), "unknown_kid")


async def test_malformed_and_oversized_tokens(jwks_server: JwksServer, verifier_for: Any) -> None:
    v = await verifier_for(config(jwks_server.url))
    for bad in ("", "abc", "a.b.c", "...", forged({"kid": "x"}, {})):
        rejected(await v.verify(bad), "malformed")
    rejected(await v.verify(forged({"alg": "RS256", "kid": 7}, {})), "malformed")
    rejected(await v.verify("a" * 20_000), "malformed")


# --------------------------------------------------------------------------- the JWKS


async def test_an_unknown_kid_refreshes_the_jwks_once_for_a_rotated_key(jwks_server: JwksServer,
                                                                        verifier_for: Any,
                                                                        keys: dict[str, Signer]) -> None:
    clock = Clock()
    v = await verifier_for(config(jwks_server.url, jwks_refresh_min=10), clock=clock)
    clock.now += 11
    rejected(await v.verify(keys["rsa2"].token()), "unknown_kid")
    assert jwks_server.hits == 2
    jwks_server.keys.append(keys["rsa2"].jwk)  # the issuer rotates
    rejected(await v.verify(keys["rsa2"].token()), "unknown_kid")  # too soon to fetch again
    assert jwks_server.hits == 2
    clock.now += 10
    assert isinstance(await v.verify(keys["rsa2"].token()), dict)
    assert jwks_server.hits == 3


async def test_a_flood_of_unknown_kids_fetches_at_most_once_per_interval(jwks_server: JwksServer,
                                                                         verifier_for: Any,
                                                                         keys: dict[str, Signer]) -> None:
    clock = Clock()
    v = await verifier_for(config(jwks_server.url, jwks_refresh_min=10), clock=clock)
    clock.now += 10
    jwks_server.delay = 30  # the first refresh hangs until released: the others share it
    tokens = [keys["rsa"].token(kid=f"made-up-{i}") for i in range(50)]
    pending = [asyncio.ensure_future(v.verify(t)) for t in tokens]
    while jwks_server.hits < 2:
        await asyncio.sleep(0.01)
    jwks_server.released.set()
    results = await asyncio.gather(*pending)
    assert all(isinstance(r, JwtRejected) and r.reason == "unknown_kid" for r in results)
    assert jwks_server.hits == 2
    for t in tokens:
        rejected(await v.verify(t), "unknown_kid")
    assert jwks_server.hits == 2


async def test_a_stale_jwks_is_refreshed_in_the_background(jwks_server: JwksServer, verifier_for: Any,
                                                           keys: dict[str, Signer]) -> None:
    clock = Clock()
    v = await verifier_for(config(jwks_server.url, jwks_refresh=300), clock=clock)
    clock.now += 301
    assert isinstance(await v.verify(keys["rsa"].token()), dict)  # served from the cache meanwhile
    async with asyncio.timeout(30):
        while jwks_server.hits < 2:
            await asyncio.sleep(0.01)


async def test_a_failing_jwks_server_keeps_the_keys_it_had(jwks_server: JwksServer, verifier_for: Any,
                                                           keys: dict[str, Signer],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    v = await verifier_for(config(jwks_server.url), clock=clock)
    jwks_server.status = 500
    with caplog.at_level(logging.WARNING, "llmproxy.auth"):
        for _ in range(3):
            clock.now += 11
            rejected(await v.verify(keys["rsa2"].token()), "unknown_kid")  # each one refreshes
    assert jwks_server.hits == 4
    assert isinstance(await v.verify(keys["rsa"].token()), dict)
    failures = [r for r in caplog.records if "cannot refresh" in r.getMessage()]
    assert len(failures) == 1 and "HTTP 500" in failures[0].getMessage()  # once per failure streak


async def test_the_jwks_download_is_bounded_in_size_and_time(jwks_server: JwksServer, upstream: Upstream,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    jwks_server.body = b'{"keys": [' + b" " * (jwt_module.MAX_JWKS_BYTES + 10) + b"]}"
    v = JwtVerifier(config(jwks_server.url), upstream=upstream)
    with caplog.at_level(logging.WARNING, "llmproxy.auth"):
        await v.start()  # an unreachable or broken URL is retried, not fatal
    assert f"the limit is {jwt_module.MAX_JWKS_BYTES}" in caplog.text or "larger than the limit" in caplog.text
    rejected(await v.verify(forged({"alg": "RS256", "kid": "k"}, {})), "jwks_unavailable")
    jwks_server.body = None
    jwks_server.delay = 30
    monkeypatch.setattr(jwt_module, "JWKS_TIMEOUT", 0.2)
    caplog.clear()
    v2 = JwtVerifier(config(jwks_server.url), upstream=upstream)
    with caplog.at_level(logging.WARNING, "llmproxy.auth"):
        await v2.start()
    assert "no complete answer within 0.2s" in caplog.text
    await v.close()
    await v2.close()


def test_parse_jwks_skips_what_must_not_sign(keys: dict[str, Signer], caplog: pytest.LogCaptureFixture) -> None:
    from jwt.algorithms import RSAAlgorithm

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = json.loads(RSAAlgorithm.to_jwk(keys["rsa"].private))  # with "d": a leaked private key
    doc = {"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {**keys["ec"].jwk, "use": "enc"},
        {**private, "kid": "priv"},
        _jwk(RSAAlgorithm, small.public_key(), "small"),
        "not a key",
        keys["ed"].jwk,
    ]}
    with caplog.at_level(logging.WARNING, "llmproxy.auth"):
        parsed = parse_jwks(json.dumps(doc).encode(), "test")
    assert list(parsed) == ["ed-1"]
    for why in ("kty 'oct'", "use is not sig", "a private key", "1024 bits", "not an object"):
        assert why in caplog.text
    with pytest.raises(JwksError, match="no usable signing key"):
        parse_jwks(json.dumps({"keys": [doc["keys"][0]]}).encode(), "test")
    with pytest.raises(JwksError, match="not JSON"):
        parse_jwks(b"<html>", "test")
    with pytest.raises(JwksError, match="not a JWKS"):
        parse_jwks(b"[]", "test")


async def test_a_missing_jwks_file_is_an_error_at_start(tmp_path: Path) -> None:
    v = JwtVerifier(JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_file="absent.json"), base_dir=tmp_path)
    with pytest.raises(JwksError, match="absent.json"):
        await v.start()


def test_caller_name_from_claims() -> None:
    claims = {"team": "search", "n": 5, "org": {"team": "infra"}, "empty": "", "long": "x" * 300}
    assert caller_name_from_claims(claims, "team") == "search"
    assert caller_name_from_claims(claims, "org.team") == "infra"
    for absent in ("n", "org", "empty", "long", "missing", "org.missing", "team.x"):
        assert caller_name_from_claims(claims, absent) is None


# --------------------------------------------------------------------------- config


BASE = """
providers:
  mock: {type: mock}
models:
  m: {deployments: [{provider: mock, model: echo}]}
auth:
  jwt:
"""


def problems(jwt_yaml: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + jwt_yaml, env={})
    return err.value.problems


def test_config_auth_jwt() -> None:
    ok = parse_config(BASE + "    {issuer: i, audience: a, jwks_url: 'https://idp/jwks'}", env={})
    assert ok.auth.jwt is not None and ok.auth.jwt.algorithms == ("RS256", "ES256", "EdDSA")
    assert ok.auth.jwt.key_claim == "sub" and ok.auth.jwt.leeway == 30
    assert parse_config(BASE.replace("auth:\n  jwt:\n", ""), env={}).auth.jwt is None
    assert any("needs jwks_file or jwks_url" in p for p in problems("    {issuer: i, audience: a}"))
    assert any(p.startswith("auth.jwt.issuer") and "required" in p
               for p in problems("    {audience: a, jwks_file: j.json}"))
    for alg in ("HS256", "none"):
        found = problems(f"    {{issuer: i, audience: a, jwks_file: j.json, algorithms: [RS256, {alg}]}}")
        assert any(p.startswith("auth.jwt.algorithms[1]") and "never accepted" in p for p in found), found
    found = problems("    {issuer: i, audience: a, jwks_file: j.json, algorithms: [RS257]}")
    assert any("not a supported JWS algorithm" in p for p in found)
    assert any("http://" in p for p in problems("    {issuer: i, audience: a, jwks_url: 'ftp://x/jwks'}"))


def test_config_auth_jwt_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "jwt", None)
    found = problems("    {issuer: i, audience: a, jwks_file: j.json}")
    assert any("pip install 'llmproxy[jwt]'" in p for p in found)


def test_jwks_url_credentials_are_secrets() -> None:
    from llmproxy.observe.redact import config_secrets

    cfg = parse_config(BASE + "    {issuer: i, audience: a, jwks_url: 'https://u:jwks-pw-1@idp/jwks'}", env={})
    assert "jwks-pw-1" in config_secrets(cfg)


async def test_an_unreachable_jwks_url_is_a_warning_and_jwks_unavailable(upstream: Upstream,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    v = JwtVerifier(config(f"http://user:jwks-pw@127.0.0.1:{port}/jwks"), upstream=upstream)
    with caplog.at_level(logging.WARNING, "llmproxy.auth"):
        await v.start()
    assert "cannot connect" in caplog.text and "jwks-pw" not in caplog.text
    rejected(await v.verify(forged({"alg": "RS256", "kid": "k"}, {})), "jwks_unavailable")
    await v.close()

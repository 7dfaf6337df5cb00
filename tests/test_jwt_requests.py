"""auth.jwt wired to requests: JWT callers through the real proxy, with the
openai and anthropic SDKs, real RSA / EC / Ed25519 keys made in the test
(tests/test_jwt.py's signers) and a JWKS file; every refusal is checked
for its status, code and reason."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from cryptography.hazmat.primitives import serialization

from .fakes import FakeUpstream
from .test_jwt import AUDIENCE, ISSUER, Signer, b64, forged, keys  # noqa: F401 (keys: the fixture)

PLAIN_KEY = "sk-plain-key-0123456789abcdef"


@pytest.fixture
async def jwt_proxy(start_proxy: Any, fake_upstream: Any, keys: dict[str, Signer],  # noqa: F811
                    tmp_path: Path) -> tuple[Any, FakeUpstream]:
    fake = await fake_upstream()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [keys["rsa"].jwk, keys["ec"].jwk, keys["ed"].jwk]}))
    proxy = await start_proxy(f"""
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: sk-upstream-secret}}
    models:
      m: {{deployments: [{{provider: up, model: gpt-4o, price: {{input_per_mtok: 1000000, output_per_mtok: 0}}}}]}}
      other: {{deployments: [{{provider: up, model: gpt-4o}}]}}
    auth:
      jwt:
        issuer: "{ISSUER}"
        audience: {AUDIENCE}
        jwks_file: {jwks}
        key_claim: team
    keys:
      - name: search      # no key material: a policy for JWT callers only
        models: [m]
        rpm: 3
      - name: plain
        key: {PLAIN_KEY}
    state: {{path: null}}
    """)
    return proxy, fake


def client(proxy: Any, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.v1, api_key=token, max_retries=0)


async def ask(proxy: Any, token: str, model: str = "m") -> Any:
    c = client(proxy, token)
    try:
        return await c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    finally:
        await c.close()


async def refused(proxy: Any, token: str, status: int = 401) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as err:
        await ask(proxy, token)
    assert err.value.status_code == status, err.value.message
    return err.value


async def test_rsa_ec_and_ed25519_tokens_are_callers_under_their_keys_policy(
        jwt_proxy: Any, keys: dict[str, Signer]) -> None:  # noqa: F811
    proxy, fake = jwt_proxy
    for name in ("rsa", "ec", "ed"):
        answer = await ask(proxy, keys[name].token())
        assert answer.choices[0].message.content
    # The policy of the entry the claim names: its rpm (3) is spent, its models apply.
    err = await refused(proxy, keys["rsa"].token(), 429)
    assert err.body["code"] == "rate_limit_exceeded" and "'search'" in err.message  # type: ignore[index]
    with pytest.raises(openai.PermissionDeniedError) as denied:
        await ask(proxy, keys["ec"].token(), model="other")
    assert denied.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    assert len(fake.seen) == 3
    # Spend and requests are the entry's: /admin/keys shows them under its name.
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/admin/keys") as r:
        (search,) = [k for k in (await r.json())["keys"] if k["name"] == "search"]
    assert search["requests"] == 3 and search["spend"]["lifetime"]["usd"] == 15.0  # 3 × 5 prompt tokens × $1


async def test_keys_still_work_beside_jwts(jwt_proxy: Any) -> None:
    proxy, _ = jwt_proxy
    assert (await ask(proxy, PLAIN_KEY)).choices
    err = await refused(proxy, "sk-not-a-key-of-this-proxy")
    assert err.body["code"] == "invalid_api_key"  # type: ignore[index]


@pytest.mark.parametrize(("case", "reason"), [
    ("expired", "expired"),
    ("not_yet_valid", "not_yet_valid"),
    ("wrong_audience", "wrong_audience"),
    ("wrong_issuer", "wrong_issuer"),
    ("bad_signature", "bad_signature"),
    ("unknown_kid", "unknown_kid"),
    ("no_exp", "missing_claim"),
    ("alg_none", "alg_not_allowed"),
    ("hs256_with_the_public_key", "alg_not_allowed"),
    ("garbage", "malformed"),
])
async def test_every_rejected_token_is_401_with_its_reason(
        jwt_proxy: Any, keys: dict[str, Signer], case: str, reason: str) -> None:  # noqa: F811
    proxy, fake = jwt_proxy
    rsa, now = keys["rsa"], int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "team": "search", "exp": now + 60}
    tokens = {
        "expired": lambda: rsa.token(exp=now - 120, iat=now - 600),
        "not_yet_valid": lambda: rsa.token(nbf=now + 600),
        "wrong_audience": lambda: rsa.token(aud="someone-else"),
        "wrong_issuer": lambda: rsa.token(iss="https://evil.example.com/"),
        # Signed with another RSA key under rsa-1's kid.
        "bad_signature": lambda: keys["rsa2"].token(kid="rsa-1"),
        "unknown_kid": lambda: keys["rsa2"].token(),
        "no_exp": lambda: rsa.token(exp=None),
        "alg_none": lambda: forged({"alg": "none", "typ": "JWT"}, payload),
        "hs256_with_the_public_key": lambda: _hs256_forgery(rsa, payload),
        "garbage": lambda: "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl",
    }
    token = tokens[case]()
    err = await refused(proxy, token)
    assert isinstance(err, openai.AuthenticationError)
    assert err.body["code"] == "invalid_token" and err.body["type"] == "authentication_error"  # type: ignore[index]
    assert f"JWT rejected ({reason})" in err.message
    assert token not in err.message
    assert not fake.seen


def _hs256_forgery(signer: Signer, payload: dict[str, Any]) -> str:
    # HMAC with the RSA public key (which anyone can download) as the secret.
    pem = signer.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "kid": signer.kid, "typ": "JWT"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"


async def test_a_verified_token_naming_no_key_entry_is_403(jwt_proxy: Any, keys: dict[str, Signer]) -> None:  # noqa: F811
    proxy, fake = jwt_proxy
    err = await refused(proxy, keys["ec"].token(team="nobody"), 403)
    assert isinstance(err, openai.PermissionDeniedError)
    assert err.body["code"] == "unknown_caller" and "names no keys: entry" in err.message  # type: ignore[index]
    err = await refused(proxy, keys["ec"].token(team=None), 403)
    assert err.body["code"] == "unknown_caller" and "'team'" in err.message  # type: ignore[index]
    # A server.api_keys-style name is never selectable, nor a non-string claim.
    err = await refused(proxy, keys["ec"].token(team=["search"]), 403)
    assert err.body["code"] == "unknown_caller"  # type: ignore[index]
    assert not fake.seen


async def test_rejections_on_v1_messages_are_in_anthropics_shape(jwt_proxy: Any, keys: dict[str, Signer]) -> None:  # noqa: F811
    proxy, _ = jwt_proxy
    claude = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=keys["ed"].token(exp=int(time.time()) - 300),
                                      max_retries=0)
    try:
        with pytest.raises(anthropic.AuthenticationError) as err:
            await claude.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        body = err.value.body
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"  # type: ignore[index]
        assert "JWT rejected (expired)" in body["error"]["message"]  # type: ignore[index]
        # A valid token (sent as x-api-key by the Anthropic SDK) is a caller there too.
        ok = anthropic.AsyncAnthropic(base_url=proxy.url, api_key=keys["ed"].token(), max_retries=0)
        try:
            answer = await ok.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
            assert answer.content
        finally:
            await ok.close()
    finally:
        await claude.close()


async def test_without_auth_jwt_a_jwt_is_just_an_unknown_key(start_proxy: Any, fake_upstream: Any,
                                                             keys: dict[str, Signer]) -> None:  # noqa: F811
    fake = await fake_upstream()
    proxy = await start_proxy(f"""
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: sk-upstream-secret}}
    models:
      m: {{deployments: [{{provider: up, model: gpt-4o}}]}}
    keys:
      - name: plain
        key: {PLAIN_KEY}
    state: {{path: null}}
    """)
    err = await refused(proxy, keys["rsa"].token())
    assert err.body["code"] == "invalid_api_key"  # type: ignore[index]


async def test_a_jwks_file_missing_at_start_refuses_jwts_until_it_appears(
        start_proxy: Any, fake_upstream: Any, keys: dict[str, Signer], tmp_path: Path) -> None:  # noqa: F811
    fake = await fake_upstream()
    jwks = tmp_path / "later" / "jwks.json"
    proxy = await start_proxy(f"""
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: sk-upstream-secret}}
    models:
      m: {{deployments: [{{provider: up, model: gpt-4o}}]}}
    auth:
      jwt: {{issuer: "{ISSUER}", audience: {AUDIENCE}, jwks_file: {jwks}, key_claim: team, jwks_refresh_min: 0}}
    keys:
      - name: search
      - name: plain
        key: {PLAIN_KEY}
    state: {{path: null}}
    """)
    err = await refused(proxy, keys["rsa"].token())
    assert "JWT rejected (jwks_unavailable)" in err.message
    assert (await ask(proxy, PLAIN_KEY)).choices  # keys are not affected
    jwks.parent.mkdir()
    jwks.write_text(json.dumps({"keys": [keys["rsa"].jwk]}))
    assert (await ask(proxy, keys["rsa"].token())).choices  # read again for the token's kid

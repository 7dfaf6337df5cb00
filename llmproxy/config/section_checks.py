"""Cross-field checks of single sections, kept beside the generic walker
(``config.validate``) the way ``keys_validate`` keeps the keys' own: each a
function of the ``Validator`` whose problems it reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .schema import one_of, show
from .tree import JWT_ALGORITHMS, JwtConfig, ModelCache

if TYPE_CHECKING:
    from .validate import Validator


def check_jwt(v: Validator, jwt: JwtConfig | None) -> None:
    """auth.jwt: a key source, public-key algorithms only, the extra installed."""
    if jwt is None:
        return
    if not jwt.jwks_file and not jwt.jwks_url:
        v.fail("auth.jwt", "needs jwks_file or jwks_url (where the issuer's public keys are)")
    for i, alg in enumerate(jwt.algorithms):
        if alg not in JWT_ALGORITHMS:
            never = alg.lower() == "none" or alg.upper().startswith("HS")
            why = ("is never accepted (no signature, or a shared secret that a public JWKS key "
                   "would let anyone forge)") if never else "is not a supported JWS algorithm"
            v.fail(f"auth.jwt.algorithms[{i}]", f"{show(alg)} {why}; use {one_of(JWT_ALGORITHMS)}")
    if not jwt.algorithms:
        v.fail("auth.jwt.algorithms", "must name at least one algorithm")
    try:
        import cryptography  # noqa: F401
        import jwt as _pyjwt  # noqa: F401
    except ImportError:
        v.fail("auth.jwt", "needs the jwt extra: pip install 'llmproxy[jwt]'")


def model_cache(v: Validator, node: Any, path: str) -> ModelCache:
    """``models.<name>.cache``: ``false`` (off), ``true`` / absent (as ``cache:``), or ``{ttl: seconds}``."""
    if node is None:
        return ModelCache()
    if isinstance(node, bool) or isinstance(node, str) and node.lower() in ("true", "false"):
        return ModelCache(enabled=v.boolean(node, path, True))
    if not isinstance(node, dict):
        v.fail(path, f"must be false or a mapping such as {{ttl: 3600}}, got {v.shown(node, path)}")
        return ModelCache()
    m = v.mapping(node, path, {"ttl"})
    if "ttl" not in m or m["ttl"] is None:
        return ModelCache()
    return ModelCache(ttl=v.number(m["ttl"], f"{path}.ttl", 600.0, positive=True, integer=False))


def aws_defaults(v: Validator, options: dict[str, Any], base_url: str, path: str) -> tuple[dict[str, Any], str]:
    """Bedrock: region and credentials from the standard AWS variables when not set.

    Credentials are taken as a set, all from the YAML or all from the
    environment, never mixed. None at all is allowed here (``api_key`` may
    hold a Bedrock API key, and ``check`` runs without secrets); the
    request path then answers with a message naming what is missing.
    """
    env, out = v.env, dict(options)
    region = out.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        v.fail(f"{path}.region", "is required for type bedrock (or set AWS_REGION)")
    else:
        out["region"] = region
    keys = ("aws_access_key_id", "aws_secret_access_key")
    if not any(k in out for k in keys) and "aws_session_token" not in out:
        for key, var in (*zip(keys, ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
                         ("aws_session_token", "AWS_SESSION_TOKEN")):
            if env.get(var):
                out[key] = env[var]
    if ("aws_access_key_id" in out) != ("aws_secret_access_key" in out):
        v.fail(path, "set both aws_access_key_id and aws_secret_access_key, or neither")
    return out, base_url.replace("{region}", region or "")

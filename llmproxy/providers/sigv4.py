"""AWS Signature Version 4 for request headers, as a pure function.

Follows the SigV4 spec ("Create a signed AWS API request") the way botocore's
``SigV4Auth`` applies it to non-S3 services, and is tested against it
byte for byte (tests/test_sigv4.py):

- the canonical URI is the path *as sent on the wire* (already
  percent-encoded), dot segments and empty segments removed, then
  percent-encoded once more with ``/`` and ``~`` kept. So a Bedrock model id
  ``a:0`` travels as ``a%3A0`` and is signed as ``a%253A0``;
- the canonical query string sorts the wire ``key=value`` pairs as they are;
- every header the caller passes is signed except the hop-by-hop and tracing
  ones botocore leaves out (``user-agent`` among them), plus ``host`` and
  ``x-amz-date`` (and ``x-amz-security-token`` with temporary credentials);
- the payload hash is the SHA-256 of the body.

Invariant: the headers returned here, merged over the caller's, are exactly
what must go on the wire; ``Host`` is returned explicitly so the HTTP client
cannot send a different one from the one signed. No clock is read: ``now``
is an argument (``upstream/client.py`` passes the real time just before sending).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"

# Headers botocore never signs (botocore.auth.SIGNED_HEADERS_BLACKLIST):
# proxies and HTTP clients may add or rewrite them in flight.
UNSIGNED_HEADERS = frozenset(
    {
        "authorization", "baggage", "connection", "expect", "keep-alive",
        "proxy-authenticate", "proxy-authorization", "te", "traceparent",
        "tracestate", "trailer", "transfer-encoding", "upgrade", "user-agent",
        "x-amzn-trace-id",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class AwsSigning:
    """What an ``UpstreamRequest`` needs to be SigV4-signed when it is sent."""

    region: str
    service: str
    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    def sign(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> dict[str, str]:
        return sign(
            method, url, headers, body,
            access_key=self.access_key, secret_key=self.secret_key,
            session_token=self.session_token, region=self.region,
            service=self.service, now=now,
        )


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to add to (or replace in) ``headers`` to sign the request.

    ``url`` must be the exact, already percent-encoded URL that is sent.
    Returns ``Host``, ``X-Amz-Date``, ``X-Amz-Security-Token`` (if a session
    token is given) and ``Authorization``.
    """
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    parts = urlsplit(url)

    added: dict[str, str] = {"Host": _host(url), "X-Amz-Date": amz_date}
    if session_token:
        added["X-Amz-Security-Token"] = session_token

    # Lower-cased name → values; a repeated name is signed as "a,b" (SigV4).
    # Header names the caller already set case-insensitively are replaced
    # by ours, like botocore replaces a stale X-Amz-Date on a retry.
    ours = {k.lower() for k in added}
    to_sign: dict[str, list[str]] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname in UNSIGNED_HEADERS or lname in ours:
            continue
        to_sign.setdefault(lname, []).append(value)
    for name, value in added.items():
        to_sign[name.lower()] = [value]
    names = sorted(to_sign)
    canonical_headers = "".join(
        f"{n}:{','.join(' '.join(v.split()) for v in to_sign[n])}\n" for n in names
    )
    signed_headers = ";".join(names)

    canonical_request = "\n".join(
        (
            method.upper(),
            canonical_uri(parts.path),
            canonical_query(parts.query),
            canonical_headers,
            signed_headers,
            hashlib.sha256(body).hexdigest(),
        )
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        (ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
    )
    key = _hmac(f"AWS4{secret_key}".encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return added


def canonical_uri(path: str) -> str:
    """Dot segments and empty segments removed, then encoded once more."""
    if not path:
        return "/"
    segments: list[str] = []
    for seg in path.split("/"):
        if not seg or seg == ".":
            continue
        if seg == "..":
            if segments:
                segments.pop()
        else:
            segments.append(seg)
    normalized = "/" + "/".join(segments)
    if path.endswith("/") and segments:
        normalized += "/"
    return quote(normalized, safe="/~")


def canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        pairs.append((key, value))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()

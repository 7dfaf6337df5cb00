"""The proxy's error hierarchy, rendered as OpenAI error bodies.

    ProxyError                      status, type, code, param → {"error": {...}}
    ├── InvalidRequest              400 invalid_request_error
    ├── AuthenticationFailed        401
    ├── Forbidden                   403 (Origin / Host refused at the door)
    ├── ModelNotAllowed             403 model_not_allowed (the key's models:)
    ├── ModelNotFound               404
    ├── RequestTimeout              408 (the client's body stalled)
    ├── PayloadTooLarge             413
    ├── NoCapacity                  429 (every deployment busy / limited)
    ├── KeyRateLimited              429 rate_limit_exceeded (the key's rpm / tpm / max_parallel)
    ├── QuotaExceeded               429 insufficient_quota (the key's budget is spent)
    ├── ServiceUnavailable          503 (draining, no usable deployment)
    └── UpstreamError               what went wrong talking to a provider
        ├── UpstreamStatusError     the provider answered with an error status
        ├── UpstreamUnreachable     502: connect refused, reset, DNS, TLS
        ├── UpstreamProtocolError   502: garbage body, stream cut short
        │   └── UpstreamTooLarge    502: an answer or one stream event past its size limit
        └── UpstreamTimeout         504: connect / first byte / idle / total

Upstream errors carry ``retryable`` so the router can decide to try another
deployment; messages never contain credentials (callers pass provider-side
messages through ``redact`` in logging, and URLs here never carry keys).
"""

from __future__ import annotations

from typing import Any

import orjson


class ProxyError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


class InvalidRequest(ProxyError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(ProxyError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class TokenRejected(AuthenticationFailed):
    """A JWT bearer token (``auth.jwt``) that does not verify; the message says why."""

    code = "invalid_token"


class Forbidden(ProxyError):
    status = 403
    type = "permission_error"


class CallerUnknown(Forbidden):
    """A verified JWT whose ``key_claim`` names no ``keys:`` entry: authenticated, with no policy here."""

    code = "unknown_caller"


class RequestTimeout(ProxyError):
    """The client stopped sending its body; the connection closes after the answer."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class ModelNotFound(ProxyError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(ProxyError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class NoCapacity(ProxyError):
    status = 429
    type = "rate_limit_error"
    code = "no_capacity"


class ModelNotAllowed(ProxyError):
    """The caller's key may not use the model it asked for (``keys[].models``)."""

    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class KeyRateLimited(ProxyError):
    """The caller's own rpm / tpm / max_parallel, not a deployment's."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class QuotaExceeded(ProxyError):
    """The caller's budget for this period is spent (OpenAI's own code for it)."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class ServiceUnavailable(ProxyError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class UpstreamError(ProxyError):
    status = 502
    type = "upstream_error"
    retryable = True


class UpstreamStatusError(UpstreamError):
    """The provider answered with a 4xx/5xx; its status passes through."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            message,
            status=status,
            type=type or _type_for_status(status),
            code=code,
            param=param,
        )
        self.retry_after = retry_after
        # 408/409/429 and 5xx are worth another deployment; other 4xx are the
        # client's fault and would fail the same way everywhere.
        self.retryable = status in (408, 409, 429) or status >= 500


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"


class UpstreamProtocolError(UpstreamError):
    code = "upstream_bad_response"


class UpstreamTooLarge(UpstreamProtocolError):
    """An upstream answer (``upstream_response_too_large``) or one stream
    event (``upstream_event_too_large``) exceeded its configured limit.
    Raised by the pure decoders too: this module imports no I/O."""

    code = "upstream_response_too_large"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


def _type_for_status(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "upstream_error"
    return "invalid_request_error"

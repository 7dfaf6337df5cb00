"""``type: qianfan``: Baidu Qianfan's v2 API (ERNIE models), OpenAI-compatible.

``https://qianfan.baidubce.com/v2/chat/completions`` and ``/v2/embeddings``
take the OpenAI body as it is, with the console API key (``bce-v3/ALTAK-...``)
as ``Authorization: Bearer`` and, optionally, the v2 application id in an
``appid`` header (as the Qianfan Java and JS SDKs send it). Everything else is
the OpenAI adapter.

One difference is handled: an error reported in a 200 body
(``{"error": {"code": ..., "message": ...}}``, the shape the qianfan SDK
checks for) becomes an upstream error instead of a missing-``choices``
protocol error, a rate limit (429) when its code is one of the SDK's
rate-limit codes (so another deployment is tried) and a 502 otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..config.schema import key
from ..config.tree import DeploymentConfig, ProviderOptions
from ..errors import UpstreamStatusError
from .base import CallContext, ProviderSpec, UpstreamRequest
from .openai import OpenAIAdapter

# qianfan SDK APIErrorCode: QPS / RPM / TPM limits, "server high load".
RATE_LIMIT_CODES = frozenset({"18", "336501", "336502", "336100", "rpm_rate_limit_exceeded",
                              "tpm_rate_limit_exceeded", "qps_rate_limit_exceeded"})


class QianfanAdapter(OpenAIAdapter):
    def chat_request(self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool) -> UpstreamRequest:
        return _with_appid(dep, super().chat_request(dep, body, stream=stream))

    def embeddings_request(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> UpstreamRequest:
        return _with_appid(dep, super().embeddings_request(dep, body))

    def chat_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        _raise_body_error(data)
        return super().chat_response(dep, data, ctx)

    def embeddings_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        _raise_body_error(data)
        return super().embeddings_response(dep, data, ctx)


@dataclass(frozen=True, slots=True)
class QianfanOptions(ProviderOptions):
    appid: str | None = key(None, kind="str", nonempty=True, help="sent as the appid header")


def _with_appid(dep: DeploymentConfig, req: UpstreamRequest) -> UpstreamRequest:
    o = dep.provider.options
    appid = o.appid if isinstance(o, QianfanOptions) else None
    if not appid or "appid" in {k.lower() for k in req.headers}:
        return req
    return UpstreamRequest(url=req.url, headers={**req.headers, "appid": str(appid)}, body=req.body,
                           method=req.method)


def _raise_body_error(data: bytes) -> None:
    if b'"error"' not in data:
        return
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return  # the OpenAI adapter reports it
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict) or "choices" in doc:
        return
    code = str(err.get("code")) if err.get("code") is not None else None
    status = 429 if code in RATE_LIMIT_CODES else 502
    raise UpstreamStatusError(str(err.get("message") or "Qianfan reported an error"),
                              status=status, code=code)


SPEC = ProviderSpec("qianfan", QianfanAdapter(), QianfanOptions, "https://qianfan.baidubce.com/v2")

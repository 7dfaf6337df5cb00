"""One health probe of one deployment, through the outbound seam.

``probe()`` sends the provider spec's models-list GET (``kind: models``, no
tokens) or a one-token chat completion (``kind: chat``) with the probe's own
timeout for every phase, reads the answer (bounded like any answer) and
says whether the deployment answered as it should. It never raises for an
upstream failure: the verdict is the result. The scheduling (interval, one
probe at a time, the breaker) is ``server/health_checks.py``'s.
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

from ..config.tree import DeploymentConfig, Timeouts
from ..errors import ProxyError
from ..providers import adapter_for
from ..providers.base import CallContext, UpstreamRequest
from ..providers.registry import spec_for
from .client import Upstream

# What a chat probe asks: the smallest answer every chat API accepts.
PING = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
MAX_ERROR = 300


class ProbeResult(NamedTuple):
    ok: bool
    latency: float  # seconds from sending to the whole answer (or the failure)
    error: str | None  # why it failed (the provider's message, unredacted: callers redact)
    status: int | None  # the HTTP status, when one came


def probe_request(dep: DeploymentConfig, kind: str) -> UpstreamRequest:
    if kind == "models":
        make = spec_for(dep.provider.type).models_request
        if make is not None:
            return make(dep)
    return adapter_for(dep.provider.type).chat_request(dep, {"model": dep.model, **PING}, stream=False)


async def probe(upstream: Upstream, dep: DeploymentConfig, kind: str, timeout: float) -> ProbeResult:
    # The probe's timeout bounds every phase: a deployment that takes longer
    # to answer "what models do you have" is not healthy whatever its
    # first_byte allowance for a long completion is.
    limit = Timeouts(connect=timeout, first_byte=timeout, idle=timeout, total=timeout)
    bounded = dataclasses.replace(dep, timeouts=limit)
    started = time.perf_counter()
    status: int | None = None
    try:
        req = probe_request(bounded, kind)
        resp = await upstream.open(bounded, req)
        try:
            status = resp.status
            data = await resp.read()
        finally:
            resp.close()
        if not 200 <= status < 300:
            exc = adapter_for(dep.provider.type).error_from_response(status, resp.headers, data)
            return ProbeResult(False, time.perf_counter() - started, exc.message[:MAX_ERROR], status)
        if kind == "chat":  # a 200 must be a chat answer, not a gateway's HTML page
            ctx = CallContext(dep.model, "health-probe", int(time.time()))
            adapter_for(dep.provider.type).chat_response(bounded, data, ctx)
    except ProxyError as exc:  # unreachable, timed out, garbage: mapped once by the seam
        return ProbeResult(False, time.perf_counter() - started, exc.message[:MAX_ERROR], status)
    return ProbeResult(True, time.perf_counter() - started, None, status)

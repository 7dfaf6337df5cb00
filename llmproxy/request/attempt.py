"""One client request's forwarding (``Call``) and one deployment's try (``Attempt``).

An attempt's outcome has three listeners: the lease (breaker, latency,
rate-limit correction, cool-down), the plan (the error the client gets if
the walk gives up) and the observation (metrics, span). ``Attempt`` is the
one ledger that tells all three, so a verdict is one call:
``succeeded(latency, usage)`` or ``failed(exc)``. Invariants:
- ``Call.next_attempt()`` hands out an attempt only once its observation has
  begun, and the caller releases it in ``finally`` (``Attempt.release``:
  the upstream response closed, then the lease), whatever way the try ends;
- an error's message is masked before any listener stores it;
- the observation's retry and fallback counts are the plan's
  (``Plan.retries`` / ``Plan.fallbacks``), read as each attempt begins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ProxyError, UpstreamError
from ..keys.service import Ticket
from ..observe.observation import Observation
from ..observe.redact import Redactor
from ..providers.base import CallContext, UpstreamRequest
from ..providers.registry import spec_for
from ..router.plan import Lease, Plan
from ..upstream import RemoteImages, Upstream, UpstreamResponse
from .drop import DROPPED_HEADER, build_dropping
from .ingress import CHAT, Ingress

if TYPE_CHECKING:
    from .cached import CacheTicket, Capture
    from ..providers.base import Adapter

log = logging.getLogger("llmproxy.drop")

DEPLOYMENT_HEADER = "x-llmproxy-deployment"


@dataclass(slots=True, eq=False)
class Call:
    """What travels with one client request through every attempt."""

    upstream: Upstream
    plan: Plan
    body: Mapping[str, Any]
    ctx: CallContext
    obs: Observation
    redactor: Redactor | None = None
    # The caller's key account (keys:): told of the answer's usage; None without keys.
    ticket: Ticket | None = None
    # The client's format: what to send and how the answer reads (chat: as the adapters speak).
    ingress: Ingress = CHAT
    # The response cache's ticket (None: the cache is off); ``capture`` holds
    # a stream's pieces while one is being answered for the cache.
    cache: CacheTicket | None = None
    capture: Capture | None = None
    # Created on the first adapter that wants image URLs inlined; kept so a
    # retry on another deployment reuses what was fetched.
    _images: RemoteImages | None = field(default=None, init=False, repr=False)

    async def next_attempt(self) -> Attempt | None:
        """The plan's next lease as an attempt, or None when the walk is over."""
        plan = self.plan
        lease = await plan.next()
        if lease is None:
            return None
        try:
            self.obs.attempt(lease.member.config, plan.group.name, retries=plan.retries, fallbacks=plan.fallbacks)
        except BaseException:
            lease.release()
            raise
        return Attempt(self, lease)

    async def body_for(self, attempt: Attempt) -> Mapping[str, Any]:
        """The request body, image URLs inlined when the attempt's provider takes only inline images."""
        if spec_for(attempt.dep.provider.type).image_urls_to_fetch is None:
            return self.body  # most providers take URLs as they are: nothing to allocate
        images = self._images
        if images is None:
            images = self._images = RemoteImages(self.upstream.images)
        return await images.inline(attempt.dep, self.body)

    async def chat_request(self, attempt: Attempt, adapter: Adapter, *, stream: bool) -> UpstreamRequest:
        """The adapter's chat request for this attempt (what every ingress sends)."""
        dep = attempt.dep
        body = await self.body_for(attempt)
        return self.build(attempt, lambda b: adapter.chat_request(dep, b, stream=stream), body)

    def build(self, attempt: Attempt, build: Callable[[Mapping[str, Any]], UpstreamRequest],
              body: Mapping[str, Any]) -> UpstreamRequest:
        """``build(body)``; with ``unsupported_params: drop``, without the fields it refuses (reported)."""
        dep = attempt.dep
        if dep.unsupported_params != "drop":
            return build(body)
        req, dropped = build_dropping(build, body)
        attempt.dropped = dropped
        if dropped:
            log.debug("dropped %s from the request to %s (unsupported_params: drop)", ",".join(dropped), dep.id)
            self.obs.dropped(dep, dropped)
        return req

    def mask(self, exc: ProxyError) -> None:
        """Mask credentials in an error's message where it is caught, before
        anything stores, logs or relays it."""
        if self.redactor is not None:
            exc.message = self.redactor.redact(exc.message)

    def gave_up(self) -> ProxyError:
        """The walk ended without an answer: what the client gets."""
        for dep_id, kind in self.plan.limits_hit():
            self.obs.rate_limited(dep_id, kind)
        return self.plan.error()


class Attempt:
    """One deployment's try: owns its lease, its observation and its upstream response."""

    __slots__ = ("call", "lease", "dep", "resp", "dropped")

    def __init__(self, call: Call, lease: Lease) -> None:
        self.call = call
        self.lease = lease
        self.dep = lease.member.config
        self.resp: UpstreamResponse | None = None
        self.dropped: tuple[str, ...] = ()  # request fields left out (unsupported_params: drop)

    def headers(self) -> dict[str, str]:
        """The proxy's headers on the answer this attempt gives the client."""
        if self.dropped:
            return {DEPLOYMENT_HEADER: self.dep.id, DROPPED_HEADER: ",".join(self.dropped)}
        return {DEPLOYMENT_HEADER: self.dep.id}

    async def open(self, req: UpstreamRequest) -> UpstreamResponse:
        """Send ``req`` (carrying this attempt's trace context); closed by ``release``."""
        call = self.call
        resp = self.resp = await call.upstream.open(self.dep, call.obs.traced(req))
        return resp

    def succeeded(self, latency: float, usage: dict[str, Any] | None) -> None:
        self.lease.success(latency, usage)
        call = self.call
        call.obs.attempt_succeeded(usage)
        if call.ticket is not None:
            call.ticket.answered(self.dep, usage)

    def failed(self, exc: ProxyError) -> None:
        """Masks ``exc``; an upstream's failure also goes to the lease, the observation and the plan."""
        call = self.call
        call.mask(exc)
        if isinstance(exc, UpstreamError):
            self.lease.failure(exc)
            call.obs.attempt_failed(exc)
            call.plan.failed(exc)

    def close_response(self) -> None:
        """Close the upstream response now (dropping its connection if unread)."""
        resp, self.resp = self.resp, None
        if resp is not None:
            resp.close()

    def release(self) -> None:
        """Once, in ``finally``: the response closed, every slot of the lease returned."""
        try:
            self.close_response()
        finally:
            self.lease.release()

"""Who is calling, what they may do, what they spent: the request path of ``keys:``.

One ``KeyService`` per proxy (``Proxy.keys``) outlives reloads: its
counters and ledger are keyed by key name. A request meets it twice:

- ``authenticate`` (error middleware, every route not listed as open):
  the presented key's sha256 looked up in the live ``KeyTable``; a miss is
  401 ``invalid_api_key``;
- ``admit`` (``handlers.common.resolve_model``, which every model route
  passes): the model check (403 ``model_not_allowed``), the budget (429
  ``insufficient_quota``), then rpm / tpm / max_parallel in one counters
  call (429 ``rate_limit_exceeded`` with Retry-After). It returns the
  request's ``Ticket``; the error middleware finishes it in ``finally``,
  whatever way the request ended, which frees its slot and settles spend.

Spend is settled from the usage the answer reported (``Ticket.answered``,
from ``Attempt.succeeded`` and a stream cut after its first byte); an
answer whose usage never came is charged from the estimate
(``router.estimate``) and counted in ``llmproxy_key_usage_estimated_total``;
a request no upstream answered costs nothing, and ``Ticket.free()`` says
so explicitly (count_tokens; a cache hit will).

Fallbacks: ``models`` limits what a client may ask for; the fallbacks the
operator configured for an allowed model are routing, and are followed even
to a model the key may not name itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from ..config.tree import DeploymentConfig
from ..errors import (
    AuthenticationFailed,
    KeyRateLimited,
    ModelNotAllowed,
    QuotaExceeded,
)
from ..router.estimate import completion_tokens, prompt_tokens
from ..state.counters import SharedCounters
from ..state.sqlite import SpendStore
from .caller import Caller
from .counters import KeyCounters, LocalCounters, Refusal
from .ledger import LocalLedger, SpendLedger
from .policy import KeyPolicy
from .shared import SharedKeys
from .table import NO_KEYS, KeyTable

BUDGET_RESET_HEADER = "x-llmproxy-budget-reset"
# (name, requests, lifetime USD, remaining budget USD or None, answers charged from the estimate)
KeySample = tuple[str, int, float, float | None, int]


def presented_key(headers: Mapping[str, str]) -> str:
    """The client's key: ``Authorization: Bearer``, else ``api-key`` (Azure's
    SDK) or ``x-api-key`` (Anthropic's)."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("api-key") or headers.get("x-api-key") or ""


def lookup(table: KeyTable, token: str) -> Caller | None:
    """The caller holding ``token``, found by its sha256. Only the hash is
    ever compared: the timing of the lookup depends on the digest, which
    tells an attacker nothing about any key (the reason to compare hashes,
    not plaintext, in the first place)."""
    if not token:
        return None
    return table.by_hash.get(hashlib.sha256(token.encode()).hexdigest())


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class KeyService:
    def __init__(self, clock: Callable[[], float], wall: Callable[[], float] = time.time,
                 counters: KeyCounters | None = None, ledger: SpendLedger | None = None,
                 workers: int = 1) -> None:
        # The seams: a shared implementation (Redis, ``share``) replaces the
        # counters and the ledger; the local ones stay its fallback, and the
        # local ledger still owns the embedded store.
        self.local_counters = LocalCounters(clock, workers)
        self.counters: KeyCounters = counters if counters is not None else self.local_counters
        self.local = LocalLedger(wall, shared_file=workers > 1)
        self.ledger: SpendLedger = ledger if ledger is not None else self.local
        self.shared: SharedKeys | None = None
        self.wall = wall
        self._table: KeyTable = NO_KEYS
        self._store_path: Path | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._opening = False
        self._background: set[asyncio.Task[None]] = set()
        # Answers whose usage never came, charged from the estimate, per key name.
        self.estimated: dict[str, int] = {}

    def share(self, counters: SharedCounters) -> SharedKeys:
        """Keys on Redis (``state.redis``): the one place the shared counters
        and ledger replace the local ones (which stay their fallback)."""
        shared = self.shared = SharedKeys(counters, self.local_counters, self.local, self.wall)
        self.counters = self.ledger = shared
        return shared

    # -- lifecycle (the app's keys_ctx)

    async def start(self, table: KeyTable, store_path: Path | None) -> None:
        """Open the embedded store (when keys are configured) and start its flusher."""
        self._table = table
        self._store_path = store_path
        if table.enabled:
            await self._open_store()

    async def _open_store(self) -> None:
        if self._store_path is None or self.local.store is not None or self._opening:
            return
        self._opening = True
        try:
            if await self.local.open(SpendStore(self._store_path)) and self._flusher is None:
                self._flusher = asyncio.create_task(self.local.run(), name="llmproxy-spend-flusher")
        finally:
            self._opening = False

    def reconfigured(self, table: KeyTable) -> None:
        """A reload swapped ``table`` in: state of removed keys dropped, spend flushed."""
        self._table = table
        names = set(table.by_name)
        forget = getattr(self.counters, "forget", None)
        if forget is not None:
            forget(names)
        self.ledger.forget(names)
        if self._flusher is None and self._store_path is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._after_reload())
        except RuntimeError:  # no loop: a swap outside the server (tests of Proxy alone)
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _after_reload(self) -> None:
        if self._table.enabled:
            await self._open_store()
        await self.ledger.flush()

    def samples(self) -> list[KeySample]:
        """Scrape time (observe.metrics): each configured key's lifetime
        requests and spend, remaining budget, estimated answers."""
        out: list[KeySample] = []
        ledger = self.ledger
        for policy in self._table.policies():
            # Requests and spend counters are this process's own (a scrape
            # summed over processes counts each request once); the remaining
            # budget is the shared one.
            life = self.local.spent(policy.name, 0)
            remaining = None
            if policy.budget_usd is not None:
                remaining = max(policy.budget_usd - ledger.period_usd(policy.name, policy.period), 0.0)
            out.append((policy.name, life.requests, life.usd, remaining, self.estimated.get(policy.name, 0)))
        return out

    async def stop(self) -> None:
        """Shutdown (SIGTERM included): the flusher stopped, the last spend written."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.shared is not None:
            await self.shared.drain()
        await self.ledger.flush()
        await self.local.close()

    # -- the request path

    def authenticate(self, table: KeyTable, headers: Mapping[str, str]) -> Caller:
        caller = lookup(table, presented_key(headers))
        if caller is None:
            raise AuthenticationFailed("missing or invalid API key for this proxy")
        return caller

    async def admit(self, policy: KeyPolicy, model: str, body: Mapping[str, Any]) -> Ticket:
        requested = body.get("model")
        requested = requested if isinstance(requested, str) and requested != model else None
        if not policy.allows(model, requested):
            raise ModelNotAllowed(f"key {policy.name!r} may not use model {requested or model!r}", param="model")
        if policy.budget_usd is not None:
            spent = self.ledger.period_usd(policy.name, policy.period)
            if spent >= policy.budget_usd:
                raise self.quota_error(policy, spent)
        tokens = 0
        if policy.tpm is not None:
            tokens = prompt_tokens(body) + completion_tokens(body)
        hold = await self.counters.admit(policy, tokens)
        if isinstance(hold, Refusal):
            refusal = hold
            if refusal.kind == "budget":  # the shared counters saw the fleet's spend
                raise self.quota_error(policy, refusal.spent_usd or 0.0)
            wait = max(1, int(refusal.retry_after + 0.999))
            raise KeyRateLimited(
                f"key {policy.name!r} is over its {refusal.kind} limit "
                f"({_limit(policy, refusal.kind)}); retry in {wait}s",
                headers={"Retry-After": str(wait)},
            )
        return Ticket(self, policy, body, tokens, hold)

    def quota_error(self, policy: KeyPolicy, spent: float) -> QuotaExceeded:
        cap = policy.budget_usd or 0.0
        if policy.period == 0:
            when, headers = "it is a lifetime budget and does not reset", {}
        else:
            reset = self.ledger.spent(policy.name, policy.period).resets_at or 0
            when = f"it resets at {iso(reset)}"
            headers = {BUDGET_RESET_HEADER: iso(reset),
                       "Retry-After": str(max(1, int(reset - self.wall() + 0.999)))}
        return QuotaExceeded(
            f"key {policy.name!r} has spent ${spent:.4f} of its ${cap:.2f} budget for the "
            f"{policy.period_label} period; {when}",
            headers=headers,
        )


def _limit(policy: KeyPolicy, kind: str) -> str:
    if kind == "rpm":
        return f"{policy.rpm} requests per minute"
    if kind == "tpm":
        return f"{policy.tpm} tokens per minute"
    return f"{policy.max_parallel} requests in flight"


class Ticket:
    """One admitted request's account: released and settled exactly once (``finish``)."""

    __slots__ = (
        "_done",
        "answered_by",
        "body",
        "estimated",
        "hold",
        "is_free",
        "policy",
        "service",
        "tokens",
        "usd",
        "used",
    )

    def __init__(self, service: KeyService, policy: KeyPolicy, body: Mapping[str, Any], tokens: int,
                 hold: object = None) -> None:
        self.service = service
        self.hold = hold  # what the counters gave at admission (a Redis lease), for release
        self.policy = policy
        self.body = body
        self.tokens = tokens  # what the tpm limiter was charged at admission
        self.usd = 0.0
        self.used: int | None = None  # total tokens the answer reported
        self.answered_by: DeploymentConfig | None = None
        self.estimated = False
        self.is_free = False
        self._done = False

    def free(self) -> None:
        """This request costs nothing (answered locally, from a cache, a token count)."""
        self.is_free = True

    def answered(self, dep: DeploymentConfig, usage: Mapping[str, Any] | None) -> None:
        """``dep`` produced an answer (whole, or a stream cut after its first byte)."""
        self.answered_by = dep
        prompt, completion, cached = _counts(usage)
        if prompt is None and completion is None:
            # No usage came: charged from the estimate, never silently free.
            self.estimated = True
            prompt, completion, cached = prompt_tokens(self.body), completion_tokens(self.body), 0
        p, c = prompt or 0, completion or 0
        self.used = p + c
        if dep.price is not None:
            self.usd = dep.price.cost(p, c, cached)

    def finish(self) -> None:
        if self._done:
            return
        self._done = True
        service, policy = self.service, self.policy
        usd = 0.0 if self.is_free else self.usd
        service.counters.release(policy, self.hold, self.tokens, self.used, usd)
        tokens = 0 if self.is_free or self.used is None else self.used
        service.ledger.add(policy.name, usd, tokens)
        if self.estimated and not self.is_free:
            service.estimated[policy.name] = service.estimated.get(policy.name, 0) + 1


def _counts(usage: Mapping[str, Any] | None) -> tuple[int | None, int | None, int]:
    """(prompt, completion, cached prompt) tokens of an OpenAI-shaped usage; bools are not counts."""
    if not usage:
        return None, None, 0
    p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return (p if p.__class__ is int else None, c if c.__class__ is int else None,
            cached if cached.__class__ is int else 0)


TICKET = web.RequestKey("llmproxy.key_ticket", Ticket)

"""GET /admin/keys: each key's policy, limits and spend; never key material.

Built from the live ``KeyTable`` (names, policies: no hash, no plaintext
is reachable from here) and the ``KeyService``'s counters and ledger. With
``state.redis`` the budget and spend in USD are the fleet's, read from
Redis (one pipeline per call; ``"shared": "unavailable"`` and this
process's figures while it is down); ``requests``, ``tokens`` and
``in_flight`` are always this process's.
"""

from __future__ import annotations

from typing import Any

from ...keys.ledger import Spend
from ...keys.policy import KeyPolicy
from ...keys.service import KeyService, iso
from ...keys.table import KeyTable
from ...state.counters import Spent
from ...state.redis import Unavailable


def _spend(s: Spend) -> dict[str, Any]:
    return {"usd": round(s.usd, 9), "requests": s.requests, "tokens": s.tokens,
            "window_start": iso(s.window_start) if s.resets_at is not None else None,
            "resets_at": None if s.resets_at is None else iso(s.resets_at)}


def _with_usd(s: Spend, usd: float) -> Spend:
    return Spend(usd, s.requests, s.tokens, s.window_start, s.resets_at)


def key_view(policy: KeyPolicy, service: KeyService, shared: Spent | None = None) -> dict[str, Any]:
    ledger = service.ledger
    lifetime = ledger.spent(policy.name, 0)
    period = ledger.spent(policy.name, policy.period)
    if shared is not None:
        lifetime = _with_usd(lifetime, max(lifetime.usd, shared.lifetime_usd))
        period = _with_usd(period, max(period.usd, shared.lifetime_usd if policy.period == 0 else shared.period_usd))
    budget = None
    if policy.budget_usd is not None:
        budget = {"usd": policy.budget_usd, "period": policy.period_label,
                  "remaining_usd": round(max(policy.budget_usd - period.usd, 0.0), 9),
                  "resets_at": None if period.resets_at is None else iso(period.resets_at)}
    return {
        "name": policy.name,
        "metadata": dict(policy.metadata),
        "models": list(policy.models) or None,  # None: every model
        "role": "admin" if policy.admin else None,
        "limits": {"rpm": policy.rpm, "tpm": policy.tpm, "max_parallel": policy.max_parallel},
        **({"worker_share": service.local_counters.share(policy)} if service.local_counters.workers > 1 else {}),
        "in_flight": service.counters.in_flight(policy.name),
        "budget": budget,
        "spend": {"period": _spend(period) if policy.period else None, "lifetime": _spend(lifetime)},
        "requests": lifetime.requests,
        "tokens": lifetime.tokens,
    }


async def keys_view(table: KeyTable, service: KeyService) -> dict[str, Any]:
    local = service.local
    store = local.store
    policies = table.policies()
    spent: dict[str, Spent] = {}
    extra: dict[str, Any] = {}
    if service.shared is not None:
        got = await service.shared.shared_spend(policies)
        extra["shared"] = "unavailable" if isinstance(got, Unavailable) else "redis"
        spent = {} if isinstance(got, Unavailable) else got
    return {
        "keys": [key_view(p, service, spent.get(p.name)) for p in policies],
        "store": {"path": None if store is None else str(store.path), "problem": local.store_problem},
        **extra,
    }

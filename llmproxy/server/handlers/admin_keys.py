"""GET /admin/keys: each key's policy, limits and spend; never key material.

Built from the live ``KeyTable`` (names, policies: no hash, no plaintext
is reachable from here) and the ``KeyService``'s counters and ledger.
"""

from __future__ import annotations

from typing import Any

from ...keys.ledger import Spend
from ...keys.policy import KeyPolicy
from ...keys.service import KeyService, iso
from ...keys.table import KeyTable


def _spend(s: Spend) -> dict[str, Any]:
    return {"usd": round(s.usd, 9), "requests": s.requests, "tokens": s.tokens,
            "window_start": iso(s.window_start) if s.resets_at is not None else None,
            "resets_at": None if s.resets_at is None else iso(s.resets_at)}


def key_view(policy: KeyPolicy, service: KeyService) -> dict[str, Any]:
    ledger = service.ledger
    lifetime = ledger.spent(policy.name, 0)
    period = ledger.spent(policy.name, policy.period)
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
        "in_flight": service.counters.in_flight(policy.name),
        "budget": budget,
        "spend": {"period": _spend(period) if policy.period else None, "lifetime": _spend(lifetime)},
        "requests": lifetime.requests,
        "tokens": lifetime.tokens,
    }


def keys_view(table: KeyTable, service: KeyService) -> dict[str, Any]:
    local = service.local
    store = local.store
    return {
        "keys": [key_view(p, service) for p in table.policies()],
        "store": {"path": None if store is None else str(store.path), "problem": local.store_problem},
    }

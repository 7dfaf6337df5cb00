"""Per-key policy, derived once per config from ``keys:`` (pure: no I/O, no clock).

Invariants:
- a key's ``models`` globs are matched against the configured model names
  when the config is loaded, so the request path asks one set membership;
- a plain ``server.api_keys`` entry is a policy with no limits, named
  ``api-key-`` + the first 8 hex digits of its sha256 (``keys.table``:
  stable across restarts and pods, tells keys apart in logs and metrics,
  and reveals nothing that helps guess the key);
- nothing here holds key material but hashes, and those only as lookup keys.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..config.tree import KeyConfig


@dataclass(frozen=True, slots=True, eq=False)
class KeyPolicy:
    name: str
    allowed: frozenset[str] | None  # public model names this key may use; None: all
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None
    period: int = 0  # the budget's window in seconds; 0: lifetime
    period_label: str = "lifetime"
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    admin: bool = False
    models: tuple[str, ...] = ()  # as configured (names and globs), for /admin/keys

    def allows(self, model: str, requested: str | None = None) -> bool:
        """``model``: the config's model the request routes to; ``requested``:
        the name the client sent, when it differs (an alias, or a name a
        wildcard model matches), which the key's names and globs may allow
        on their own."""
        if self.allowed is None or model in self.allowed:
            return True
        return requested is not None and any(fnmatch.fnmatchcase(requested, p) for p in self.models)

    @property
    def limited(self) -> bool:
        """Has counters to keep (rpm, tpm or max_parallel)."""
        return self.rpm is not None or self.tpm is not None or self.max_parallel is not None


def allowed_models(patterns: Iterable[str], models: Iterable[str]) -> frozenset[str] | None:
    pats = tuple(patterns)
    if not pats:
        return None
    names = tuple(models)
    return frozenset(m for m in names if any(fnmatch.fnmatchcase(m, p) for p in pats))


def policy_of(key: KeyConfig, models: Iterable[str]) -> KeyPolicy:
    budget = key.budget
    return KeyPolicy(
        name=key.name,
        allowed=allowed_models(key.models, models),
        rpm=key.rpm, tpm=key.tpm, max_parallel=key.max_parallel,
        budget_usd=None if budget is None else budget.usd,
        period=0 if budget is None else budget.seconds,
        period_label="lifetime" if budget is None or budget.period is None else budget.period,
        metadata=key.metadata, admin=key.role == "admin", models=key.models,
    )

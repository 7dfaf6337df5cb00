"""Every key of one config, built once per config (``Runtime.keys``)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..config.tree import Config
from .caller import Caller
from .policy import KeyPolicy, policy_of


def short_key_name(digest: str) -> str:
    """The name of a plain ``server.api_keys`` entry (see ``keys.policy``)."""
    return f"api-key-{digest[:8]}"


@dataclass(frozen=True, slots=True)
class KeyTable:
    """Callers by sha256 (authentication), by name (/admin/keys), and the
    ``keys:`` entries a JWT's ``key_claim`` may select (``by_claim``: never a
    ``server.api_keys`` entry); entries without key material are by name only."""

    by_hash: Mapping[str, Caller]
    by_name: Mapping[str, Caller]
    by_claim: Mapping[str, Caller] = field(default_factory=lambda: MappingProxyType({}))
    jwt: bool = False  # auth.jwt is set: a caller may present a JWT instead of a key

    @property
    def enabled(self) -> bool:
        """A key or token is asked for (``keys:``, ``server.api_keys`` or ``auth.jwt`` is set)."""
        return self.jwt or bool(self.by_name)

    def policies(self) -> list[KeyPolicy]:
        return [c.policy for c in self.by_name.values() if c.policy is not None]


NO_KEYS = KeyTable(MappingProxyType({}), MappingProxyType({}))


def key_table(config: Config) -> KeyTable:
    jwt = config.auth.jwt is not None
    if not config.keys and not config.server.api_keys and not jwt:
        return NO_KEYS
    by_hash: dict[str, Caller] = {}
    by_name: dict[str, Caller] = {}
    by_claim: dict[str, Caller] = {}
    models = list(config.models)
    for plain in sorted(config.server.api_keys):
        digest = hashlib.sha256(plain.encode()).hexdigest()
        caller = Caller(short_key_name(digest), KeyPolicy(name=short_key_name(digest), allowed=None))
        by_hash[digest] = by_name[caller.name] = caller
    for key in config.keys:
        policy = policy_of(key, models)
        caller = by_name[policy.name] = by_claim[policy.name] = Caller(policy.name, policy)
        if key.key_sha256 is not None:
            by_hash[key.key_sha256] = caller
    return KeyTable(MappingProxyType(by_hash), MappingProxyType(by_name), MappingProxyType(by_claim), jwt)

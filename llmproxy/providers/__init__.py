"""Provider adapters by config ``type``: pure translation, no I/O.

The types themselves are listed once, in ``registry.PROVIDER_SPECS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .base import Adapter, CallContext, ProviderSpec, StreamTranslator, UpstreamRequest
from .registry import PROVIDER_SPECS, spec_for

ADAPTERS: Mapping[str, Adapter] = MappingProxyType({t: s.adapter for t, s in PROVIDER_SPECS.items()})


def adapter_for(provider_type: str) -> Adapter:
    return ADAPTERS[provider_type]


__all__ = ["ADAPTERS", "PROVIDER_SPECS", "Adapter", "CallContext", "ProviderSpec", "StreamTranslator",
           "UpstreamRequest", "adapter_for", "spec_for"]

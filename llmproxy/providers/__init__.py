"""Provider adapters by config ``type``: pure translation, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .base import Adapter, CallContext, StreamTranslator, UpstreamRequest
from .mock import MockAdapter
from .openai import OpenAIAdapter

_openai = OpenAIAdapter()

ADAPTERS: Mapping[str, Adapter] = MappingProxyType(
    {
        "openai": _openai,
        "azure": _openai,
        "mock": MockAdapter(),
    }
)


def adapter_for(provider_type: str) -> Adapter:
    return ADAPTERS[provider_type]


__all__ = ["ADAPTERS", "Adapter", "CallContext", "StreamTranslator", "UpstreamRequest", "adapter_for"]

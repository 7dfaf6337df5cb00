"""Every provider type, once: ``type:`` → its spec (declared in its module).

A new provider is one module declaring a ``ProviderSpec`` and one line
here; the config's type list, default base URLs, option keys, metrics and
tracing names and the image fetch all derive from this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from . import (
    anthropic,
    bedrock,
    cohere,
    deepseek,
    gemini,
    mock,
    ollama,
    openai,
    qianfan,
)
from .base import ProviderSpec

PROVIDER_SPECS: Mapping[str, ProviderSpec] = MappingProxyType({
    spec.type: spec
    for spec in (
        openai.SPEC,
        openai.AZURE_SPEC,
        mock.SPEC,
        bedrock.SPEC,
        ollama.SPEC,
        cohere.SPEC,
        qianfan.SPEC,
        anthropic.SPEC,
        gemini.SPEC,
        gemini.VERTEX_SPEC,
        deepseek.SPEC,
    )
})

# Derived views (``config.PROVIDER_TYPES`` / ``config.DEFAULT_BASE_URLS``).
PROVIDER_TYPES: Mapping[str, type] = MappingProxyType({t: s.options for t, s in PROVIDER_SPECS.items()})
DEFAULT_BASE_URLS: Mapping[str, str] = MappingProxyType(
    {t: s.default_base_url for t, s in PROVIDER_SPECS.items() if s.default_base_url is not None}
)


def spec_for(provider_type: str) -> ProviderSpec:
    return PROVIDER_SPECS[provider_type]

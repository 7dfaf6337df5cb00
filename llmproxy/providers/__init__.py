"""Provider adapters by config ``type``: pure translation, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .anthropic import AnthropicAdapter
from .base import Adapter, CallContext, StreamTranslator, UpstreamRequest
from .bedrock import BedrockAdapter
from .cohere import CohereAdapter
from .gemini import GeminiAdapter
from .mock import MockAdapter
from .ollama import OllamaAdapter
from .openai import OpenAIAdapter
from .qianfan import QianfanAdapter

_openai = OpenAIAdapter()
_gemini = GeminiAdapter()

ADAPTERS: Mapping[str, Adapter] = MappingProxyType(
    {
        "openai": _openai,
        "azure": _openai,
        "mock": MockAdapter(),
        "bedrock": BedrockAdapter(),
        "ollama": OllamaAdapter(),
        "cohere": CohereAdapter(),
        "qianfan": QianfanAdapter(),
        "anthropic": AnthropicAdapter(),
        "gemini": _gemini,
        "vertex": _gemini,
    }
)


def adapter_for(provider_type: str) -> Adapter:
    return ADAPTERS[provider_type]


__all__ = ["ADAPTERS", "Adapter", "CallContext", "StreamTranslator", "UpstreamRequest", "adapter_for"]

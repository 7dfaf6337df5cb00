"""DeepSeek: the OpenAI wire format (Bearer key, stream usage) at its own host."""

from __future__ import annotations

from . import openai
from .base import ProviderSpec

SPEC = ProviderSpec("deepseek", openai.SPEC.adapter, openai.StreamUsageOptions, "https://api.deepseek.com/v1",
                    "deepseek",
                    models_request=openai.models_request)

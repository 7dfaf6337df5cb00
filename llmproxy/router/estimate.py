"""Token estimates made before a call (for tpm limits and the cost strategy).

Deliberately cheap: about four characters a token over the text the request
carries. The tpm limiter is corrected with the real usage afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_COMPLETION_TOKENS = 256


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_chars(v) for v in value)
    if isinstance(value, dict):
        if value.get("type") == "image_url":
            return 340 * 4  # OpenAI bills a low-detail image tile at ~85-170 tokens; be generous
        return sum(_chars(v) for k, v in value.items() if k in ("text", "content", "arguments"))
    return 0


def prompt_tokens(body: Mapping[str, Any]) -> int:
    messages = body.get("messages")
    if messages is None:
        messages = body.get("input")  # embeddings
    n = _chars(messages) + _chars([t.get("function", {}).get("description", "")
                                   for t in body.get("tools") or [] if isinstance(t, dict)])
    return n // 4 + 1


def completion_tokens(body: Mapping[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_COMPLETION_TOKENS

"""Token estimates made before a call (for tpm limits and the cost strategy).

Deliberately cheap: about four characters a token over the text the request
carries. The tpm limiter is corrected with the real usage afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_COMPLETION_TOKENS = 256


_TEXT_FIELDS = ("text", "content", "arguments")


def _chars(value: Any) -> int:
    # Loops rather than generator expressions: this runs on every request
    # with tpm limits, and a message is a dict holding one string.
    if value.__class__ is str:
        return len(value)
    if isinstance(value, list):
        n = 0
        for v in value:
            n += len(v) if v.__class__ is str else _chars(v)
        return n
    if isinstance(value, dict):
        if value.get("type") == "image_url":
            return 340 * 4  # OpenAI bills a low-detail image tile at ~85-170 tokens; be generous
        n = 0
        for key in _TEXT_FIELDS:
            v = value.get(key)
            if v is not None:
                n += len(v) if v.__class__ is str else _chars(v)
        return n
    if isinstance(value, str):  # a str subclass
        return len(value)
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

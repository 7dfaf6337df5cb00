"""``unsupported_params: drop``: send a request without the fields its provider refuses.

The adapter stays the one authority on what its provider cannot take: it
refuses such a field with ``InvalidRequest(code="unsupported_parameter",
param=<field>)`` (``providers/translate.refuse_unsupported``). With drop on,
the request is built again without that field, until the adapter accepts it;
each drop is reported (the ``x-llmproxy-dropped-params`` header, the
``llmproxy_dropped_params_total`` metric, a DEBUG line), never silent.

Only OpenAI's own top-level request parameters are dropped: a field that is
not one (a typo such as ``temprature``) is still refused, and the metric's
``param`` label stays a fixed set. ``model``, ``messages``, ``input`` and
``stream`` are never dropped. Each round removes one distinct field, so the
rounds are bounded by the size of that set; the client's body is never
mutated (each drop makes a copy; drops are rare and few).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidRequest
from ..providers.base import UpstreamRequest

DROPPED_HEADER = "x-llmproxy-dropped-params"

# openai-python types/chat/completion_create_params.py and embedding_create_params.py,
# less the fields without which there is no request.
DROPPABLE = frozenset({
    "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls",
    "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_retention", "reasoning_effort",
    "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream_options",
    "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
    "web_search_options", "dimensions", "encoding_format",
})


def build_dropping(build: Callable[[Mapping[str, Any]], UpstreamRequest],
                   body: Mapping[str, Any]) -> tuple[UpstreamRequest, tuple[str, ...]]:
    """``build(body)``, retried without each OpenAI parameter it refuses; (request, dropped)."""
    current: Mapping[str, Any] = body
    dropped: list[str] = []
    while True:
        try:
            return build(current), tuple(dropped)
        except InvalidRequest as exc:
            param = exc.param
            if exc.code != "unsupported_parameter" or param not in DROPPABLE or param not in current:
                raise
            current = {k: v for k, v in current.items() if k != param}
            dropped.append(param)

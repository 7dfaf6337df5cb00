"""The legacy completions ingress (``POST /v1/completions``).

Only OpenAI-compatible deployments (``type: openai`` / ``azure``) still serve
it (vLLM and others): the body goes with only ``model`` rewritten and the
answer or stream is relayed. Every other provider has no equivalent: a 400
naming the model, raised on the attempt that would need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config.tree import DeploymentConfig
from ..errors import InvalidRequest
from ..providers import openai
from ..providers.base import Adapter, CallContext, StreamTranslator, UpstreamRequest
from .ingress import ChatIngress

if TYPE_CHECKING:
    from .attempt import Attempt, Call

_TYPES = ("openai", "azure")


class CompletionsIngress(ChatIngress):
    async def request(self, call: Call, attempt: Attempt, adapter: Adapter, *,
                      stream: bool) -> UpstreamRequest | None:
        dep = attempt.dep
        if dep.provider.type not in _TYPES:
            raise InvalidRequest(
                f"model {call.ctx.public_model!r} is served by a {dep.provider.type} deployment, which has "
                "no legacy completions API; use /v1/chat/completions", param="model",
            )
        headers = openai.request_headers(dep)
        if stream:
            headers["Accept"] = "text/event-stream"
        # Streams ask for the usage chunk as chat streams do (spend is exact),
        # and the client sees it only if it asked too.
        return UpstreamRequest(url=openai.endpoint_url(dep, "completions"), headers=headers,
                               body=openai.with_model(call.body, dep.model,
                                                      stream_usage=stream and openai.asks_stream_usage(dep)))

    def answer(self, adapter: Adapter, dep: DeploymentConfig, data: bytes,
               ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        return openai.relayed(data, "completion", "choices")

    def stream(self, adapter: Adapter, dep: DeploymentConfig, ctx: CallContext) -> StreamTranslator:
        return openai.OpenAIStreamRelay(drop_usage_chunk=not ctx.include_usage,
                                        max_event_size=dep.provider.limits.max_event_size)


COMPLETIONS = CompletionsIngress()

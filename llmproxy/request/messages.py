"""The Messages ingress (``POST /v1/messages`` and its count_tokens) on the request path.

Per attempt: a ``type: anthropic`` deployment gets the client's body with
only ``model`` rewritten and its answer relayed as Anthropic sent it
(``providers/anthropic_passthrough.py``); any other deployment gets the
internal chat body (``ingress/anthropic_messages.to_chat``, made once per
request) through its adapter, and its answer or stream translated back.
A request whose fields cannot be translated may still go to an anthropic
deployment: the translation's 400 is raised only on an attempt that needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..config.tree import DeploymentConfig
from ..errors import InvalidRequest, ProxyError
from ..ingress import anthropic_messages as am
from ..providers import anthropic_passthrough
from ..providers.base import Adapter, CallContext, StreamTranslator, UpstreamRequest
from ..router.estimate import prompt_tokens
from .ingress import Chained

if TYPE_CHECKING:
    from .attempt import Attempt, Call

_ANTHROPIC = "anthropic"


class MessagesIngress:
    """``raw``: the client's body; ``refused``: why it cannot be translated (or None)."""

    __slots__ = ("raw", "refused", "betas")

    def __init__(self, raw: Mapping[str, Any], refused: InvalidRequest | None, betas: str | None) -> None:
        self.raw = raw
        self.refused = refused
        self.betas = betas

    async def request(self, call: Call, attempt: Attempt, adapter: Adapter, *,
                      stream: bool) -> UpstreamRequest | None:
        dep = attempt.dep
        if dep.provider.type == _ANTHROPIC:
            return anthropic_passthrough.passthrough_request(dep, self.raw, stream=stream, client_betas=self.betas)
        if self.refused is not None:
            raise self.refused
        return await call.chat_request(attempt, adapter, stream=stream)

    def local(self, dep: DeploymentConfig, ctx: CallContext) -> bytes:
        raise AssertionError("messages are always sent")

    def answer(self, adapter: Adapter, dep: DeploymentConfig, data: bytes,
               ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        if dep.provider.type == _ANTHROPIC:
            return anthropic_passthrough.passthrough_answer(data)
        out, usage = adapter.chat_response(dep, data, ctx)
        return am.from_completion(out, ctx.public_model, ctx.request_id), usage

    def stream(self, adapter: Adapter, dep: DeploymentConfig, ctx: CallContext) -> StreamTranslator:
        limit = dep.provider.limits.max_event_size
        if dep.provider.type == _ANTHROPIC:
            return anthropic_passthrough.AnthropicRelay(limit)
        return Chained(adapter.chat_stream(dep, ctx), am.MessagesStream(ctx.public_model, ctx.request_id, limit))

    def error_event(self, translator: StreamTranslator, exc: ProxyError) -> bytes:
        return am.error_event(exc)


class CountTokensIngress(MessagesIngress):
    """count_tokens: Anthropic counts; for any other provider the proxy
    estimates with the tpm limits' estimator (router/estimate.py) and sends nothing."""

    __slots__ = ("internal",)

    def __init__(self, raw: Mapping[str, Any], internal: Mapping[str, Any] | None,
                 refused: InvalidRequest | None, betas: str | None) -> None:
        super().__init__(raw, refused, betas)
        self.internal = internal

    async def request(self, call: Call, attempt: Attempt, adapter: Adapter, *,
                      stream: bool) -> UpstreamRequest | None:
        dep = attempt.dep
        if dep.provider.type != _ANTHROPIC:
            return None
        return anthropic_passthrough.passthrough_request(dep, self.raw, stream=False, client_betas=self.betas,
                                             path="messages/count_tokens")

    def local(self, dep: DeploymentConfig, ctx: CallContext) -> bytes:
        return count_locally(self.internal, self.refused)

    def answer(self, adapter: Adapter, dep: DeploymentConfig, data: bytes,
               ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        return anthropic_passthrough.count_answer(data)


def count_locally(internal: Mapping[str, Any] | None, refused: InvalidRequest | None) -> bytes:
    if internal is None:
        assert refused is not None
        raise refused
    return orjson.dumps({"input_tokens": prompt_tokens(internal)})


def translate(body: Mapping[str, Any], *, count_only: bool = False) -> tuple[dict[str, Any] | None,
                                                                              InvalidRequest | None]:
    """The internal chat body, or why there is none (raised only where it is needed)."""
    try:
        return am.to_chat(body, count_only=count_only), None
    except InvalidRequest as exc:
        return None, exc

"""Google Gemini: the Gemini API (``type: gemini``) and Vertex AI (``type: vertex``).

Both speak ``GenerateContent``; they differ in URL, auth and embeddings. The
adapter is assembled from one module per job:

- ``gemini_request.py``: OpenAI chat request → ``generateContent`` body;
- ``gemini_response.py``: whole and streamed answers → OpenAI, Google errors;
- ``gemini_vertex.py``: what differs between the Gemini API and Vertex AI
  (URLs, auth headers, embeddings).

Pure: no I/O, inputs never mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..config.tree import DeploymentConfig
from ..errors import UpstreamStatusError
from . import answers as a
from . import translate as t
from .base import CallContext, ProviderSpec, UpstreamRequest, load_object
from .gemini_request import build_request, call_id, thought_signature
from .gemini_response import GeminiStream, completion_from_response, google_error
from .gemini_vertex import (
    VERTEX_GLOBAL,
    GeminiOptions,
    VertexOptions,
    embeddings_answer,
    embeddings_body,
    embeddings_method,
    model_url,
    request_headers,
)

__all__ = ["GeminiAdapter", "GeminiStream", "call_id", "thought_signature"]


class GeminiAdapter:
    """``type: gemini`` and ``type: vertex`` (the provider type picks URL and auth)."""

    stream_content_types = ("text/event-stream",)

    def chat_request(
        self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return UpstreamRequest(
            url=model_url(dep, method),
            headers=request_headers(dep, "text/event-stream" if stream else "application/json"),
            body=orjson.dumps(build_request(dep, body)),
        )

    def image_urls_to_fetch(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> list[str]:
        """The http(s) image URLs ``llmproxy/upstream/images.py`` must inline before ``chat_request``."""
        return t.image_urls_to_fetch(dep, body)

    def chat_response(
        self, dep: DeploymentConfig, data: bytes, ctx: CallContext
    ) -> tuple[bytes, dict[str, Any] | None]:
        out = completion_from_response(load_object(data, "gemini", "chat completion"), ctx, dep.model)
        return orjson.dumps(out), out.get("usage")

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> GeminiStream:
        return GeminiStream(ctx, dep.model, dep.provider.limits.max_event_size)

    def embeddings_request(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> UpstreamRequest:
        return UpstreamRequest(
            url=model_url(dep, embeddings_method(dep)),
            headers=request_headers(dep),
            body=orjson.dumps(embeddings_body(dep, body)),
        )

    def embeddings_response(
        self, dep: DeploymentConfig, data: bytes, ctx: CallContext
    ) -> tuple[bytes, dict[str, Any] | None]:
        doc = load_object(data, "gemini", "embeddings")
        return embeddings_answer(doc, dep.model, a.requested_encoding(ctx))

    def error_from_response(
        self, status: int, headers: Mapping[str, str], data: bytes
    ) -> UpstreamStatusError:
        return google_error(status, headers, data)


_ADAPTER = GeminiAdapter()
SPEC = ProviderSpec("gemini", _ADAPTER, GeminiOptions, "https://generativelanguage.googleapis.com", "gcp.gemini",
                    t.image_urls_to_fetch)
# The regional host is derived from location.
VERTEX_SPEC = ProviderSpec("vertex", _ADAPTER, VertexOptions, VERTEX_GLOBAL, "gcp.vertex_ai", t.image_urls_to_fetch)

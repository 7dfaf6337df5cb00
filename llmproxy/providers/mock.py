"""``type: mock``: a built-in, offline OpenAI-compatible model.

It answers deterministically: the reply echoes the last user message (or the
provider's fixed ``reply:``), usage counts whitespace-separated words, and
embeddings are derived from a hash of the input. These functions only build
the answer; ``upstream.MockTransport`` plays it out with the configured
``latency`` (seconds before the first token) and ``tokens_per_second``.

Invariant: nothing the mock builds grows with a number the client picks.
``dimensions`` (1..8192) and the number of embedding inputs (at most 2048,
OpenAI's own limit) are checked when the request is made, with a 400; a
reply is at most ``MAX_REPLY_TOKENS`` words (finish_reason ``length``, as a
real model stops at its output limit), so a 20 MiB prompt of one-letter
words streams 4096 chunks, not ten million.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config.schema import key
from ..config.tree import DeploymentConfig, ProviderOptions
from ..errors import InvalidRequest
from .base import ProviderSpec, UpstreamRequest
from .openai import OpenAIAdapter, request_headers, with_model

MOCK_SCHEME = "mock://"
MAX_DIMENSIONS = 8192
MAX_INPUTS = 2048
MAX_REPLY_TOKENS = 4096


def reply_text(body: Mapping[str, Any], fixed: str | None = None) -> str:
    """The reply: ``fixed``, else the last user message, cut at ``MAX_REPLY_TOKENS`` words."""
    if fixed is not None:
        return fixed
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _capped(content_text(message.get("content")))
    return ""


def _capped(text: str) -> str:
    words = text.split(maxsplit=MAX_REPLY_TOKENS)
    if len(words) <= MAX_REPLY_TOKENS:
        return text
    # The tail after the cap is words[-1]: cut the text where it starts.
    return text[: len(text) - len(words[-1])].rstrip()


def finish_reason(reply: str) -> str:
    return "length" if count_tokens(reply) >= MAX_REPLY_TOKENS else "stop"


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def count_tokens(text: str) -> int:
    return len(text.split())


def prompt_tokens(body: Mapping[str, Any]) -> int:
    return sum(
        count_tokens(content_text(m.get("content")))
        for m in body.get("messages") or []
        if isinstance(m, dict)
    )


def split_tokens(text: str) -> list[str]:
    """Word-sized pieces that concatenate back to ``text`` exactly."""
    pieces: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        end = text.find(" ", start + 1)
        end = n if end < 0 else end
        pieces.append(text[start:end])
        start = end
    return pieces


def usage(body: Mapping[str, Any], reply: str) -> dict[str, Any]:
    p, c = prompt_tokens(body), count_tokens(reply)
    return {
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": p + c,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def completion(body: Mapping[str, Any], model: str, reply: str, *, id: str, created: int) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(reply),
            }
        ],
        "usage": usage(body, reply),
    }


def stream_chunks(
    body: Mapping[str, Any], model: str, reply: str, *, id: str, created: int
) -> list[dict[str, Any]]:
    """The chunks of a streamed answer, without the ``[DONE]`` marker."""
    opts = body.get("stream_options")
    include_usage = isinstance(opts, dict) and opts.get("include_usage") is True

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        c: dict[str, Any] = {
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            c["usage"] = None
        return c

    chunks = [chunk({"role": "assistant", "content": ""}, None)]
    chunks.extend(chunk({"content": piece}, None) for piece in split_tokens(reply))
    chunks.append(chunk({}, finish_reason(reply)))
    if include_usage:
        chunks.append(
            {
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage(body, reply),
            }
        )
    return chunks


def embedding_vector(text: str, dimensions: int = 16) -> list[float]:
    """A deterministic unit-ish vector: equal inputs give equal vectors."""
    out: list[float] = []
    counter = 0
    while len(out) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend(v / 2**31 for v in struct.unpack("<8i", digest))
        counter += 1
    return out[:dimensions]


def check_embeddings(body: Mapping[str, Any]) -> None:
    """400 for what would make the mock's work unbounded (see the module invariant)."""
    dims = body.get("dimensions")
    if dims is not None and (
        isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= MAX_DIMENSIONS
    ):
        shown = repr(dims) if len(repr(dims)) <= 40 else repr(dims)[:40] + "..."
        raise InvalidRequest(
            f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}, got {shown}", param="dimensions"
        )
    inputs = _inputs(body.get("input"))
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' may hold at most {MAX_INPUTS} items, got {len(inputs)}", param="input"
        )


def _inputs(raw: Any) -> list[Any]:
    """The inputs to embed: a string, a token array (a flat list of ints, as
    OpenAI reads it: one input), or a list of either."""
    if isinstance(raw, list) and not (raw and all(isinstance(x, int) for x in raw)):
        return raw
    return [raw]


def embeddings(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    inputs = _inputs(body.get("input"))
    raw_dims = body.get("dimensions")
    dims = raw_dims if isinstance(raw_dims, int) and 0 < raw_dims <= MAX_DIMENSIONS else 16
    data = []
    total = 0
    for i, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(map(str, item if isinstance(item, list) else [item]))
        total += max(count_tokens(text), 1)
        vector = embedding_vector(text, dims)
        if body.get("encoding_format") == "base64":  # little-endian float32, as OpenAI sends
            data.append({"object": "embedding", "index": i,
                         "embedding": base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()})
        else:
            data.append({"object": "embedding", "index": i, "embedding": vector})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }


@dataclass(frozen=True, slots=True)
class MockOptions(ProviderOptions):
    latency: float | None = key(None, kind="number", positive=False, help="seconds before the answer starts")
    tokens_per_second: float | None = key(None, kind="number", help="stream pace (default: as fast as possible)")
    reply: str | None = key(None, kind="str", nonempty=True,
                            help="a fixed answer (default: echoes the last user message)")


class MockAdapter(OpenAIAdapter):
    """Speaks OpenAI to the in-process mock transport (``mock://`` URLs)."""

    def chat_request(
        self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        return UpstreamRequest(
            url=f"{MOCK_SCHEME}{dep.provider.name}/chat/completions",
            headers=request_headers(dep),
            # As the openai type does: the mock reports usage in every stream.
            body=with_model(body, dep.model, stream_usage=stream),
        )

    def embeddings_request(
        self, dep: DeploymentConfig, body: Mapping[str, Any]
    ) -> UpstreamRequest:
        check_embeddings(body)
        return UpstreamRequest(
            url=f"{MOCK_SCHEME}{dep.provider.name}/embeddings",
            headers=request_headers(dep),
            body=with_model(body, dep.model),
        )


def models_request(dep: DeploymentConfig) -> UpstreamRequest:
    return UpstreamRequest(url=f"{MOCK_SCHEME}{dep.provider.name}/models", headers=request_headers(dep), body=b"",
                           method="GET")


def models_list(model: str, created: int) -> dict[str, Any]:
    """What the mock's models endpoint answers: the deployment's own model."""
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "llmproxy"}]}


SPEC = ProviderSpec("mock", MockAdapter(), MockOptions, "mock://local", models_request=models_request)

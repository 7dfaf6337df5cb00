"""``type: bedrock``: AWS Bedrock Runtime, the Converse and ConverseStream APIs.

Shapes follow botocore's ``bedrock-runtime/2023-09-30/service-2.json``:
``POST /model/{modelId}/converse`` (JSON) and ``/converse-stream`` (AWS
binary event stream, decoded by ``eventstream.py``). The model id is
percent-encoded into the path (``:`` → ``%3A``) exactly as botocore does;
that encoded URL is both what is signed and what goes on the wire.

Authentication: with ``api_key`` set, a Bedrock API key as
``Authorization: Bearer``; otherwise the request carries an ``AwsSigning``
and ``upstream/client.py`` signs it (SigV4, signing name ``bedrock``) with the real
clock just before sending. Embeddings use ``InvokeModel`` with the Titan
(one text per call) or Cohere-on-Bedrock (batched) body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from ..config.schema import key
from ..config.tree import DeploymentConfig
from ..errors import (
    InvalidRequest,
    ProxyError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from ..sse import DONE
from . import answers as a
from . import translate as t
from .base import (
    CallContext,
    ProviderSpec,
    UpstreamRequest,
    error_body,
    load_object,
    parse_retry_after,
)
from .eventstream import EventStreamDecoder, EventStreamMessage
from .sigv4 import AwsSigning

SIGNING_NAME = "bedrock"  # service-2.json metadata.signingName (host prefix is bedrock-runtime)
PROVIDER = "Bedrock"

FINISH = {
    "end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg",
                 "image/gif": "gif", "image/webp": "webp"}
# Bedrock-native top-level fields (guardrailConfig, ...) pass through as they are
# for callers who need them.
_PASSTHROUGH = ("guardrailConfig", "performanceConfig", "requestMetadata",
                "additionalModelResponseFieldPaths", "promptVariables", "serviceTier")
# Request fields translated or passed through here; translate.refuse_unsupported refuses the rest.
SUPPORTED = frozenset({
    "model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
    "tools", "tool_choice", "response_format", "top_k", "additionalModelRequestFields", *_PASSTHROUGH,
})
_EMBEDDING_FIELDS = t.EMBEDDING_FIELDS | {"input_type"}

# Exception name (x-amzn-ErrorType / :exception-type) → the status we answer
# with. Bedrock's own statuses are kept except where the client's view differs:
# a quota exceeded (400 on Bedrock) is a rate limit that another account or
# region may not have, and a model failing (424) is the upstream's fault.
EXCEPTION_STATUS = {
    "validationexception": 400, "accessdeniedexception": 403,
    "resourcenotfoundexception": 404, "modeltimeoutexception": 408,
    "throttlingexception": 429, "modelnotreadyexception": 429,
    "servicequotaexceededexception": 429, "modelerrorexception": 502,
    "modelstreamerrorexception": 502, "internalserverexception": 500,
    "serviceunavailableexception": 503, "conflictexception": 400,
}


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class BedrockOptions(t.ImageUrlOptions):
    # Region and credentials default to AWS_REGION / AWS_ACCESS_KEY_ID /
    # AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN (Validator.aws_defaults).
    region: str | None = key(None, kind="str", nonempty=True, help="AWS region (default: $AWS_REGION)")
    aws_access_key_id: str | None = key(None, kind="str", nonempty=True, secret=True,
                                        help="default: $AWS_ACCESS_KEY_ID (with the secret, as a set)")
    aws_secret_access_key: str | None = key(None, kind="str", nonempty=True, secret=True,
                                            help="default: $AWS_SECRET_ACCESS_KEY")
    aws_session_token: str | None = key(None, kind="str", nonempty=True, secret=True,
                                        help="default: $AWS_SESSION_TOKEN")


def model_url(dep: DeploymentConfig, operation: str) -> str:
    # botocore percent_encode(modelId, safe='-._~'): ':' and '/' (ARNs) are encoded.
    return f"{dep.provider.base_url}/model/{quote(dep.model, safe='-._~')}/{operation}"


def _auth(dep: DeploymentConfig, headers: dict[str, str]) -> AwsSigning | None:
    p = dep.provider
    if p.api_key:
        headers["Authorization"] = f"Bearer {p.api_key}"
        return None
    o = p.options if isinstance(p.options, BedrockOptions) else BedrockOptions()
    if not o.aws_access_key_id or not o.aws_secret_access_key:
        raise ProxyError(
            f"provider {p.name!r} (bedrock) has no credentials: set aws_access_key_id and "
            "aws_secret_access_key (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), or api_key "
            "for a Bedrock API key",
            status=500, code="provider_misconfigured",
        )
    return AwsSigning(
        region=o.region or "",
        service=SIGNING_NAME,
        access_key=o.aws_access_key_id,
        secret_key=o.aws_secret_access_key,
        session_token=o.aws_session_token or None,
    )


def _request(dep: DeploymentConfig, operation: str, doc: Mapping[str, Any], accept: str) -> UpstreamRequest:
    headers = {"Content-Type": "application/json", "Accept": accept}
    signing = _auth(dep, headers)
    headers.update(dep.provider.headers)
    return UpstreamRequest(url=model_url(dep, operation), headers=headers,
                           body=orjson.dumps(doc), aws_sigv4=signing)


def converse_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request → a Converse request body (without modelId, which is in the path)."""
    t.refuse_unsupported(body, SUPPORTED, PROVIDER)
    system: list[dict[str, Any]] = []
    turns: list[t.TurnEntry] = []  # Converse wants user/assistant turns alternating
    for i, m in enumerate(body.get("messages") or []):
        param = f"messages[{i}]"
        role = m.get("role")
        if role in ("system", "developer"):
            if text := "\n".join(t.texts_only(m.get("content"), f"{param}.content", role)):
                system.append({"text": text})
        elif role == "user":
            turns.append(("user", _user_blocks(m.get("content"), f"{param}.content"), ()))
        elif role == "assistant":
            texts, calls = t.assistant_message(m, param, PROVIDER)
            blocks: list[dict[str, Any]] = [{"text": "\n".join(p["text"] for p in texts)}] if texts else []
            for call_id, name, args in calls:
                blocks.append({"toolUse": {"toolUseId": call_id, "name": name, "input": args}})
            turns.append(("assistant", blocks, ()))
        elif role == "tool":
            text = "\n".join(t.texts_only(m.get("content"), f"{param}.content", "tool"))
            result = {"toolResult": {"toolUseId": t.tool_call_id(m, param), "content": [{"text": text}]}}
            turns.append(("user", (), (result,)))
        else:
            raise t.unknown_role(m, param, PROVIDER)

    doc: dict[str, Any] = {"messages": t.alternate(turns, "content")}
    if system:
        doc["system"] = system
    inference: dict[str, Any] = {}
    if (n := t.max_tokens(body)) is not None:
        inference["maxTokens"] = n
    if (v := t.number(body, "temperature", 0, 2)) is not None:
        inference["temperature"] = v
    if (v := t.number(body, "top_p", 0, 1)) is not None:
        inference["topP"] = v
    if stop := t.stop_sequences(body):
        inference["stopSequences"] = stop
    if inference:
        doc["inferenceConfig"] = inference
    tool_config = _tool_config(body)
    if tool_config:
        doc["toolConfig"] = tool_config
    if (output := _output_config(body)) is not None:
        doc["outputConfig"] = output
    extra = dict(t.object_field(body, "additionalModelRequestFields"))
    if (k := t.integer(body, "top_k")) is not None:
        extra["top_k"] = k  # the name Anthropic models on Bedrock use
    if extra:
        doc["additionalModelRequestFields"] = extra
    doc.update(t.native_fields(body, _PASSTHROUGH))
    return doc


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for k, part in enumerate(t.content_parts(content, param)):
        p = f"{param}[{k}]"
        if part["type"] == "text":
            if part["text"]:
                blocks.append({"text": part["text"]})
        elif part["type"] == "image_url":
            mime, data = t.image_data(part, p, PROVIDER)
            fmt = IMAGE_FORMATS.get(mime)
            if fmt is None:
                raise InvalidRequest(f"{p}: {PROVIDER} accepts png, jpeg, gif and webp images, not {mime}", param=p)
            blocks.append({"image": {"format": fmt, "source": {"bytes": data}}})
        else:
            raise t.unknown_part(part, p, PROVIDER)
    return blocks


def _tool_config(body: Mapping[str, Any]) -> dict[str, Any] | None:
    mode, offered, forced = t.tool_choice(body, t.functions(body))
    # Converse has no "none": leaving the tools out is how a model is kept from calling one.
    if not offered or mode == "none":
        return None
    tools = []
    for fn in offered:
        spec: dict[str, Any] = {
            "name": fn.name,
            "inputSchema": {"json": fn.parameters or {"type": "object", "properties": {}}},
        }
        if fn.description:
            spec["description"] = fn.description
        if fn.strict:
            spec["strict"] = True
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if mode == "function":
        config["toolChoice"] = {"tool": {"name": forced}}
    elif mode == "required":
        config["toolChoice"] = {"any": {}}
    elif body.get("tool_choice") is not None:  # an explicit auto (Converse's default too)
        config["toolChoice"] = {"auto": {}}
    return config


def _output_config(body: Mapping[str, Any]) -> dict[str, Any] | None:
    fmt, js = t.response_format(body)
    if fmt == "text":
        return None
    if js is None:
        raise InvalidRequest(f"response_format {fmt!r} is not supported by {PROVIDER} deployments; "
                             "use json_schema", param="response_format")
    schema: dict[str, Any] = {"schema": orjson.dumps(js["schema"]).decode(), "name": str(js.get("name") or "response")}
    if js.get("description"):
        schema["description"] = js["description"]
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": schema}}}


# --------------------------------------------------------------------------- answers


def converse_usage(u: Any) -> dict[str, Any] | None:
    if not isinstance(u, dict):
        return None
    read = a.count(u, "cacheReadInputTokens")
    prompt = a.count(u, "inputTokens") + read + a.count(u, "cacheWriteInputTokens")
    return a.usage(prompt, a.count(u, "outputTokens"), cached=read or None)


def completion_from_converse(doc: Mapping[str, Any], dep: DeploymentConfig, ctx: CallContext) -> dict[str, Any]:
    message = (doc.get("output") or {}).get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise UpstreamProtocolError("Bedrock answered 200 without output.message.content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append(a.tool_call(str(use.get("toolUseId")), str(use.get("name")), use.get("input") or {}))
    text = "".join(texts) if texts or not calls else None
    finish = a.finish_reason(FINISH, doc.get("stopReason"), bool(calls))
    return a.one_choice(ctx, dep.model, text, calls, finish, converse_usage(doc.get("usage")))


def exception_error(name: str, message: str, retry_after: float | None = None,
                    status: int | None = None) -> UpstreamStatusError:
    code = name.split(":", 1)[0].rsplit("#", 1)[-1]  # botocore's cleaning of x-amzn-ErrorType
    mapped = EXCEPTION_STATUS.get(code.lower())
    final = mapped if mapped is not None else (status or 502)
    return UpstreamStatusError(message or f"Bedrock {code or 'error'}", status=final,
                               code=code or None, retry_after=retry_after)


# --------------------------------------------------------------------------- streams


class ConverseStreamTranslator(a.EventStream):
    """ConverseStream event-stream bytes → OpenAI SSE chunks.

    Events are keyed by ``contentBlockIndex``: text blocks have no
    ``contentBlockStart`` (they begin with their first delta), tool blocks
    do, and each tool block becomes the next OpenAI ``tool_calls`` index. The
    finish chunk goes out at ``messageStop``; usage arrives after it in
    ``metadata``, which is the end of the stream. An exception frame becomes
    an ``UpstreamStatusError``, raised after the chunks decoded before it
    were returned.
    """

    __slots__ = ("_decoder", "_stopped", "_tools")

    def __init__(self, dep: DeploymentConfig, ctx: CallContext) -> None:
        super().__init__(a.Chunks(f"chatcmpl-{ctx.request_id}", ctx.created, dep.model, ctx.include_usage))
        self._decoder = EventStreamDecoder(dep.provider.limits.max_event_size)
        self._tools: dict[int, int] = {}  # contentBlockIndex → OpenAI tool_calls index
        self._stopped = False

    def _decode(self, data: bytes) -> Iterable[EventStreamMessage]:
        return self._decoder.feed(data)

    def _event(self, message: EventStreamMessage, out: list[dict[str, Any]]) -> bytes:
        h = message.headers
        mtype = h.get(":message-type")
        if mtype == "exception":
            raise exception_error(str(h.get(":exception-type", "")), _payload_message(message.payload))
        if mtype == "error":
            raise UpstreamStatusError(
                str(h.get(":error-message") or "Bedrock stream error"), status=502,
                code=str(h.get(":error-code")) or None,
            )
        if mtype != "event":
            return b""
        event = h.get(":event-type")
        try:
            doc = orjson.loads(message.payload) if message.payload else {}
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"Bedrock stream event {event!r} is not JSON") from None
        c = self._chunks
        if event == "messageStart":
            out.append(c.role())
        elif event == "contentBlockStart":
            use = (doc.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                start = self._tools[doc.get("contentBlockIndex", -1)] = len(self._tools)
                out.append(c.tool_start(start, str(use.get("toolUseId")), str(use.get("name"))))
        elif event == "contentBlockDelta":
            delta = doc.get("delta") or {}
            if isinstance(delta.get("text"), str):
                if delta["text"]:
                    out.append(c.text(delta["text"]))
            elif isinstance(delta.get("toolUse"), dict):
                index = self._tools.get(doc.get("contentBlockIndex", -1))
                if index is None:
                    raise UpstreamProtocolError("Bedrock sent tool input for a block it never started")
                piece = delta["toolUse"].get("input")
                if isinstance(piece, str) and piece:
                    out.append(c.tool_arguments(index, piece))
            # reasoningContent and citation deltas have no Chat Completions field.
        elif event == "messageStop":
            self._stopped = True
            out.append(c.finish(a.finish_reason(FINISH, doc.get("stopReason"), bool(self._tools))))
        elif event == "metadata":
            return self._end(out, None, converse_usage(doc.get("usage")))
        return b""

    def finish(self) -> bytes:
        if self._error is not None:
            raise self._error
        if self._decoder.pending:
            raise UpstreamProtocolError("Bedrock stream ended in the middle of an event")
        if self._stopped and not self.done:
            # messageStop arrived but metadata (usage only) did not: the answer is whole.
            self.done = True
            return DONE
        self._finished("Bedrock stream ended before messageStop")
        return b""


def _payload_message(payload: bytes) -> str:
    try:
        doc = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        return payload[:300].decode("utf-8", "replace")
    if isinstance(doc, dict):
        return str(doc.get("message") or doc.get("Message") or "")
    return ""


# --------------------------------------------------------------------------- adapter


class BedrockAdapter:
    stream_content_types = ("application/vnd.amazon.eventstream",)

    def chat_request(self, dep: DeploymentConfig, body: Mapping[str, Any], *, stream: bool) -> UpstreamRequest:
        doc = converse_body(body)
        if dep.max_tokens and "maxTokens" not in doc.get("inferenceConfig", {}):
            doc["inferenceConfig"] = {**doc.get("inferenceConfig", {}), "maxTokens": dep.max_tokens}
        if stream:
            return _request(dep, "converse-stream", doc, "application/vnd.amazon.eventstream")
        return _request(dep, "converse", doc, "application/json")

    def image_urls_to_fetch(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> list[str]:
        """Image links ``llmproxy/upstream/images.py`` inlines first (with ``allow_image_urls: true``)."""
        return t.image_urls_to_fetch(dep, body)

    def chat_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        out = completion_from_converse(load_object(data, PROVIDER), dep, ctx)
        return orjson.dumps(out), out.get("usage")

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> ConverseStreamTranslator:
        return ConverseStreamTranslator(dep, ctx)

    def embeddings_request(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> UpstreamRequest:
        texts = t.embedding_input(body, _EMBEDDING_FIELDS, PROVIDER)
        dims = t.integer(body, "dimensions")
        doc: dict[str, Any]
        if dep.model.startswith("cohere.embed"):
            doc = {"texts": texts, "input_type": body.get("input_type") or "search_document"}
        else:  # Amazon Titan text embeddings: one text per InvokeModel call
            if len(texts) != 1:
                raise InvalidRequest(
                    f"{PROVIDER} Titan embedding models take one input per request, got {len(texts)}",
                    param="input",
                )
            doc = {"inputText": texts[0]}
            if dims is not None:
                doc["dimensions"] = dims
        return _request(dep, "invoke", doc, "application/json")

    def embeddings_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = load_object(data, PROVIDER)
        if isinstance(doc.get("embedding"), list):  # Titan
            vectors, tokens = [doc["embedding"]], a.count(doc, "inputTextTokenCount")
        elif isinstance(doc.get("embeddings"), list):  # Cohere on Bedrock
            vectors, tokens = doc["embeddings"], 0
        else:
            raise UpstreamProtocolError("Bedrock answered 200 without an embedding")
        return a.embeddings_list(vectors, dep.model, a.requested_encoding(ctx), tokens)

    def error_from_response(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamStatusError:
        name = headers.get("x-amzn-ErrorType", "")
        doc, message = error_body(status, data, PROVIDER)
        if isinstance(doc, dict):
            message = str(doc.get("message") or doc.get("Message") or message)
            name = name or str(doc.get("__type") or doc.get("code") or "")
        return exception_error(name, message, parse_retry_after(headers), status)


SPEC = ProviderSpec("bedrock", BedrockAdapter(), BedrockOptions,
                    "https://bedrock-runtime.{region}.amazonaws.com",  # {region} filled in at load
                    "aws.bedrock", t.image_urls_to_fetch)

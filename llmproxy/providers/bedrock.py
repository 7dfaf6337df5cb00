"""``type: bedrock``: AWS Bedrock Runtime, the Converse and ConverseStream APIs.

Shapes follow botocore's ``bedrock-runtime/2023-09-30/service-2.json``:
``POST /model/{modelId}/converse`` (JSON) and ``/converse-stream`` (AWS
binary event stream, decoded by ``eventstream.py``). The model id is
percent-encoded into the path (``:`` → ``%3A``) exactly as botocore does;
that encoded URL is both what is signed and what goes on the wire.

Authentication: with ``api_key`` set, a Bedrock API key as
``Authorization: Bearer``; otherwise the request carries an ``AwsSigning``
and ``upstream.py`` signs it (SigV4, signing name ``bedrock``) with the real
clock just before sending. Embeddings use ``InvokeModel`` with the Titan
(one text per call) or Cohere-on-Bedrock (batched) body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from ..config import DeploymentConfig
from ..errors import InvalidRequest, ProxyError, UpstreamProtocolError, UpstreamStatusError
from ..sse import DONE
from . import openai_shapes as oa
from .base import CallContext, UpstreamRequest, encode_chunks, parse_retry_after
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
# Client fields with a Converse equivalent; Bedrock-native top-level fields
# (guardrailConfig, ...) pass through as they are for callers who need them.
HANDLED = {
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools",
    "tool_choice", "response_format", "top_k", "additionalModelRequestFields",
    "guardrailConfig", "performanceConfig", "requestMetadata",
    "additionalModelResponseFieldPaths", "promptVariables", "serviceTier",
}
_PASSTHROUGH = ("guardrailConfig", "performanceConfig", "requestMetadata",
                "additionalModelResponseFieldPaths", "promptVariables", "serviceTier")

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


def model_url(dep: DeploymentConfig, operation: str) -> str:
    # botocore percent_encode(modelId, safe='-._~'): ':' and '/' (ARNs) are encoded.
    return f"{dep.provider.base_url}/model/{quote(dep.model, safe='-._~')}/{operation}"


def _auth(dep: DeploymentConfig, headers: dict[str, str]) -> AwsSigning | None:
    p = dep.provider
    if p.api_key:
        headers["Authorization"] = f"Bearer {p.api_key}"
        return None
    o = p.options
    if not o.get("aws_access_key_id") or not o.get("aws_secret_access_key"):
        raise ProxyError(
            f"provider {p.name!r} (bedrock) has no credentials: set aws_access_key_id and "
            "aws_secret_access_key (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), or api_key "
            "for a Bedrock API key",
            status=500, code="provider_misconfigured",
        )
    return AwsSigning(
        region=str(o.get("region", "")),
        service=SIGNING_NAME,
        access_key=str(o["aws_access_key_id"]),
        secret_key=str(o["aws_secret_access_key"]),
        session_token=str(o["aws_session_token"]) if o.get("aws_session_token") else None,
    )


def _request(dep: DeploymentConfig, operation: str, doc: Mapping[str, Any], accept: str) -> UpstreamRequest:
    headers = {"Content-Type": "application/json", "Accept": accept}
    signing = _auth(dep, headers)
    headers.update(dep.provider.headers)
    return UpstreamRequest(url=model_url(dep, operation), headers=headers,
                           body=orjson.dumps(doc), aws_sigv4=signing)


def converse_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request → a Converse request body (without modelId, which is in the path)."""
    oa.reject_unsupported(body, HANDLED, PROVIDER)
    messages = body.get("messages") or []
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []  # {"role", "content": [blocks]}, roles alternating

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Converse wants user/assistant turns alternating
        else:
            turns.append({"role": role, "content": list(blocks)})

    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        role = m.get("role")
        if role in ("system", "developer"):
            text = oa.text_of(m.get("content"), where)
            if text:
                system.append({"text": text})
        elif role == "user":
            add("user", _user_blocks(m.get("content"), where))
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            text = oa.text_of(m.get("content"), where)
            if text:
                blocks.append({"text": text})
            for j, call in enumerate(oa.tool_calls_of(m, where)):
                fn = call["function"]
                blocks.append({"toolUse": {
                    "toolUseId": str(call.get("id") or f"call_{i}_{j}"),
                    "name": fn["name"],
                    "input": oa.tool_arguments(fn.get("arguments"), f"{where}.tool_calls[{j}]"),
                }})
            add("assistant", blocks)
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest(f"{where}.tool_call_id is required", param=f"{where}.tool_call_id")
            add("user", [{"toolResult": {
                "toolUseId": call_id,
                "content": [{"text": oa.text_of(m.get("content"), where)}],
            }}])
        else:
            raise InvalidRequest(f"{where}.role {role!r} is not supported by {PROVIDER} deployments",
                                 param=f"{where}.role")

    doc: dict[str, Any] = {"messages": turns}
    if system:
        doc["system"] = system
    inference: dict[str, Any] = {}
    if (n := oa.max_tokens_of(body)) is not None:
        inference["maxTokens"] = n
    if body.get("temperature") is not None:
        inference["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        inference["topP"] = body["top_p"]
    if (stop := oa.stop_list(body)) is not None:
        inference["stopSequences"] = stop
    if inference:
        doc["inferenceConfig"] = inference
    tool_config = _tool_config(body)
    if tool_config:
        doc["toolConfig"] = tool_config
    if (output := _output_config(body.get("response_format"))) is not None:
        doc["outputConfig"] = output
    extra = dict(oa.object_field(body, "additionalModelRequestFields"))
    if body.get("top_k") is not None:
        extra["top_k"] = body["top_k"]  # the name Anthropic models on Bedrock use
    if extra:
        doc["additionalModelRequestFields"] = extra
    for key in _PASSTHROUGH:
        if body.get(key) is not None:
            doc[key] = body[key]
    return doc


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for k, part in enumerate(oa.content_parts(content, where)):
        ptype = part["type"]
        if ptype == "text":
            if part.get("text"):
                blocks.append({"text": str(part["text"])})
        elif ptype == "image_url":
            pwhere = f"{where}.content[{k}]"
            mime, data = oa.data_url(oa.image_url(part, pwhere), pwhere, PROVIDER)
            fmt = IMAGE_FORMATS.get(mime)
            if fmt is None:
                raise InvalidRequest(f"{pwhere}: {PROVIDER} accepts png, jpeg, gif and webp images, not {mime}",
                                     param=pwhere)
            blocks.append({"image": {"format": fmt, "source": {"bytes": data}}})
        else:
            raise InvalidRequest(f"{where}.content[{k}]: part type {ptype!r} is not supported by "
                                 f"{PROVIDER} deployments", param=f"{where}.content")
    return blocks


def _tool_config(body: Mapping[str, Any]) -> dict[str, Any] | None:
    functions = oa.functions_of(body)
    choice = oa.tool_choice_of(body)
    # Converse has no "none": leaving the tools out is how a model is kept from calling one.
    if not functions or choice == "none":
        return None
    tools = []
    for fn in functions:
        spec: dict[str, Any] = {
            "name": fn["name"],
            "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        if isinstance(fn.get("strict"), bool):
            spec["strict"] = fn["strict"]
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice is not None:
        config["toolChoice"] = {"tool": {"name": choice[len("function:"):]}}
    return config


def _output_config(fmt: Any) -> dict[str, Any] | None:
    if fmt is None or fmt == {"type": "text"}:
        return None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        js = fmt["json_schema"]
        schema: dict[str, Any] = {"schema": orjson.dumps(js.get("schema") or {}).decode(),
                                  "name": str(js.get("name") or "response")}
        if js.get("description"):
            schema["description"] = js["description"]
        return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": schema}}}
    raise InvalidRequest(
        f"response_format {fmt.get('type') if isinstance(fmt, dict) else fmt!r} is not supported by "
        f"{PROVIDER} deployments; use json_schema", param="response_format",
    )


# --------------------------------------------------------------------------- answers


def converse_usage(u: Any) -> dict[str, Any] | None:
    if not isinstance(u, dict):
        return None
    read, write = u.get("cacheReadInputTokens") or 0, u.get("cacheWriteInputTokens") or 0
    return oa.usage((u.get("inputTokens") or 0) + read + write, u.get("outputTokens"), read)


def completion_from_converse(doc: Mapping[str, Any], dep: DeploymentConfig, ctx: CallContext) -> bytes:
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
            calls.append(oa.tool_call(str(use.get("toolUseId")), str(use.get("name")), use.get("input") or {}))
    return oa.completion(
        id=f"chatcmpl-{ctx.request_id}", created=ctx.created, model=dep.model,
        content="".join(texts) if texts or not calls else None, tool_calls=calls,
        finish_reason=_finish(doc.get("stopReason"), bool(calls)),
        usage=converse_usage(doc.get("usage")),
    )


def _finish(reason: Any, tools: bool) -> str:
    finish = FINISH.get(str(reason), "stop")
    return "tool_calls" if tools and finish == "stop" else finish


def exception_error(name: str, message: str, retry_after: float | None = None,
                    status: int | None = None) -> UpstreamStatusError:
    code = name.split(":", 1)[0].rsplit("#", 1)[-1]  # botocore's cleaning of x-amzn-ErrorType
    mapped = EXCEPTION_STATUS.get(code.lower())
    final = mapped if mapped is not None else (status or 502)
    return UpstreamStatusError(message or f"Bedrock {code or 'error'}", status=final,
                               code=code or None, retry_after=retry_after)


# --------------------------------------------------------------------------- streams


class ConverseStreamTranslator:
    """ConverseStream event-stream bytes → OpenAI SSE chunks.

    Events are keyed by ``contentBlockIndex``: text blocks have no
    ``contentBlockStart`` (they begin with their first delta), tool blocks
    do, and each tool block becomes the next OpenAI ``tool_calls`` index. The
    finish chunk goes out at ``messageStop``; usage arrives after it in
    ``metadata``, which is the end of the stream. An exception frame becomes
    an ``UpstreamStatusError``, raised after the chunks decoded before it
    were returned.
    """

    __slots__ = ("_decoder", "_chunks", "_tools", "_saw_tool", "_stopped", "done", "usage", "_error")

    def __init__(self, dep: DeploymentConfig, ctx: CallContext) -> None:
        self._decoder = EventStreamDecoder()
        self._chunks = oa.Chunks(f"chatcmpl-{ctx.request_id}", ctx.created, dep.model, ctx.include_usage)
        self._tools: dict[int, int] = {}  # contentBlockIndex → OpenAI tool_calls index
        self._saw_tool = False
        self._stopped = False
        self.done = False
        self.usage: dict[str, Any] | None = None
        self._error: UpstreamStatusError | None = None

    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        out: list[dict[str, Any]] = []
        tail = b""
        try:
            for message in self._decoder.feed(data):
                if self.done:
                    break
                tail = self._event(message, out)
        except UpstreamStatusError as exc:
            if not out:
                raise
            self._error = exc  # deliver what came before it first
        return encode_chunks(out) + tail

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
                self._saw_tool = True
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
            out.append(c.finish(_finish(doc.get("stopReason"), self._saw_tool)))
        elif event == "metadata":
            self.usage = converse_usage(doc.get("usage"))
            if c.include_usage and self.usage is not None:
                out.append(c.usage(self.usage))
            self.done = True
            return DONE
        return b""

    def finish(self) -> bytes:
        if self._error is not None:
            raise self._error
        if self._decoder.pending:
            raise UpstreamProtocolError("Bedrock stream ended in the middle of an event")
        if self.done:
            return b""
        if self._stopped:
            # messageStop arrived but metadata (usage only) did not: the answer is whole.
            self.done = True
            return DONE
        raise UpstreamProtocolError("Bedrock stream ended before messageStop")


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
        """Image links ``llmproxy/fetch.py`` inlines first (with ``allow_image_urls: true``)."""
        return oa.http_image_urls(dep, body)

    def chat_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = _load(data)
        return completion_from_converse(doc, dep, ctx), converse_usage(doc.get("usage"))

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> ConverseStreamTranslator:
        return ConverseStreamTranslator(dep, ctx)

    def embeddings_request(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> UpstreamRequest:
        oa.reject_unsupported(body, {"input", "encoding_format", "dimensions", "input_type"}, PROVIDER)
        oa.encoding_format_of(body)
        texts = oa.embedding_texts(body, PROVIDER)
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
            if body.get("dimensions") is not None:
                doc["dimensions"] = body["dimensions"]
        return _request(dep, "invoke", doc, "application/json")

    def embeddings_response(self, dep: DeploymentConfig, data: bytes, ctx: CallContext) -> tuple[bytes, dict[str, Any] | None]:
        doc = _load(data)
        if isinstance(doc.get("embedding"), list):  # Titan
            vectors, tokens = [doc["embedding"]], doc.get("inputTextTokenCount")
        elif isinstance(doc.get("embeddings"), list):  # Cohere on Bedrock
            vectors, tokens = doc["embeddings"], None
        else:
            raise UpstreamProtocolError("Bedrock answered 200 without an embedding")
        return oa.embeddings_list(vectors, dep.model, oa.requested_encoding(ctx), tokens)

    def error_from_response(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamStatusError:
        name = headers.get("x-amzn-ErrorType", "")
        message = ""
        try:
            doc = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            doc = None
            message = data[:300].decode("utf-8", "replace").strip()
        if isinstance(doc, dict):
            message = str(doc.get("message") or doc.get("Message") or "")
            name = name or str(doc.get("__type") or doc.get("code") or "")
        return exception_error(name, message or f"Bedrock returned HTTP {status}",
                               parse_retry_after(headers), status)


def _load(data: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("Bedrock answered 200 with a body that is not JSON") from None
    if not isinstance(doc, dict):
        raise UpstreamProtocolError("Bedrock answered 200 with JSON that is not an object")
    return doc

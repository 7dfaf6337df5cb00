"""Google Gemini: the Gemini API (``type: gemini``) and Vertex AI (``type: vertex``).

Both speak ``GenerateContent``; they differ in URL, auth and embeddings.
Wire format checked against googleapis/python-genai (``types.py``:
``GenerateContentResponseUsageMetadata``, ``GenerationConfig.response_json_schema``,
``FunctionDeclaration.parameters_json_schema``, ``Part.thought_signature``,
``FunctionResponse.response``; ``models.py``: ``embed_content`` posts
``:batchEmbedContents`` to the Gemini API and ``:predict`` to Vertex;
``_api_client.py``: Vertex location defaults to ``global`` on host
``aiplatform.googleapis.com``) and the shared reference (wire-formats.md §4).
Pure: no I/O, inputs never mutated.

Decisions a reader should know:
- ``system``/``developer`` text → ``systemInstruction``; ``assistant`` → role
  ``model``; ``tool`` results → ``functionResponse`` parts (``{"output": text}``,
  named from the assistant call they answer) that open the next user turn;
  consecutive same-role turns are merged.
- Schemas go over as full JSON Schema (``parametersJsonSchema``,
  ``responseJsonSchema``), not the OpenAPI subset, so OpenAI schemas keep
  ``additionalProperties``, ``$ref`` and ``anyOf``.
- Gemini returns an opaque ``thoughtSignature`` on function calls that must
  come back with them. OpenAI clients only echo the call id, so the signature
  rides in it: ``<id>__thought__<urlsafe signature>`` (``call_id``).
- Image URLs: a sidecar fetching arbitrary URLs is an SSRF risk, so http(s)
  image URLs are refused unless the provider sets ``allow_image_urls``; then
  ``llmproxy/fetch.py`` downloads them (size-capped) before translation and
  the adapter only ever sees data URLs (``image_urls_to_fetch``). ``gs://``
  URIs go to Google as ``fileData``.
- A blocked prompt (``promptFeedback.blockReason``, no candidates) and safety
  finish reasons are ``finish_reason: content_filter``, never an empty
  success. ``MALFORMED_FUNCTION_CALL`` and kin are a 502 (retryable).
- ``user``/``safety_identifier`` are accepted and not sent: Gemini has no
  end-user field. ``parallel_tool_calls: false`` with tools is refused:
  Gemini cannot be told to call one function at a time.
- ``reasoning_effort`` → ``thinkingConfig.thinkingBudget`` (``THINKING_BUDGET``,
  the values of Google's OpenAI-compatibility layer).
- Vertex auth: with ``project`` set, ``api_key``/``api_key_file`` holds an
  OAuth2 access token sent as ``Authorization: Bearer`` (a mounted token file
  that rotates is re-read when the config reloads); without ``project`` the
  key is a Vertex express-mode API key (``x-goog-api-key``, no project path).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from ..config import DeploymentConfig
from ..errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from ..sse import DONE, SSEDecoder, SSEEvent
from . import translate as t
from .base import CallContext, UpstreamRequest, encode_chunks, parse_retry_after
from .openai_shapes import floats_to_base64, requested_encoding

GEMINI_VERSION = "v1beta"
VERTEX_VERSION = "v1"
VERTEX_GLOBAL = "https://aiplatform.googleapis.com"
SIGNATURE_MARK = "__thought__"
THINKING_BUDGET = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576,
                   "xhigh": 32768, "max": 32768}
_VERSIONED = re.compile(r"/v\d+(?:alpha|beta)?\d*$")
_GS_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
             "gif": "image/gif", "heic": "image/heic", "heif": "image/heif", "pdf": "application/pdf"}
_SUPPORTED = frozenset({
    "model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "top_k", "stop", "tools", "tool_choice", "parallel_tool_calls", "response_format", "n", "seed",
    "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "reasoning_effort",
    "user", "safety_identifier",  # accepted, not sent: Gemini has no end-user field
})
# Candidate.finishReason → OpenAI finish_reason (wire-formats.md §0.2).
FINISH = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
# The model tried to call a function and failed: not an answer, a retryable upstream error.
_FAILED_CALLS = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})
_EMBEDDING_KEYS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


# --------------------------------------------------------------------------- requests


def build_request(dep: DeploymentConfig, body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` body for an OpenAI chat request."""
    t.refuse_unsupported(body, _SUPPORTED, dep.provider.type)
    allow_urls = bool(dep.provider.options.get("allow_image_urls"))
    system, contents = convert_messages(body.get("messages") or [], allow_urls)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": s} for s in system]}
    gen = _generation_config(body)
    if gen:
        out["generationConfig"] = gen
    _tools(body, out)
    return out


def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    gen: dict[str, Any] = {}
    if (v := t.number(body, "temperature", 0, 2)) is not None:
        gen["temperature"] = v
    if (v := t.number(body, "top_p", 0, 1)) is not None:
        gen["topP"] = v
    if (k := t.integer(body, "top_k")) is not None:
        gen["topK"] = k
    if (k := t.max_tokens(body)) is not None:
        gen["maxOutputTokens"] = k
    if stop := t.stop_sequences(body):
        gen["stopSequences"] = stop
    if (k := t.integer(body, "n")) is not None and k != 1:
        gen["candidateCount"] = k
    if (k := t.integer(body, "seed", lo=-(2**63))) is not None:
        gen["seed"] = k
    if (v := t.number(body, "presence_penalty", -2, 2)) is not None:
        gen["presencePenalty"] = v
    if (v := t.number(body, "frequency_penalty", -2, 2)) is not None:
        gen["frequencyPenalty"] = v
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise InvalidRequest("'logprobs' must be a boolean", param="logprobs")
    top = t.integer(body, "top_logprobs", lo=0)
    if top is not None and top > 0 and not logprobs:
        raise InvalidRequest("'top_logprobs' requires 'logprobs': true", param="top_logprobs")
    if logprobs:
        gen["responseLogprobs"] = True
        if top:
            gen["logprobs"] = top
    fmt, schema = t.response_format(body)
    if fmt != "text":
        gen["responseMimeType"] = "application/json"
        if schema is not None:
            gen["responseJsonSchema"] = schema
    effort = t.reasoning_effort(body)
    if effort is not None:
        gen["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGET[effort]}
    return gen


_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}


def _tools(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    fns = t.functions(body)
    mode, offered, forced = t.tool_choice(body, fns)
    if not offered:
        return
    if not t.parallel_tool_calls(body) and mode != "none":
        raise InvalidRequest("'parallel_tool_calls': false cannot be honoured by Gemini, which may call "
                             "several functions at once", param="parallel_tool_calls")
    decls = []
    for fn in offered:
        decl: dict[str, Any] = {"name": fn.name}
        if fn.description:
            decl["description"] = fn.description
        if fn.parameters is not None:
            decl["parametersJsonSchema"] = fn.parameters
        decls.append(decl)
    out["tools"] = [{"functionDeclarations": decls}]
    if mode != "auto":
        config: dict[str, Any] = {"mode": _MODES[mode]}
        if forced:
            config["allowedFunctionNames"] = [forced]
        out["toolConfig"] = {"functionCallingConfig": config}


def convert_messages(messages: list[Any], allow_urls: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """OpenAI messages → (system texts, alternating user/model contents)."""
    names = t.tool_result_names(messages)
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    role: str | None = None
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        param = f"messages[{i}]"
        kind = m.get("role")
        new_results: list[dict[str, Any]] = []
        new_parts: list[dict[str, Any]] = []
        if kind in ("system", "developer"):
            system += t.texts_only(m.get("content"), f"{param}.content", str(kind))
            continue
        if kind == "user":
            turn_role = "user"
            new_parts = _user_parts(m.get("content"), f"{param}.content", allow_urls)
        elif kind == "assistant":
            turn_role = "model"
            new_parts = _model_parts(m, param)
        elif kind == "tool":
            turn_role = "user"
            call_id = t.tool_call_id(m, param)
            name = names.get(call_id)
            if name is None:
                raise InvalidRequest(
                    f"{param}.tool_call_id {call_id!r} answers no tool call of an earlier assistant message",
                    param=f"{param}.tool_call_id",
                )
            output = "".join(t.texts_only(m.get("content"), f"{param}.content", "tool"))
            new_results = [{"functionResponse": {"name": name, "response": {"output": output}}}]
        else:
            raise InvalidRequest(f"{param}.role {kind!r} cannot be translated for Gemini", param=f"{param}.role")
        if not new_results and not new_parts:
            continue
        if turn_role != role:
            if role is not None:
                contents.append({"role": role, "parts": results + parts})
            role, results, parts = turn_role, [], []
        results += new_results
        parts += new_parts
    if role is not None:
        contents.append({"role": role, "parts": results + parts})
    if not contents:
        raise InvalidRequest("messages must include a user or assistant message with content", param="messages")
    return system, contents


def _user_parts(content: Any, param: str, allow_urls: bool) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(t.content_parts(content, param)):
        p = f"{param}[{j}]"
        kind = part["type"]
        if kind == "text":
            if part["text"]:
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            parts.append(_image(t.image_url(part, p), p, allow_urls))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            fmt = audio.get("format") if isinstance(audio, dict) else None
            data = audio.get("data") if isinstance(audio, dict) else None
            if fmt not in ("wav", "mp3") or not isinstance(data, str):
                raise InvalidRequest(f"{p}.input_audio needs base64 'data' and a 'format' of wav or mp3", param=p)
            parts.append({"inlineData": {"mimeType": f"audio/{fmt}", "data": data}})
        elif kind == "file":
            f = part.get("file")
            data_url = f.get("file_data") if isinstance(f, dict) else None
            if not isinstance(data_url, str):
                raise InvalidRequest(f"{p}: only files sent inline as file_data (a data URL) can be translated",
                                     param=p)
            mime, data = t.parse_data_url(data_url, f"{p}.file.file_data")
            parts.append({"inlineData": {"mimeType": mime, "data": data}})
        else:
            raise InvalidRequest(f"{p}: content parts of type {kind!r} cannot be sent to Gemini", param=p)
    return parts


def _image(url: str, param: str, allow_urls: bool) -> dict[str, Any]:
    if url.startswith("data:"):
        mime, data = t.parse_data_url(url, f"{param}.image_url.url")
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith("gs://"):
        name = url.rsplit("/", 1)[-1]
        kind = _GS_TYPES.get(name.rsplit(".", 1)[-1].lower()) if "." in name else None
        if kind is None:
            raise InvalidRequest(f"{param}: cannot tell the type of {url!r} from its extension", param=param)
        return {"fileData": {"mimeType": kind, "fileUri": url}}
    if t.is_http_url(url):
        if not allow_urls:
            raise InvalidRequest(
                "image URLs are not allowed for this provider; send a data URL or set allow_image_urls",
                param=f"{param}.image_url.url",
            )
        raise InvalidRequest(f"{param}: the image URL was not fetched before translation", param=param)
    raise InvalidRequest(f"{param}.image_url.url must be a data URL, an http(s) URL or a gs:// URI",
                         param=param)


def _model_parts(m: Mapping[str, Any], param: str) -> list[dict[str, Any]]:
    for key in ("audio", "function_call"):
        if m.get(key) is not None:
            raise InvalidRequest(f"{param}.{key} cannot be translated for Gemini", param=f"{param}.{key}")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(t.content_parts(m.get("content"), f"{param}.content")):
        kind = part["type"]
        if kind not in ("text", "refusal"):
            raise InvalidRequest(f"{param}.content[{j}]: assistant messages may only contain text",
                                 param=f"{param}.content[{j}]")
        if part[kind]:
            parts.append({"text": part[kind]})
    refusal = m.get("refusal")
    if isinstance(refusal, str) and refusal and not parts:
        parts.append({"text": refusal})
    calls = m.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise InvalidRequest(f"{param}.tool_calls must be an array", param=f"{param}.tool_calls")
        for j, call in enumerate(calls):
            call_id, name, args = t.tool_arguments(call, f"{param}.tool_calls[{j}]")
            fc: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
            if (signature := thought_signature(call_id)) is not None:
                fc["thoughtSignature"] = signature
            parts.append(fc)
    return parts


def call_id(base: str, signature: Any) -> str:
    """An OpenAI tool-call id that carries Gemini's thought signature back to it."""
    if not isinstance(signature, str) or not signature:
        return base
    return base + SIGNATURE_MARK + signature.replace("+", "-").replace("/", "_").rstrip("=")


def thought_signature(call_id: str) -> str | None:
    _, mark, sig = call_id.partition(SIGNATURE_MARK)
    if not mark or not sig:
        return None
    sig = sig.replace("-", "+").replace("_", "/")
    return sig + "=" * (-len(sig) % 4)


# --------------------------------------------------------------------------- URLs


def model_url(dep: DeploymentConfig, method: str) -> str:
    """``…/{models/x | projects/p/locations/l/publishers/google/models/x}:{method}``."""
    p = dep.provider
    model = dep.model
    if p.type == "vertex":
        location = p.options.get("location") or "global"
        base = p.base_url
        if base == VERTEX_GLOBAL and location != "global":
            base = (f"https://aiplatform.{location}.rep.googleapis.com" if location in ("us", "eu")
                    else f"https://{location}-aiplatform.googleapis.com")
        if not _VERSIONED.search(base):
            base = f"{base}/{p.options.get('api_version') or VERTEX_VERSION}"
        if model.startswith("projects/"):
            path = model
        else:
            if model.startswith("publishers/"):
                resource = model
            elif "/" in model:
                publisher, _, name = model.partition("/")
                resource = f"publishers/{publisher}/models/{name}"
            else:
                resource = f"publishers/google/models/{model}"
            project = p.options.get("project")
            path = f"projects/{project}/locations/{location}/{resource}" if project else resource
    else:
        base = p.base_url
        if not _VERSIONED.search(base):
            base = f"{base}/{p.options.get('api_version') or GEMINI_VERSION}"
        path = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    return f"{base}/{quote(path, safe='/@')}:{method}"


def request_headers(dep: DeploymentConfig, accept: str = "application/json") -> dict[str, str]:
    p = dep.provider
    headers = {"Content-Type": "application/json", "Accept": accept}
    if p.api_key:
        if p.type == "vertex" and p.options.get("project"):
            headers["Authorization"] = f"Bearer {p.api_key}"
        else:
            headers["x-goog-api-key"] = p.api_key
    if quota := p.options.get("quota_project"):
        headers["x-goog-user-project"] = quota
    headers.update(p.headers)
    return headers


# --------------------------------------------------------------------------- answers


def finish_reason(reason: Any, has_tool_calls: bool, message: Any = None) -> str:
    if reason in _FAILED_CALLS:
        detail = f": {message}" if isinstance(message, str) and message else ""
        raise UpstreamStatusError(f"gemini finished with {reason}{detail}", status=502, code=str(reason).lower())
    out = FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if has_tool_calls and out == "stop" else out


def openai_usage(um: Any) -> dict[str, Any] | None:
    """usageMetadata → OpenAI; thoughts count as completion (reasoning) tokens."""
    if not isinstance(um, dict):
        return None
    prompt = _count(um, "promptTokenCount") + _count(um, "toolUsePromptTokenCount")
    thoughts = _count(um, "thoughtsTokenCount")
    completion = _count(um, "candidatesTokenCount") + thoughts
    return t.usage(prompt, completion, cached=_count(um, "cachedContentTokenCount"),
                   reasoning=thoughts if "thoughtsTokenCount" in um else None)


def _count(d: Mapping[str, Any], key: str) -> int:
    value = d.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def logprobs(result: Any) -> dict[str, Any] | None:
    """``logprobsResult`` → OpenAI ``choice.logprobs``."""
    if not isinstance(result, dict):
        return None
    chosen = result.get("chosenCandidates") or []
    tops = result.get("topCandidates") or []
    content = []
    for i, c in enumerate(chosen):
        top = tops[i].get("candidates") if i < len(tops) and isinstance(tops[i], dict) else None
        entry = _logprob(c)
        entry["top_logprobs"] = [_logprob(x) for x in top or []]
        content.append(entry)
    return {"content": content, "refusal": None}


def _logprob(c: Any) -> dict[str, Any]:
    token = str(c.get("token", "")) if isinstance(c, dict) else ""
    lp = c.get("logProbability", 0.0) if isinstance(c, dict) else 0.0
    return {"token": token, "logprob": float(lp), "bytes": list(token.encode())}


def _id_base(doc: Mapping[str, Any], ctx: CallContext) -> str:
    return t.safe_id(str(doc.get("responseId") or ctx.request_id or "gemini"))


def _parts(cand: Mapping[str, Any], base: str, index: int, first: int) -> tuple[str, str, list[dict[str, Any]]]:
    """(text, reasoning text, OpenAI tool calls) of one candidate's parts."""
    content = cand.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        fc = part.get("functionCall")
        if isinstance(fc, dict):
            k = first + len(calls)
            cid = call_id(str(fc.get("id") or f"call_{base}_{index}_{k}"), part.get("thoughtSignature"))
            calls.append(t.tool_call(cid, str(fc.get("name")), orjson.dumps(fc.get("args") or {}).decode()))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") is True else texts).append(part["text"])
        # inlineData, executableCode, codeExecutionResult: nothing in OpenAI chat carries them.
    return "".join(texts), "".join(thoughts), calls


def _blocked(doc: Mapping[str, Any]) -> str | None:
    fb = doc.get("promptFeedback")
    reason = fb.get("blockReason") if isinstance(fb, dict) else None
    if not reason:
        return None
    assert isinstance(fb, dict)
    return str(fb.get("blockReasonMessage") or f"the prompt was blocked by Gemini ({reason})")


def completion_from_response(doc: Mapping[str, Any], ctx: CallContext, model: str) -> dict[str, Any]:
    if isinstance(doc.get("error"), dict):
        raise google_error(502, {}, orjson.dumps(doc))
    base = _id_base(doc, ctx)
    choices = []
    candidates = doc.get("candidates")
    for pos, cand in enumerate(candidates if isinstance(candidates, list) else ()):
        index = cand.get("index", pos) if isinstance(cand.get("index", pos), int) else pos
        text, thoughts, calls = _parts(cand, base, index, 0)
        choices.append({
            "index": index,
            "message": t.message(text if text or not calls else None, calls, thoughts or None),
            "logprobs": logprobs(cand.get("logprobsResult")),
            "finish_reason": finish_reason(cand.get("finishReason"), bool(calls), cand.get("finishMessage")),
        })
    if not choices:
        refusal = _blocked(doc)
        if refusal is None:
            raise UpstreamProtocolError("gemini answered 200 without candidates or a block reason")
        msg = t.message(None, [])
        msg["refusal"] = refusal
        choices.append({"index": 0, "message": msg, "logprobs": None, "finish_reason": "content_filter"})
    return t.completion(str(doc.get("responseId") or f"chatcmpl-{ctx.request_id}"), ctx.created,
                        str(doc.get("modelVersion") or model), choices, openai_usage(doc.get("usageMetadata")))


class _Candidate:
    __slots__ = ("started", "tools", "finished")

    def __init__(self) -> None:
        self.started = False
        self.tools = 0
        self.finished = False


class GeminiStream:
    """``streamGenerateContent?alt=sse`` events → OpenAI chunks as they arrive.

    Each event is a whole ``GenerateContentResponse`` carrying new parts;
    function calls arrive whole and are relayed as one tool-call delta with
    the complete arguments, indexed per candidate in arrival order. Gemini
    has no end-of-stream event: the stream is complete when every candidate
    seen has a ``finishReason`` (or the prompt was blocked), and ``finish()``
    (at connection close) then sends the usage chunk and ``[DONE]``.
    """

    __slots__ = ("_decoder", "_ctx", "_model", "_chunks", "_base", "_candidates", "_blocked", "_usage", "usage")

    def __init__(self, ctx: CallContext, model: str) -> None:
        self._decoder = SSEDecoder()
        self._ctx = ctx
        self._model = model
        self._chunks: t.Chunks | None = None
        self._base = ""
        self._candidates: dict[int, _Candidate] = {}
        self._blocked = False
        self._usage: Any = None  # the latest usageMetadata (cumulative); translated once, at the end
        self.usage: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        events = self._decoder.feed(data)
        return self._translate(events) if events else b""

    def finish(self) -> bytes:
        out = self._translate(self._decoder.finish()) if self._decoder.pending else b""
        cands = self._candidates.values()
        if not self._blocked and (not cands or not all(c.finished for c in cands)):
            raise UpstreamProtocolError("gemini stream ended before a finishReason")
        assert self._chunks is not None
        usage = self.usage = openai_usage(self._usage)
        if self._ctx.include_usage and usage is not None:
            out += encode_chunks([self._chunks.usage(usage)])
        return out + DONE

    def _translate(self, events: list[SSEEvent]) -> bytes:
        out: list[dict[str, Any]] = []
        for event in events:
            try:
                doc = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise UpstreamProtocolError("gemini stream sent an event that is not JSON") from None
            if isinstance(doc, list) and len(doc) == 1:
                doc = doc[0]  # Vertex wraps some stream errors in an array
            if not isinstance(doc, dict):
                raise UpstreamProtocolError("gemini stream sent an event that is not a JSON object")
            self._response(doc, out)
        return encode_chunks(out) if out else b""

    def _response(self, doc: dict[str, Any], out: list[dict[str, Any]]) -> None:
        if isinstance(doc.get("error"), dict):
            err = doc["error"]
            code = err.get("code") if isinstance(err.get("code"), int) else 502
            raise google_error(code, {}, orjson.dumps(doc))
        ch = self._chunks
        if ch is None:
            ctx = self._ctx
            ch = self._chunks = t.Chunks(str(doc.get("responseId") or f"chatcmpl-{ctx.request_id}"),
                                         ctx.created, str(doc.get("modelVersion") or self._model),
                                         ctx.include_usage)
            self._base = _id_base(doc, ctx)
        if "usageMetadata" in doc:
            self._usage = doc["usageMetadata"]
        candidates = doc.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            refusal = _blocked(doc)
            if refusal is not None and not self._blocked:
                self._blocked = True
                out.append(ch.delta({"role": "assistant", "content": None, "refusal": refusal}))
                out.append(ch.delta({}, finish="content_filter"))
            return
        for pos, cand in enumerate(candidates):
            if not isinstance(cand, dict):
                continue
            index = cand.get("index", pos) if isinstance(cand.get("index", pos), int) else pos
            st = self._candidates.get(index)
            if st is None:
                st = self._candidates[index] = _Candidate()
            text, thoughts, calls = _parts(cand, self._base, index, st.tools)
            delta: dict[str, Any] = {}
            if not st.started:
                st.started = True
                delta = {"role": "assistant", "content": text}
            elif text:
                delta["content"] = text
            if thoughts:
                delta["reasoning_content"] = thoughts
            if calls:
                delta["tool_calls"] = [{"index": st.tools + k, **c} for k, c in enumerate(calls)]
                st.tools += len(calls)
            lp = logprobs(cand.get("logprobsResult"))
            if delta or lp is not None:
                out.append(ch.delta(delta, index, logprobs=lp))
            reason = cand.get("finishReason")
            if reason and not st.finished:
                st.finished = True
                out.append(ch.delta({}, index, finish=finish_reason(reason, st.tools > 0, cand.get("finishMessage"))))


def google_error(status: int, headers: Mapping[str, str], data: bytes) -> UpstreamStatusError:
    """``{"error": {code, message, status, details}}`` (or Vertex's ``[{...}]``) → our error."""
    message = f"google returned HTTP {status}"
    gstatus: str | None = None
    retry = parse_retry_after(headers)
    try:
        doc = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        doc = None
        text = data[:300].decode("utf-8", "replace").strip()
        if text:
            message = f"{message}: {text}"
    if isinstance(doc, list) and doc:
        doc = doc[0]
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or message)
        gstatus = err.get("status") if isinstance(err.get("status"), str) else None
        for detail in err.get("details") or ():
            delay = detail.get("retryDelay") if isinstance(detail, dict) else None
            if retry is None and isinstance(delay, str) and delay.endswith("s"):
                try:
                    retry = max(float(delay[:-1]), 0.0)
                except ValueError:
                    pass
    return UpstreamStatusError(message, status=status, code=gstatus, retry_after=retry)


# --------------------------------------------------------------------------- embeddings


def embedding_inputs(body: Mapping[str, Any]) -> list[str]:
    for key, value in body.items():
        if key not in _EMBEDDING_KEYS and value is not None:
            raise InvalidRequest(f"'{key}' is not supported for Gemini embeddings", param=key)
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(s, str) for s in texts):
        raise InvalidRequest("Gemini embeds text: 'input' must be a string or an array of strings "
                             "(token arrays cannot be translated)", param="input")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    return texts


def embeddings_body(dep: DeploymentConfig, body: Mapping[str, Any]) -> dict[str, Any]:
    texts = embedding_inputs(body)
    dims = t.integer(body, "dimensions")
    if dep.provider.type == "vertex":
        out: dict[str, Any] = {"instances": [{"content": s} for s in texts]}
        if dims is not None:
            out["parameters"] = {"outputDimensionality": dims}
        return out
    model = dep.model if dep.model.startswith(("models/", "tunedModels/")) else f"models/{dep.model}"
    requests = []
    for s in texts:
        r: dict[str, Any] = {"model": model, "content": {"parts": [{"text": s}]}}
        if dims is not None:
            r["outputDimensionality"] = dims
        requests.append(r)
    return {"requests": requests}


def embeddings_from_response(doc: Mapping[str, Any], model: str, fmt: str = "float") -> dict[str, Any]:
    """``batchEmbedContents`` or Vertex ``predict`` answer → OpenAI ``list`` of embeddings.

    ``fmt`` is the client's ``encoding_format`` when the call context carries
    it (``openai_shapes.requested_encoding``); floats otherwise, which the
    openai SDKs accept even when they asked for base64 by default.
    """
    vectors: list[Any] = []
    tokens = 0
    if isinstance(doc.get("predictions"), list):
        for pred in doc["predictions"]:
            emb = pred.get("embeddings") if isinstance(pred, dict) else None
            vectors.append(emb.get("values") if isinstance(emb, dict) else None)
            stats = emb.get("statistics") if isinstance(emb, dict) else None
            if isinstance(stats, dict):
                tokens += _count(stats, "token_count")
    elif isinstance(doc.get("embeddings"), list):
        vectors = [e.get("values") if isinstance(e, dict) else None for e in doc["embeddings"]]
        tokens = _count(doc.get("usageMetadata") or {}, "promptTokenCount")
    if not vectors or not all(isinstance(v, list) for v in vectors):
        raise UpstreamProtocolError("gemini answered 200 without embedding values")
    data = [{"object": "embedding", "index": i, "embedding": floats_to_base64(v) if fmt == "base64" else v}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# --------------------------------------------------------------------------- adapter


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(f"gemini answered 200 with a body that is not JSON ({what})") from None
    if not isinstance(doc, dict):
        raise UpstreamProtocolError(f"gemini answered 200 with JSON that is not an object ({what})")
    return doc


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
        """The http(s) image URLs ``llmproxy/fetch.py`` must inline before ``chat_request``."""
        if not dep.provider.options.get("allow_image_urls"):
            return []
        urls: list[str] = []
        for m in body.get("messages") or ():
            content = m.get("content") if isinstance(m, dict) and m.get("role") == "user" else None
            for part in content if isinstance(content, list) else ():
                if isinstance(part, dict) and part.get("type") == "image_url":
                    ref = part.get("image_url")
                    url = ref.get("url") if isinstance(ref, dict) else ref
                    if isinstance(url, str) and t.is_http_url(url) and url not in urls:
                        urls.append(url)
        return urls

    def chat_response(
        self, dep: DeploymentConfig, data: bytes, ctx: CallContext
    ) -> tuple[bytes, dict[str, Any] | None]:
        out = completion_from_response(_load(data, "chat completion"), ctx, dep.model)
        return orjson.dumps(out), out.get("usage")

    def chat_stream(self, dep: DeploymentConfig, ctx: CallContext) -> GeminiStream:
        return GeminiStream(ctx, dep.model)

    def embeddings_request(self, dep: DeploymentConfig, body: Mapping[str, Any]) -> UpstreamRequest:
        method = "predict" if dep.provider.type == "vertex" else "batchEmbedContents"
        return UpstreamRequest(
            url=model_url(dep, method),
            headers=request_headers(dep),
            body=orjson.dumps(embeddings_body(dep, body)),
        )

    def embeddings_response(
        self, dep: DeploymentConfig, data: bytes, ctx: CallContext
    ) -> tuple[bytes, dict[str, Any] | None]:
        out = embeddings_from_response(_load(data, "embeddings"), dep.model, requested_encoding(ctx))
        return orjson.dumps(out), out["usage"]

    def error_from_response(
        self, status: int, headers: Mapping[str, str], data: bytes
    ) -> UpstreamStatusError:
        return google_error(status, headers, data)

"""An OpenAI chat request → a Gemini ``GenerateContent`` request (Gemini API and Vertex).

Wire format checked against googleapis/python-genai (``types.py``:
``GenerationConfig.response_json_schema``, ``FunctionDeclaration.parameters_json_schema``,
``Part.thought_signature``, ``FunctionResponse.response``) and the shared
reference (wire-formats.md §4). Pure: no I/O, inputs never mutated.

- ``system``/``developer`` text → ``systemInstruction``; ``assistant`` → role
  ``model``; ``tool`` results → ``functionResponse`` parts (``{"output": text}``,
  named from the assistant call they answer) that open the next user turn;
  consecutive same-role turns are merged (``translate.alternate``).
- Schemas go over as full JSON Schema (``parametersJsonSchema``,
  ``responseJsonSchema``), not the OpenAPI subset, so OpenAI schemas keep
  ``additionalProperties``, ``$ref`` and ``anyOf``.
- Gemini returns an opaque ``thoughtSignature`` on function calls that must
  come back with them. OpenAI clients only echo the call id, so the signature
  rides in it: ``<id>__thought__<urlsafe signature>`` (``call_id``).
- Image URLs: a sidecar fetching arbitrary URLs is an SSRF risk, so http(s)
  image URLs are refused unless the provider sets ``allow_image_urls``; then
  ``llmproxy/upstream/images.py`` downloads them (size-capped) before translation and
  this module only ever sees data URLs. ``gs://`` URIs go to Google as ``fileData``.
- ``user``/``safety_identifier`` are accepted and not sent: Gemini has no
  end-user field. ``parallel_tool_calls: false`` with tools is refused:
  Gemini cannot be told to call one function at a time.
- ``reasoning_effort`` → ``thinkingConfig.thinkingBudget`` (``THINKING_BUDGET``,
  the values of Google's OpenAI-compatibility layer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config.tree import DeploymentConfig
from ..errors import InvalidRequest
from . import translate as t

SIGNATURE_MARK = "__thought__"
THINKING_BUDGET = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576,
                   "xhigh": 32768, "max": 32768}
_GS_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
             "gif": "image/gif", "heic": "image/heic", "heif": "image/heif", "pdf": "application/pdf"}
_SUPPORTED = frozenset({
    "model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "top_k", "stop", "tools", "tool_choice", "parallel_tool_calls", "response_format", "n", "seed",
    "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "reasoning_effort",
})
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}


def build_request(dep: DeploymentConfig, body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` body for an OpenAI chat request."""
    t.refuse_unsupported(body, _SUPPORTED, dep.provider.type)
    allow_urls = t.allows_image_urls(dep)
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
    if (k := t.seed(body)) is not None:
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
    fmt, json_schema = t.response_format(body)
    if fmt != "text":
        gen["responseMimeType"] = "application/json"
        if json_schema is not None:
            gen["responseJsonSchema"] = json_schema["schema"]
    effort = t.reasoning_effort(body)
    if effort is not None:
        gen["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGET[effort]}
    return gen


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
    turns: list[t.TurnEntry] = []
    for i, m in enumerate(messages):
        param = f"messages[{i}]"
        kind = m.get("role")
        if kind in ("system", "developer"):
            system += t.texts_only(m.get("content"), f"{param}.content", str(kind))
        elif kind == "user":
            turns.append(("user", _user_parts(m.get("content"), f"{param}.content", allow_urls), ()))
        elif kind == "assistant":
            turns.append(("model", _model_parts(m, param), ()))
        elif kind == "tool":
            call_id = t.tool_call_id(m, param)
            name = names.get(call_id)
            if name is None:
                raise InvalidRequest(
                    f"{param}.tool_call_id {call_id!r} answers no tool call of an earlier assistant message",
                    param=f"{param}.tool_call_id",
                )
            output = "".join(t.texts_only(m.get("content"), f"{param}.content", "tool"))
            turns.append(("user", (), ({"functionResponse": {"name": name, "response": {"output": output}}},)))
        else:
            raise t.unknown_role(m, param, "Gemini")
    return system, t.alternate(turns, "parts")


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
            mime, data, _ = t.file_data(part, p)
            parts.append({"inlineData": {"mimeType": mime, "data": data}})
        else:
            raise t.unknown_part(part, p, "Gemini")
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
            raise t.refuse_image_link(param, "Gemini")
        raise InvalidRequest(f"{param}: the image URL was not fetched before translation", param=param)
    raise InvalidRequest(f"{param}.image_url.url must be a data URL, an http(s) URL or a gs:// URI",
                         param=param)


def _model_parts(m: Mapping[str, Any], param: str) -> list[dict[str, Any]]:
    texts, calls = t.assistant_message(m, param, "Gemini")
    parts: list[dict[str, Any]] = [{"text": part["text"]} for part in texts] if texts else []
    for cid, name, args in calls:
        fc: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
        if (signature := thought_signature(cid)) is not None:
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

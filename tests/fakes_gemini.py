"""A fake Gemini API / Vertex AI for integration tests.

``GeminiFake`` is a ``FakeUpstream`` responder that rejects what the real API
rejects (unknown fields, snake_case where camelCase belongs, a ``system``
role, empty parts, a function response without its call or with a different
count of parts than the call turn, ``allowedFunctionNames`` outside mode ANY,
a stream request without ``alt=sse``) with Google's error body, and answers
with the scripted ``GenerateContentResponse``s: unary, or streamed as SSE
``data:`` events (``\\r\\n`` framed, no end marker) for ``alt=sse``.
"""

from __future__ import annotations

from typing import Any

import orjson

from .fakes import Reply, Seen

REQUEST_KEYS = {"contents", "systemInstruction", "generationConfig", "tools", "toolConfig",
                "safetySettings", "cachedContent", "labels"}
GENERATION_KEYS = {
    "temperature", "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount", "seed",
    "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs", "responseMimeType",
    "responseSchema", "responseJsonSchema", "thinkingConfig", "responseModalities",
}
PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
             "codeExecutionResult"}
PART_KEYS = PART_DATA | {"thought", "thoughtSignature", "videoMetadata"}
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def error(code: int, message: str, details: list[Any] | None = None) -> Reply:
    err: dict[str, Any] = {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}
    if details is not None:
        err["details"] = details
    return Reply(status=code, json={"error": err})


def response(parts: list[dict[str, Any]] | None, finish: str | None = "STOP", *, index: int = 0,
             prompt: int = 8, candidates: int = 5, cached: int | None = None, thoughts: int | None = None,
             response_id: str = "resp-1", model: str = "gemini-2.5-flash") -> dict[str, Any]:
    cand: dict[str, Any] = {"index": index}
    if parts is not None:
        cand["content"] = {"role": "model", "parts": parts}
    if finish:
        cand["finishReason"] = finish
    usage: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                             "totalTokenCount": prompt + candidates + (thoughts or 0)}
    if cached is not None:
        usage["cachedContentTokenCount"] = cached
    if thoughts is not None:
        usage["thoughtsTokenCount"] = thoughts
    return {"candidates": [cand], "usageMetadata": usage, "modelVersion": model, "responseId": response_id}


def sse_events(responses: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + orjson.dumps(r) + b"\r\n\r\n" for r in responses]


def check(seen: Seen, *, vertex: bool = False) -> Reply | None:
    headers = {k.lower(): v for k, v in seen.headers.items()}
    if vertex:
        if not headers.get("authorization", "").startswith("Bearer ") and not headers.get("x-goog-api-key"):
            return error(401, "Request is missing required authentication credential.")
    elif not headers.get("x-goog-api-key"):
        return error(403, "Method doesn't allow unregistered callers (callers without established identity).")
    path = seen.path
    if path.endswith(":streamGenerateContent"):
        if seen.query.get("alt") != "sse":
            return error(400, "this fake only streams with alt=sse")
    elif not path.endswith(":generateContent"):
        return None if path.endswith((":batchEmbedContents", ":predict")) else error(404, f"not found: {path}")
    problem = check_body(seen.json)
    return error(400, problem) if problem else None


def _unknown(name: str, where: str) -> str:
    return f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': Cannot find field.'


def check_body(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    for key in body:
        if key not in REQUEST_KEYS:
            return _unknown(key, "")
    for key in body.get("generationConfig") or {}:
        if key not in GENERATION_KEYS:
            return _unknown(key, "generation_config")
    gen = body.get("generationConfig") or {}
    if ("responseJsonSchema" in gen or "responseSchema" in gen) and not gen.get("responseMimeType"):
        return "responseMimeType must be set when a response schema is given"
    declared = set()
    for tool in body.get("tools") or []:
        for key in tool:
            if key not in ("functionDeclarations", "googleSearch", "codeExecution"):
                return _unknown(key, "tools[0]")
        for d in tool.get("functionDeclarations") or []:
            for key in d:
                if key not in ("name", "description", "parameters", "parametersJsonSchema", "response",
                               "responseJsonSchema", "behavior"):
                    return _unknown(key, "tools[0].function_declarations[0]")
            declared.add(d.get("name"))
    fcc = (body.get("toolConfig") or {}).get("functionCallingConfig")
    if fcc is not None:
        if fcc.get("mode") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
            return f"Invalid value at 'tool_config.function_calling_config.mode' ({fcc.get('mode')!r})"
        if fcc.get("allowedFunctionNames") and fcc["mode"] not in ("ANY", "VALIDATED"):
            return "allowed_function_names may only be set when mode is ANY"
        for name in fcc.get("allowedFunctionNames") or []:
            if name not in declared:
                return f"allowed_function_names: {name!r} is not a declared function"
    system = body.get("systemInstruction")
    if system is not None and not (isinstance(system, dict) and system.get("parts")):
        return "system_instruction: parts must not be empty"
    return _check_contents(body.get("contents"))


def _check_contents(contents: Any) -> str | None:
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    previous_calls: list[str] = []
    for i, c in enumerate(contents):
        role = c.get("role")
        if role not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}].role = {role!r})"
        parts = c.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        calls, responses = [], []
        for j, p in enumerate(parts):
            for key in p:
                if key not in PART_KEYS:
                    return _unknown(key, f"contents[{i}].parts[{j}]")
            data = [k for k in p if k in PART_DATA]
            if len(data) != 1:
                return f"contents[{i}].parts[{j}]: a part must hold exactly one kind of data"
            if "text" in p and not isinstance(p["text"], str):
                return f"contents[{i}].parts[{j}].text must be a string"
            if "inlineData" in p and set(p["inlineData"]) != {"mimeType", "data"}:
                return f"contents[{i}].parts[{j}].inline_data needs mimeType and data"
            if "functionCall" in p:
                if role != "model":
                    return f"contents[{i}]: function calls belong to the model role"
                if not isinstance(p["functionCall"].get("args", {}), dict):
                    return f"contents[{i}].parts[{j}].function_call.args must be an object"
                calls.append(p["functionCall"]["name"])
            if "functionResponse" in p:
                fr = p["functionResponse"]
                if role != "user":
                    return f"contents[{i}]: function responses belong to the user role"
                if not isinstance(fr.get("response"), dict):
                    return f"contents[{i}].parts[{j}].function_response.response must be an object"
                if fr.get("name") not in previous_calls:
                    return (f"contents[{i}].parts[{j}]: function response {fr.get('name')!r} has no matching "
                            "function call in the previous turn")
                responses.append(fr["name"])
        if previous_calls and len(responses) != len(previous_calls):
            return ("Please ensure that the number of function response parts is equal to the number of "
                    "function call parts of the function call turn.")
        previous_calls = calls
    return None


class GeminiFake:
    """Responder: validate like the API, answer with the scripted responses in turn.

    A script entry is one ``GenerateContentResponse`` (unary) or a list of them
    (a stream; a unary request then gets their merge, ``merge``).
    """

    def __init__(self, *script: Any, vertex: bool = False) -> None:
        self.script = list(script) or [[response([{"text": "Hello!"}])]]
        self.vertex = vertex
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, seen: Seen) -> Reply:
        problem = check(seen, vertex=self.vertex)
        if problem is not None:
            return problem
        self.bodies.append(seen.json)
        entry = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(entry, Reply):
            return entry
        chunks = entry if isinstance(entry, list) else [entry]
        if seen.path.endswith(":streamGenerateContent"):
            return Reply(stream=sse_events(chunks))
        return Reply(json=merge(chunks))


def merge(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The unary response equal to a stream of chunks (parts concatenated per candidate)."""
    out = dict(chunks[-1])
    by_index: dict[int, dict[str, Any]] = {}
    for ch in chunks:
        for cand in ch.get("candidates") or []:
            acc = by_index.setdefault(cand.get("index", 0), {"index": cand.get("index", 0),
                                                              "content": {"role": "model", "parts": []}})
            acc["content"]["parts"] += (cand.get("content") or {}).get("parts") or []
            if cand.get("finishReason"):
                acc["finishReason"] = cand["finishReason"]
    if by_index:
        out["candidates"] = [by_index[k] for k in sorted(by_index)]
    return out

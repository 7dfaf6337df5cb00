"""Gemini ``GenerateContentResponse`` answers, streamed or whole, → OpenAI; Google errors.

Wire format checked against googleapis/python-genai (``types.py``:
``GenerateContentResponseUsageMetadata``, ``Candidate.finish_reason``,
``LogprobsResult``) and the shared reference (wire-formats.md §0.2, §4).
Pure: no I/O, inputs never mutated.

- A blocked prompt (``promptFeedback.blockReason``, no candidates) and safety
  finish reasons are ``finish_reason: content_filter``, never an empty
  success. ``MALFORMED_FUNCTION_CALL`` and kin are a 502 (retryable).
- Function calls get ids that carry their ``thoughtSignature``
  (``gemini_request.call_id``), so the signature comes back with the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import UpstreamProtocolError, UpstreamStatusError
from ..sse import DEFAULT_MAX_EVENT, DONE, SSEDecoder, SSEEvent
from . import answers as a
from . import translate as t
from .base import CallContext, encode_chunks, error_body, parse_retry_after
from .gemini_request import call_id

# Candidate.finishReason → OpenAI finish_reason (wire-formats.md §0.2).
FINISH = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
# The model tried to call a function and failed: not an answer, a retryable upstream error.
_FAILED_CALLS = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})


def finish_reason(reason: Any, has_tool_calls: bool, message: Any = None) -> str:
    if reason in _FAILED_CALLS:
        detail = f": {message}" if isinstance(message, str) and message else ""
        raise UpstreamStatusError(f"gemini finished with {reason}{detail}", status=502, code=str(reason).lower())
    return a.finish_reason(FINISH, reason, has_tool_calls)


def openai_usage(um: Any) -> dict[str, Any] | None:
    """usageMetadata → OpenAI; thoughts count as completion (reasoning) tokens."""
    if not isinstance(um, dict):
        return None
    prompt = a.count(um, "promptTokenCount") + a.count(um, "toolUsePromptTokenCount")
    thoughts = a.count(um, "thoughtsTokenCount")
    completion = a.count(um, "candidatesTokenCount") + thoughts
    return a.usage(prompt, completion, cached=a.count(um, "cachedContentTokenCount"),
                   reasoning=thoughts if "thoughtsTokenCount" in um else None)


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
            calls.append(a.tool_call(cid, str(fc.get("name")), fc.get("args") or {}))
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
        choices.append(a.choice(
            a.message(text if text or not calls else None, calls, thoughts or None),
            finish_reason(cand.get("finishReason"), bool(calls), cand.get("finishMessage")),
            index, logprobs(cand.get("logprobsResult")),
        ))
    if not choices:
        refusal = _blocked(doc)
        if refusal is None:
            raise UpstreamProtocolError("gemini answered 200 without candidates or a block reason")
        msg = a.message(None, [])
        msg["refusal"] = refusal
        choices.append(a.choice(msg, "content_filter"))
    return a.completion(str(doc.get("responseId") or f"chatcmpl-{ctx.request_id}"), ctx.created,
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

    def __init__(self, ctx: CallContext, model: str, max_event_size: int = DEFAULT_MAX_EVENT) -> None:
        self._decoder = SSEDecoder(max_event_size)
        self._ctx = ctx
        self._model = model
        self._chunks: a.Chunks | None = None
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
        self.usage = openai_usage(self._usage)
        return out + encode_chunks(self._chunks.usage_if_asked(self.usage)) + DONE

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
            ch = self._chunks = a.Chunks(str(doc.get("responseId") or f"chatcmpl-{ctx.request_id}"),
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
                out.append(ch.finish("content_filter"))
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
    doc, message = error_body(status, data, "google")
    gstatus: str | None = None
    retry = parse_retry_after(headers)
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

"""Round-trip property test for the translating adapters (Anthropic, Gemini).

For OpenAI requests generated with ``random.Random(seed)``:

1. translate to the provider's request, which the provider fakes must accept
   (``fakes_anthropic.check`` / ``fakes_gemini.check_body``);
2. a fake provider reads that request back into a provider-neutral summary
   (system text, turns of text / images / calls / results, tools, tool
   choice, sampling and output parameters) and answers with that summary as
   its text, plus tool calls, usage and a stop reason of its own choosing,
   once as a whole response and once as a stream cut at random places;
3. translate the answer back to OpenAI: the summary must equal the one
   computed straight from the OpenAI request (no supported field lost), the
   calls, finish reason and usage must be what the provider said, and the
   stream must add up to the whole response;
4. send the answer's tool calls back as history with their results: the next
   request must carry them (and Gemini's thought signatures) intact.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import orjson
import pytest

from llmproxy.config.tree import parse_config
from llmproxy.providers import adapter_for
from llmproxy.providers.anthropic import JSON_INSTRUCTION
from llmproxy.providers.base import CallContext

from .fakes import Seen
from .fakes_anthropic import accumulate, check, message, parse_sse, stream_events
from .fakes_gemini import check_body

SEEDS = range(150)
CFG = parse_config("""
providers:
  a: {type: anthropic, api_key: k}
  g: {type: gemini, api_key: k}
models:
  claude: {deployments: [{provider: a, model: claude-x, max_tokens: 777}]}
  gem: {deployments: [{provider: g, model: gemini-x}]}
""", env={})
DEPS = {"anthropic": CFG.models["claude"].deployments[0], "gemini": CFG.models["gem"].deployments[0]}
WORDS = ["hello", "wörld", "Paris", '"quoted"', "new\nline", "emoji 🙂", "tab\t", "{json}", "<b>", "100%",
         "back\\slash", "日本", "END?"]
IMAGES = ["image/png", "image/jpeg", "image/gif", "image/webp"]


# --------------------------------------------------------------------------- generating requests


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))


def schema(rng: random.Random) -> dict[str, Any]:
    props = {f"p{i}": {"type": rng.choice(["string", "integer", "boolean"])} for i in range(rng.randint(0, 3))}
    out: dict[str, Any] = {"type": "object", "properties": props}
    if props and rng.random() < 0.5:
        out["required"] = sorted(props)[:1]
    if rng.random() < 0.3:
        out["additionalProperties"] = False
    return out


def arguments(rng: random.Random, sch: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, prop in ((sch or {}).get("properties") or {}).items():
        out[key] = {"string": text(rng), "integer": rng.randint(-5, 10**6), "boolean": rng.random() < 0.5}[prop["type"]]
    return out


def content(rng: random.Random, images: bool) -> Any:
    if rng.random() < 0.4:
        return text(rng)
    parts: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 3)):
        if images and rng.random() < 0.3:
            mime = rng.choice(IMAGES)
            data = rng.choice(["iVBORw0KGgo=", "R0lGODlhAQABAAAAACw=", "/9j/4AAQSkZJRg=="])
            parts.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}})
        else:
            parts.append({"type": "text", "text": text(rng)})
    return parts


def gen_request(rng: random.Random, provider: str) -> dict[str, Any]:
    tools = [{"type": "function", "function": {"name": f"fn_{i}", "parameters": schema(rng)}}
             for i in range(rng.choice([0, 0, 1, 2, 3]))]
    for tool in tools:
        if rng.random() < 0.5:
            tool["function"]["description"] = text(rng)
    messages: list[dict[str, Any]] = []
    for _ in range(rng.randint(0, 2)):
        messages.append({"role": rng.choice(["system", "developer"]),
                         "content": text(rng) if rng.random() < 0.5 else [{"type": "text", "text": text(rng)}]})
    calls = 0
    for _ in range(rng.randint(1, 4)):
        for _ in range(rng.choice([1, 1, 2])):
            messages.append({"role": "user", "content": content(rng, images=True)})
        if tools and rng.random() < 0.6:
            batch = []
            for _ in range(rng.randint(1, 3)):
                fn = rng.choice(tools)["function"]
                call_id = f"call_{calls}" if rng.random() < 0.8 else f"call:{calls}/x"
                calls += 1
                batch.append({"id": call_id, "type": "function", "function": {
                    "name": fn["name"], "arguments": orjson.dumps(arguments(rng, fn["parameters"])).decode()}})
            messages.append({"role": "assistant", "content": text(rng) if rng.random() < 0.4 else None,
                             "tool_calls": batch})
            results = [{"role": "tool", "tool_call_id": c["id"], "content": text(rng)} for c in batch]
            rng.shuffle(results)
            messages += results
        elif rng.random() < 0.6:
            messages.append({"role": "assistant", "content": content(rng, images=False)})
    if messages[-1]["role"] == "assistant":
        messages.append({"role": "user", "content": text(rng)})
    req: dict[str, Any] = {"model": "m", "messages": messages}
    if tools:
        req["tools"] = tools
        choice = rng.choice([None, "auto", "none", "required", "named"])
        if choice == "named":
            req["tool_choice"] = {"type": "function", "function": {"name": rng.choice(tools)["function"]["name"]}}
        elif choice is not None:
            req["tool_choice"] = choice
        if provider == "anthropic" and rng.random() < 0.3:
            req["parallel_tool_calls"] = False
    if rng.random() < 0.6:
        req["temperature"] = round(rng.uniform(0, 2), 2)
    if rng.random() < 0.4:
        req["top_p"] = round(rng.uniform(0, 1), 2)
    if rng.random() < 0.3:
        req["top_k"] = rng.randint(1, 100)
    if rng.random() < 0.5:
        req[rng.choice(["max_tokens", "max_completion_tokens"])] = rng.randint(1, 4096)
    if rng.random() < 0.4:
        req["stop"] = rng.choice(["END", ["END", "STOP"], ["###"]])
    if rng.random() < 0.4:
        req["response_format"] = rng.choice([
            {"type": "json_object"}, {"type": "text"},
            {"type": "json_schema", "json_schema": {"name": "out", "strict": True, "schema": schema(rng)}}])
    if rng.random() < 0.3:
        req["user"] = f"user-{rng.randint(1, 99)}"
    if provider == "gemini":
        if rng.random() < 0.3:
            req["seed"] = rng.randint(0, 2**31)
        if rng.random() < 0.2:
            req["n"] = 2
        if rng.random() < 0.2:
            req["presence_penalty"] = round(rng.uniform(-2, 2), 2)
        if rng.random() < 0.2:
            req["frequency_penalty"] = round(rng.uniform(-2, 2), 2)
    return req


# --------------------------------------------------------------------------- the neutral summary


def expected(req: dict[str, Any], provider: str, dep_max_tokens: int | None = None) -> dict[str, Any]:
    """The summary computed straight from the OpenAI request."""
    names = {c["id"]: c["function"]["name"] for m in req["messages"] for c in m.get("tool_calls") or []}
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def texts(c: Any) -> list[str]:
        return [c] if isinstance(c, str) else [p["text"] for p in c if p["type"] == "text"]

    for m in req["messages"]:
        role = m["role"]
        results: list[Any] = []
        items: list[Any] = []
        if role in ("system", "developer"):
            system += [s for s in texts(m["content"]) if s]
            continue
        if role == "tool":
            results = [["result", names[m["tool_call_id"]], "".join(texts(m["content"]))]]
            role = "user"
        else:
            parts = [{"type": "text", "text": m["content"]}] if isinstance(m.get("content"), str) else m.get("content") or []
            for p in parts:
                if p["type"] == "text" and p["text"]:
                    items.append(["text", p["text"]])
                elif p["type"] == "image_url":
                    head, data = p["image_url"]["url"].split(",", 1)
                    items.append(["image", head[5:].split(";")[0], data])
            for c in m.get("tool_calls") or []:
                items.append(["call", c["function"]["name"], orjson.loads(c["function"]["arguments"])])
        if not results and not items:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["results"] += results
            turns[-1]["items"] += items
        else:
            turns.append({"role": role, "results": results, "items": items})
    out: dict[str, Any] = {"system": system,
                           "turns": [{"role": t["role"], "items": t["results"] + t["items"]} for t in turns]}
    tools = req.get("tools") or []
    out["tools"] = [[t["function"]["name"], t["function"].get("description"),
                     t["function"]["parameters"]] for t in tools]
    tc = req.get("tool_choice")
    if not tools:
        out["tool_choice"] = "none"
    elif isinstance(tc, dict):
        out["tool_choice"] = ["function", tc["function"]["name"]]
    else:
        out["tool_choice"] = tc or "auto"
    out["parallel"] = req.get("parallel_tool_calls", True) or out["tool_choice"] == "none"
    rf = (req.get("response_format") or {}).get("type")
    out["json"] = ("object" if rf == "json_object" else
                   req["response_format"]["json_schema"]["schema"] if rf == "json_schema" else None)
    temperature = req.get("temperature")
    if provider == "anthropic" and temperature is not None:
        temperature = min(temperature, 1.0)
    mt = req.get("max_completion_tokens", req.get("max_tokens"))
    stop = req.get("stop")
    out["params"] = {
        "temperature": temperature, "top_p": req.get("top_p"), "top_k": req.get("top_k"),
        "max_tokens": mt if mt is not None else dep_max_tokens,
        "stop": [stop] if isinstance(stop, str) else stop,
        "seed": req.get("seed"), "n": req.get("n", 1),
        "presence_penalty": req.get("presence_penalty"), "frequency_penalty": req.get("frequency_penalty"),
        # Gemini has no end-user field: accepted, documented, not sent.
        "user": req.get("user") if provider == "anthropic" else None,
    }
    return out


def summary_of_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    """What the fake Anthropic API understood from its request."""
    system = [b["text"] for b in body.get("system") or []]
    json: Any = None
    if system and system[-1] == JSON_INSTRUCTION:
        system.pop()
        json = "object"
    fmt = (body.get("output_config") or {}).get("format")
    if fmt:
        json = fmt["schema"]
    uses: dict[str, str] = {}
    turns = []
    for m in body["messages"]:
        items: list[Any] = []
        for b in m["content"]:
            if b["type"] == "text":
                items.append(["text", b["text"]])
            elif b["type"] == "image":
                items.append(["image", b["source"]["media_type"], b["source"]["data"]])
            elif b["type"] == "tool_use":
                uses[b["id"]] = b["name"]
                items.append(["call", b["name"], b["input"]])
            elif b["type"] == "tool_result":
                c = b.get("content", "")
                items.append(["result", uses[b["tool_use_id"]],
                              c if isinstance(c, str) else "".join(x["text"] for x in c)])
        turns.append({"role": m["role"], "items": items})
    tools = [[t["name"], t.get("description"), t["input_schema"]] for t in body.get("tools") or []]
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice["type"]
    tool_choice = ("none" if not tools or kind == "none" else "required" if kind == "any"
                   else ["function", choice["name"]] if kind == "tool" else "auto")
    return {
        "system": system, "turns": turns, "tools": tools, "tool_choice": tool_choice,
        "parallel": not choice.get("disable_parallel_tool_use", False), "json": json,
        "params": {"temperature": body.get("temperature"), "top_p": body.get("top_p"), "top_k": body.get("top_k"),
                   "max_tokens": body["max_tokens"], "stop": body.get("stop_sequences"), "seed": None, "n": 1,
                   "presence_penalty": None, "frequency_penalty": None,
                   "user": (body.get("metadata") or {}).get("user_id")},
    }


def summary_of_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """What the fake Gemini API understood from its request."""
    system = [p["text"] for p in (body.get("systemInstruction") or {}).get("parts") or []]
    turns = []
    for c in body["contents"]:
        items: list[Any] = []
        for p in c["parts"]:
            if "text" in p:
                items.append(["text", p["text"]])
            elif "inlineData" in p:
                items.append(["image", p["inlineData"]["mimeType"], p["inlineData"]["data"]])
            elif "functionCall" in p:
                items.append(["call", p["functionCall"]["name"], p["functionCall"]["args"]])
            elif "functionResponse" in p:
                items.append(["result", p["functionResponse"]["name"], p["functionResponse"]["response"]["output"]])
        turns.append({"role": "assistant" if c["role"] == "model" else "user", "items": items})
    decls = [d for t in body.get("tools") or [] for d in t["functionDeclarations"]]
    tools = [[d["name"], d.get("description"), d.get("parametersJsonSchema")] for d in decls]
    fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {"mode": "AUTO"}
    tool_choice = ("none" if not tools or fcc["mode"] == "NONE" else
                   ["function", fcc["allowedFunctionNames"][0]] if fcc.get("allowedFunctionNames") else
                   "required" if fcc["mode"] == "ANY" else "auto")
    gen = body.get("generationConfig") or {}
    json = gen.get("responseJsonSchema") or ("object" if gen.get("responseMimeType") == "application/json" else None)
    return {
        "system": system, "turns": turns, "tools": tools, "tool_choice": tool_choice, "parallel": True,
        "json": json,
        "params": {"temperature": gen.get("temperature"), "top_p": gen.get("topP"), "top_k": gen.get("topK"),
                   "max_tokens": gen.get("maxOutputTokens"), "stop": gen.get("stopSequences"),
                   "seed": gen.get("seed"), "n": gen.get("candidateCount", 1),
                   "presence_penalty": gen.get("presencePenalty"), "frequency_penalty": gen.get("frequencyPenalty"),
                   "user": None},
    }


# --------------------------------------------------------------------------- fake answers


def answer_calls(rng: random.Random, req: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    tools = req.get("tools") or []
    if not tools or rng.random() < 0.4:
        return []
    picked = [rng.choice(tools)["function"] for _ in range(rng.randint(1, 3))]
    return [(fn["name"], arguments(rng, fn["parameters"])) for fn in picked]


def split(rng: random.Random, s: str, max_pieces: int = 4) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(s)), min(max_pieces - 1, len(s) - 1))) if len(s) > 1 else []
    return [s[a:b] for a, b in zip([0, *cuts], [*cuts, len(s)])]


def chop(rng: random.Random, data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.choice([1, 2, 5, 17, 64, 300, 4096])
        out.append(data[i:i + n])
        i += n
    return out


def run_stream(tr: Any, pieces: list[bytes]) -> dict[str, Any]:
    out = b"".join(tr.feed(p) for p in pieces) + tr.finish()
    chunks, done = parse_sse(out)
    assert done
    return accumulate(chunks)


def check_answer(resp: dict[str, Any], streamed: dict[str, Any], summary: dict[str, Any],
                 calls: list[tuple[str, dict[str, Any]]], finish: str, usage: dict[str, Any], n: int) -> None:
    assert len(resp["choices"]) == n and len(streamed["choices"]) == n
    assert resp["usage"] == usage and streamed["usage"] == usage
    for choice in resp["choices"]:
        msg = choice["message"]
        assert orjson.loads(msg["content"]) == summary  # nothing the provider supports was lost
        got = [(c["function"]["name"], orjson.loads(c["function"]["arguments"])) for c in msg.get("tool_calls") or []]
        assert got == calls
        assert choice["finish_reason"] == finish
        s = streamed["choices"][choice["index"]]
        assert s["content"] == msg["content"] and s["finish_reason"] == finish
        assert [(c["id"], c["name"], c["arguments"]) for c in s["tool_calls"]] == [
            (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in msg.get("tool_calls") or []]


def follow_up(req: dict[str, Any], resp: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    msg = resp["choices"][0]["message"]
    messages = [*req["messages"], {"role": "assistant", "content": msg["content"], "tool_calls": msg.get("tool_calls")}
                if msg.get("tool_calls") else {"role": "assistant", "content": msg["content"]}]
    for call in msg.get("tool_calls") or []:
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": text(rng)})
    messages.append({"role": "user", "content": text(rng)})
    return {**req, "messages": messages}


# --------------------------------------------------------------------------- the properties

FINISH_ANTHROPIC = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop", "refusal": "content_filter"}
FINISH_GEMINI = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}


@pytest.mark.parametrize("seed", SEEDS)
def test_anthropic_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    dep = DEPS["anthropic"]
    adapter = adapter_for("anthropic")
    req = gen_request(rng, "anthropic")
    provider_req = orjson.loads(adapter.chat_request(dep, req, stream=False).body)
    problem = check(Seen("POST", "/v1/messages", {}, {"x-api-key": "k", "anthropic-version": "v"},
                         orjson.dumps(provider_req)))
    assert problem is None, problem.json
    summary = summary_of_anthropic(provider_req)
    assert summary == expected(req, "anthropic", dep.max_tokens)

    calls = answer_calls(rng, req)
    reason = "tool_use" if calls else rng.choice(list(FINISH_ANTHROPIC))
    echo = orjson.dumps(summary).decode()
    blocks: list[dict[str, Any]] = [{"type": "text", "text": piece} for piece in split(rng, echo, 3)]
    blocks += [{"type": "tool_use", "id": f"toolu_{seed}_{k}", "name": name, "input": args}
               for k, (name, args) in enumerate(calls)]
    fresh, read, written, out = rng.randint(1, 5000), rng.randint(0, 5000), rng.randint(0, 500), rng.randint(1, 900)
    msg = message(blocks, reason, input_tokens=fresh, cache_read=read, cache_write=written, output_tokens=out)
    ctx = CallContext(public_model="claude", request_id=f"r{seed}", created=1, include_usage=True)
    resp = orjson.loads(adapter.chat_response(dep, orjson.dumps(msg), ctx)[0])
    events = stream_events(msg, piece=rng.randint(1, 30), pings=rng.random() < 0.7)
    for _ in range(rng.randint(0, 3)):
        events.insert(rng.randint(1, len(events) - 1), b'event: ping\ndata: {"type": "ping"}\n\n')
    streamed = run_stream(adapter.chat_stream(dep, ctx), chop(rng, b"".join(events)))
    usage = {"prompt_tokens": fresh + read + written, "completion_tokens": out,
             "total_tokens": fresh + read + written + out, "prompt_tokens_details": {"cached_tokens": read}}
    check_answer(resp, streamed, summary, calls, "tool_calls" if calls else FINISH_ANTHROPIC[reason], usage, 1)
    assert [c["id"] for c in resp["choices"][0]["message"].get("tool_calls") or []] == [
        f"toolu_{seed}_{k}" for k in range(len(calls))]

    nxt = follow_up(req, resp, rng)
    nxt_body = orjson.loads(adapter.chat_request(dep, nxt, stream=True).body)
    assert check(Seen("POST", "/v1/messages", {}, {"x-api-key": "k", "anthropic-version": "v"},
                      orjson.dumps(nxt_body))) is None
    assert summary_of_anthropic(nxt_body) == expected(nxt, "anthropic", dep.max_tokens)


@pytest.mark.parametrize("seed", SEEDS)
def test_gemini_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    dep = DEPS["gemini"]
    adapter = adapter_for("gemini")
    req = gen_request(rng, "gemini")
    provider_req = orjson.loads(adapter.chat_request(dep, req, stream=False).body)
    assert check_body(provider_req) is None, check_body(provider_req)
    summary = summary_of_gemini(provider_req)
    assert summary == expected(req, "gemini")

    n = req.get("n", 1)
    calls = answer_calls(rng, req)
    reason = "STOP" if calls else rng.choice(list(FINISH_GEMINI))
    # Thought signatures are opaque base64 (any length, '+' and '/' included).
    signature = rng.choice([None, base64.b64encode(rng.randbytes(rng.randint(1, 90))).decode()])
    echo = orjson.dumps(summary).decode()
    prompt, cand, cached, thoughts = rng.randint(1, 9000), rng.randint(1, 900), rng.randint(0, 900), rng.randint(0, 300)
    usage_md = {"promptTokenCount": prompt, "candidatesTokenCount": cand, "cachedContentTokenCount": cached,
                "thoughtsTokenCount": thoughts, "totalTokenCount": prompt + cand + thoughts}
    # The stream: text in pieces, calls whole, finishReason and final usage last.
    chunks: list[dict[str, Any]] = []
    for i in range(n):
        pieces: list[dict[str, Any]] = [{"text": p} for p in split(rng, echo, 5)]
        for k, (name, args) in enumerate(calls):
            part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
            if k == 0 and signature:
                part["thoughtSignature"] = signature
            pieces.append(part)
        for p in pieces:
            chunks.append({"candidates": [{"index": i, "content": {"role": "model", "parts": [p]}}],
                           "usageMetadata": {"promptTokenCount": prompt}, "responseId": f"resp{seed}",
                           "modelVersion": "gemini-x-001"})
        chunks.append({"candidates": [{"index": i, "content": {"role": "model", "parts": [{"text": ""}]},
                                       "finishReason": reason}],
                       "usageMetadata": usage_md, "responseId": f"resp{seed}", "modelVersion": "gemini-x-001"})
    whole = {"candidates": [{"index": i, "finishReason": reason, "content": {"role": "model", "parts": [
        p for ch in chunks for c in ch["candidates"] if c["index"] == i for p in c["content"]["parts"] if p != {"text": ""}]}}
        for i in range(n)], "usageMetadata": usage_md, "responseId": f"resp{seed}", "modelVersion": "gemini-x-001"}
    ctx = CallContext(public_model="gem", request_id=f"r{seed}", created=1, include_usage=True)
    resp = orjson.loads(adapter.chat_response(dep, orjson.dumps(whole), ctx)[0])
    data = b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)
    streamed = run_stream(adapter.chat_stream(dep, ctx), chop(rng, data))
    usage = {"prompt_tokens": prompt, "completion_tokens": cand + thoughts, "total_tokens": prompt + cand + thoughts,
             "prompt_tokens_details": {"cached_tokens": cached}, "completion_tokens_details": {"reasoning_tokens": thoughts}}
    check_answer(resp, streamed, summary, calls, "tool_calls" if calls else FINISH_GEMINI[reason], usage, n)

    nxt = follow_up(req, resp, rng)
    nxt_body = orjson.loads(adapter.chat_request(dep, nxt, stream=True).body)
    assert check_body(nxt_body) is None, check_body(nxt_body)
    assert summary_of_gemini(nxt_body) == expected(nxt, "gemini")
    if calls:
        model_turn = next(c for c in reversed(nxt_body["contents"]) if c["role"] == "model")
        first_call = next(p for p in model_turn["parts"] if "functionCall" in p)
        assert first_call.get("thoughtSignature") == signature

"""How long the translating adapters and ingress formats take: µs per call, no network.

Run by hand (not a pytest test):

    .venv/bin/python tests/bench/bench_translate.py [--quick]

Table 1, chat completions in, for Anthropic and Gemini:
- one typical chat request (system prompt, a six-message conversation with a
  parallel tool call and its results, two tools, sampling parameters) →
  provider request bytes (``chat_request``, JSON encoding included);
- one typical unary answer → OpenAI ``chat.completion`` bytes;
- one 50-event stream (text deltas, a ping, a tool call, usage, the end)
  fed one network read per event → OpenAI SSE bytes (``chat_stream`` +
  ``feed`` × 50 + ``finish``); the per-event figure is that divided by 50.

Table 2, the ingress formats translated (the modules and objects the request
path uses: ``request/messages.py``'s ``MessagesIngress`` with ``Chained``,
``server/handlers/responses.py``'s ``ResponsesWriter`` with its stacked
translator):
- **messages → openai**: an Anthropic-SDK-shaped Messages request (system,
  five turns with two ``tool_use`` blocks and their ``tool_result`` blocks,
  two tools, ``tool_choice``, ``stop_sequences``) → ``to_chat`` → an openai
  deployment's request bytes; an OpenAI answer → a Messages ``message``
  (``MessagesIngress.answer``); a 50-chunk OpenAI chat stream (role, text,
  a tool call in pieces, finish, usage, ``[DONE]``), one read per chunk →
  the Anthropic event stream (``MessagesIngress.stream``: the openai relay
  chained into ``MessagesStream``);
- **responses → anthropic**: a Responses request (``instructions``, input
  items: messages, two ``function_call`` and their ``function_call_output``,
  two function tools, ``max_output_tokens``) → ``input_items`` +
  ``to_chat`` + the ``ResponsesWriter`` → the anthropic adapter's request
  bytes; an Anthropic answer → chat → a Response object, stored as
  ``store`` (default true) asks (``ResponsesWriter.answer``); table 1's
  50-event Anthropic stream → chat chunks → the Responses event sequence
  (``ResponsesWriter.stream``).

Table 3, the passthrough routes side by side (the chat one is today's):
- **chat → openai**: ``chat_request`` (``with_model``), ``chat_response``,
  ``OpenAIStreamRelay`` over the 50-chunk OpenAI stream;
- **messages → anthropic**: ``passthrough_request``,
  ``passthrough_answer``, ``AnthropicRelay`` over the 50-event Anthropic
  stream (what ``MessagesIngress`` does for an anthropic deployment);
- **responses → openai**: ``responses_request``, ``responses_answer``,
  ``ResponsesRelay`` over a 50-event native Responses stream (what
  ``ResponsesWriter`` does for ``responses: native``).

The **prep** column (tables 2 and 3) is the handler's own per-request work
before any attempt, on every route of that endpoint, passthrough or not:
none for chat; ``translate`` (``to_chat``) for Messages, whose chat form the
router plans with; ``input_items`` + ``to_chat`` + the writer for Responses.
A request's CPU on a route is prep + request + answer (or stream).

Each figure is the best of several repeats of many iterations
(``time.perf_counter``), so it is the cost on a quiet core, not under load.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llmproxy.config.tree import ResponsesConfig, parse_config  # noqa: E402
from llmproxy.ingress import responses as responses_ingress  # noqa: E402
from llmproxy.providers import adapter_for  # noqa: E402
from llmproxy.providers import anthropic_passthrough  # noqa: E402
from llmproxy.providers import openai as openai_provider  # noqa: E402
from llmproxy.providers.base import CallContext  # noqa: E402
from llmproxy.request.messages import MessagesIngress, translate  # noqa: E402
from llmproxy.server.handlers.responses import ResponsesWriter, _with_ids  # noqa: E402
from llmproxy.server.response_store import MemoryStore, ResponseStore  # noqa: E402

CFG = parse_config("""
providers:
  a: {type: anthropic, api_key: sk-ant}
  g: {type: gemini, api_key: AIza}
  o: {type: openai, api_key: sk-o}
models:
  claude: {deployments: [{provider: a, model: claude-sonnet-4-5, max_tokens: 4096}]}
  gem: {deployments: [{provider: g, model: gemini-2.5-flash}]}
  gpt: {deployments: [{provider: o, model: gpt-4.1-mini}]}
""", env={})
DEP = {"anthropic": CFG.models["claude"].deployments[0], "gemini": CFG.models["gem"].deployments[0],
       "openai": CFG.models["gpt"].deployments[0]}
assert openai_provider.native_responses(DEP["openai"])
CTX = CallContext(public_model="m", request_id="bench-1", created=1700000000, include_usage=True)

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                                      "parameters": {"type": "object", "properties": {
                                          "location": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                                          "required": ["location"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time in a timezone",
                                      "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}}}},
]
REQUEST = {
    "model": "m", "temperature": 0.3, "max_tokens": 800, "tools": TOOLS, "tool_choice": "auto",
    "stream_options": {"include_usage": True},
    "messages": [
        {"role": "system", "content": "You are a concise travel assistant. Answer in two sentences at most."},
        {"role": "user", "content": "I land in Paris tomorrow morning. What's the weather and local time there?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris", "unit": "c"}'}},
            {"id": "call_a2", "type": "function", "function": {"name": "get_time", "arguments": '{"timezone": "Europe/Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_a1", "content": '{"temp": 18, "sky": "light rain"}'},
        {"role": "tool", "tool_call_id": "call_a2", "content": "07:42"},
        {"role": "user", "content": "Thanks. Should I take an umbrella to the Louvre?"},
    ],
}
TEXT = "Yes: light rain is expected around 18°C, so take a compact umbrella; the Louvre queue is outdoors."

ANTHROPIC_ANSWER = orjson.dumps({
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "end_turn",
    "content": [{"type": "text", "text": TEXT}],
    "usage": {"input_tokens": 412, "output_tokens": 31, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 0},
})
GEMINI_ANSWER = orjson.dumps({
    "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": TEXT}]}}],
    "usageMetadata": {"promptTokenCount": 412, "candidatesTokenCount": 31, "totalTokenCount": 443},
    "modelVersion": "gemini-2.5-flash", "responseId": "r1",
})


def _words(n: int) -> list[str]:
    words = (TEXT + " ") * 3
    step = len(words) // n
    return [words[i * step:(i + 1) * step] for i in range(n)]


def anthropic_events() -> list[bytes]:
    def ev(name: str, obj: dict) -> bytes:
        return f"event: {name}\n".encode() + b"data: " + orjson.dumps(obj) + b"\n\n"

    events = [ev("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "usage": {"input_tokens": 412, "output_tokens": 1, "cache_read_input_tokens": 1024}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ev("ping", {"type": "ping"})]
    for w in _words(37):
        events.append(ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": w}}))
    events.append(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(ev("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}}))
    for p in ['', '{"locat', 'ion": "Par', 'is", "unit"', ': "c"}']:
        events.append(ev("content_block_delta", {"type": "content_block_delta", "index": 1,
                                                 "delta": {"type": "input_json_delta", "partial_json": p}}))
    events.append(ev("content_block_stop", {"type": "content_block_stop", "index": 1}))
    events.append(ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                                       "usage": {"output_tokens": 60}}))
    events.append(ev("message_stop", {"type": "message_stop"}))
    assert len(events) == 50, len(events)
    return events


def gemini_events() -> list[bytes]:
    events = []
    for w in _words(48):
        events.append(b"data: " + orjson.dumps({
            "candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": w}]}}],
            "usageMetadata": {"promptTokenCount": 412}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}) + b"\r\n\r\n")
    events.append(b"data: " + orjson.dumps({
        "candidates": [{"index": 0, "content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris", "unit": "c"}}}]}}],
        "modelVersion": "gemini-2.5-flash", "responseId": "r1"}) + b"\r\n\r\n")
    events.append(b"data: " + orjson.dumps({
        "candidates": [{"index": 0, "finishReason": "STOP", "content": {"role": "model", "parts": [{"text": ""}]}}],
        "usageMetadata": {"promptTokenCount": 412, "candidatesTokenCount": 60, "totalTokenCount": 472},
        "modelVersion": "gemini-2.5-flash", "responseId": "r1"}) + b"\r\n\r\n")
    assert len(events) == 50
    return events


# --------------------------------------------------------------------------- ingress payloads

ANTHROPIC_TOOLS = [
    {"name": "get_weather", "description": "Current weather for a city",
     "input_schema": {"type": "object", "properties": {
         "location": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["location"]}},
    {"name": "get_time", "description": "Local time in a timezone",
     "input_schema": {"type": "object", "properties": {"timezone": {"type": "string"}}}},
]
# What anthropic.Anthropic().messages.stream(...) sends: system, five turns
# (two tool_use blocks and their tool_result blocks), two tools.
MESSAGES_REQUEST = {
    "model": "m", "max_tokens": 800, "temperature": 0.3, "stream": True,
    "system": [{"type": "text", "text": "You are a concise travel assistant. Answer in two sentences at most."}],
    "tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "auto"}, "stop_sequences": ["\n\nHuman:"],
    "messages": [
        {"role": "user", "content": "Hi! I'm planning a short trip."},
        {"role": "assistant", "content": [{"type": "text", "text": "Happy to help: where are you going, and when?"}]},
        {"role": "user", "content": [{"type": "text", "text":
                                      "I land in Paris tomorrow morning. What's the weather and local time there?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check both."},
            {"type": "tool_use", "id": "toolu_a1", "name": "get_weather", "input": {"location": "Paris", "unit": "c"}},
            {"type": "tool_use", "id": "toolu_a2", "name": "get_time", "input": {"timezone": "Europe/Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a1", "content": '{"temp": 18, "sky": "light rain"}'},
            {"type": "tool_result", "tool_use_id": "toolu_a2", "content": [{"type": "text", "text": "07:42"}]},
            {"type": "text", "text": "Thanks. Should I take an umbrella to the Louvre?"}]},
    ],
}
RESPONSES_TOOLS = [
    {"type": "function", "name": t["function"]["name"], "description": t["function"]["description"],
     "parameters": t["function"]["parameters"], "strict": False} for t in TOOLS
]
# What openai.OpenAI().responses.stream(...) sends with a function-call round trip.
RESPONSES_REQUEST = {
    "model": "m", "stream": True, "temperature": 0.3, "max_output_tokens": 800,
    "instructions": "You are a concise travel assistant. Answer in two sentences at most.",
    "tools": RESPONSES_TOOLS, "tool_choice": "auto",
    "input": [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "I land in Paris tomorrow morning. What's the weather and local time there?"}]},
        {"type": "function_call", "call_id": "call_a1", "name": "get_weather",
         "arguments": '{"location": "Paris", "unit": "c"}'},
        {"type": "function_call", "call_id": "call_a2", "name": "get_time", "arguments": '{"timezone": "Europe/Paris"}'},
        {"type": "function_call_output", "call_id": "call_a1", "output": '{"temp": 18, "sky": "light rain"}'},
        {"type": "function_call_output", "call_id": "call_a2", "output": "07:42"},
        {"role": "user", "content": "Thanks. Should I take an umbrella to the Louvre?"},
    ],
}
OPENAI_ANSWER = orjson.dumps({
    "id": "chatcmpl-01", "object": "chat.completion", "created": 1700000000, "model": "gpt-4.1-mini-2025-04-14",
    "system_fingerprint": "fp_01",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": TEXT, "refusal": None, "annotations": []}}],
    "usage": {"prompt_tokens": 412, "completion_tokens": 31, "total_tokens": 443,
              "prompt_tokens_details": {"cached_tokens": 256, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
})


def openai_events() -> list[bytes]:
    """50 chunks as OpenAI sends them with include_usage (``"usage":null`` on each), ``[DONE]`` last."""
    head = {"id": "chatcmpl-01", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-4.1-mini-2025-04-14", "system_fingerprint": "fp_01"}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({**head, "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": None}) + b"\n\n"

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": w}) for w in _words(41)]
    events.append(chunk({"tool_calls": [{"index": 0, "id": "call_01", "type": "function",
                                         "function": {"name": "get_weather", "arguments": ""}}]}))
    events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
               for p in ['{"locat', 'ion": "Par', 'is", "unit"', ': "c"}']]
    events.append(chunk({}, "tool_calls"))
    events.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": {
        "prompt_tokens": 412, "completion_tokens": 60, "total_tokens": 472,
        "prompt_tokens_details": {"cached_tokens": 256}}}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    assert len(events) == 50, len(events)
    return events


RESPONSE_ID = "resp_0123456789abcdef"
NATIVE_RESPONSE = {
    "id": RESPONSE_ID, "object": "response", "created_at": 1700000000, "status": "completed", "error": None,
    "incomplete_details": None, "instructions": RESPONSES_REQUEST["instructions"], "max_output_tokens": 800,
    "model": "gpt-4.1-mini-2025-04-14", "parallel_tool_calls": True, "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 0.3,
    "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": RESPONSES_TOOLS, "top_p": 1.0,
    "truncation": "disabled", "user": None, "metadata": {},
    "output": [{"id": "msg_01", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": TEXT, "annotations": [], "logprobs": []}]}],
    "usage": {"input_tokens": 412, "input_tokens_details": {"cached_tokens": 256}, "output_tokens": 31,
              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 443},
}
NATIVE_ANSWER = orjson.dumps(NATIVE_RESPONSE)


def responses_events() -> list[bytes]:
    """50 events of a native Responses stream: a text message, then a function call, then completed."""
    seq = iter(range(1000))

    def ev(etype: str, doc: dict) -> bytes:
        return (f"event: {etype}\n".encode() + b"data: "
                + orjson.dumps({"type": etype, "sequence_number": next(seq), **doc}) + b"\n\n")

    pending = {**NATIVE_RESPONSE, "status": "in_progress", "output": [], "usage": None}
    msg = {"id": "msg_01", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    call = {"id": "fc_01", "type": "function_call", "status": "in_progress", "call_id": "call_01",
            "name": "get_weather", "arguments": ""}
    args = '{"location": "Paris", "unit": "c"}'
    done_msg = {**msg, "status": "completed", "content": [{**part, "text": TEXT}]}
    done_call = {**call, "status": "completed", "arguments": args}
    events = [ev("response.created", {"response": pending}), ev("response.in_progress", {"response": pending}),
              ev("response.output_item.added", {"output_index": 0, "item": msg}),
              ev("response.content_part.added", {"item_id": "msg_01", "output_index": 0, "content_index": 0,
                                                 "part": part})]
    events += [ev("response.output_text.delta", {"item_id": "msg_01", "output_index": 0, "content_index": 0,
                                                 "delta": w, "logprobs": []}) for w in _words(35)]
    events += [ev("response.output_text.done", {"item_id": "msg_01", "output_index": 0, "content_index": 0,
                                                "text": TEXT, "logprobs": []}),
               ev("response.content_part.done", {"item_id": "msg_01", "output_index": 0, "content_index": 0,
                                                 "part": {**part, "text": TEXT}}),
               ev("response.output_item.done", {"output_index": 0, "item": done_msg}),
               ev("response.output_item.added", {"output_index": 1, "item": call})]
    events += [ev("response.function_call_arguments.delta", {"item_id": "fc_01", "output_index": 1, "delta": p})
               for p in ['{"locat', 'ion": "Par', 'is", "unit"', ': "c"}']]
    events += [ev("response.function_call_arguments.done", {"item_id": "fc_01", "output_index": 1,
                                                            "arguments": args}),
               ev("response.output_item.done", {"output_index": 1, "item": done_call}),
               ev("response.completed", {"response": {**NATIVE_RESPONSE, "output": [done_msg, done_call]}})]
    assert len(events) == 50, len(events)
    return events


def timeit(fn: Callable[[], object], iterations: int, repeats: int) -> float:
    """Best µs per call over ``repeats`` runs of ``iterations`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter() - start) / iterations)
    return best * 1e6


def run_stream(make: Callable[[], object], events: list[bytes]) -> bytes:
    """One stream through a fresh translator, one read per event."""
    tr = make()
    out = b"".join([tr.feed(e) for e in events])  # type: ignore[attr-defined]
    return out + tr.finish()  # type: ignore[attr-defined]


def measure(req: Callable[[], object], resp: Callable[[], object], stream: Callable[[], object],
            n: int, repeats: int) -> tuple[float, float, float]:
    return (timeit(req, n, repeats), timeit(resp, n, repeats), timeit(stream, max(n // 10, 30), repeats))


def messages_prep() -> dict:
    internal, refused = translate(MESSAGES_REQUEST)  # as handlers/messages.py does for every attempt's plan
    assert refused is None and internal is not None
    return internal


def responses_prep(store: ResponseStore) -> ResponsesWriter:
    """What handlers/responses.create_response does per request before routing (no previous_response_id)."""
    body = RESPONSES_REQUEST
    items = responses_ingress.input_items(body)
    chat = responses_ingress.to_chat(body, [], stream=True)
    ids = responses_ingress.Ids("0123456789abcdef0123456789abcdef")
    return ResponsesWriter(body, chat, ids, 1700000000, _with_ids(items, ids), [], store)


def messages_passthrough_prep() -> dict:
    """handlers/messages.py for a model whose every deployment is anthropic (no fallbacks): no chat form."""
    return MESSAGES_REQUEST


def responses_native_prep(store: ResponseStore) -> ResponsesWriter:
    """handlers/responses.py for a model whose every deployment is native (no fallbacks): no chat form."""
    body = RESPONSES_REQUEST
    ids = responses_ingress.Ids("0123456789abcdef0123456789abcdef")
    return ResponsesWriter(body, body, ids, 1700000000, [], [], store)


def main() -> None:
    quick = "--quick" in sys.argv
    n, repeats = (300, 3) if quick else (3000, 7)
    a_events, o_events, r_events = anthropic_events(), openai_events(), responses_events()

    rows = []
    for name, answer, events in (("anthropic", ANTHROPIC_ANSWER, a_events),
                                 ("gemini", GEMINI_ANSWER, gemini_events())):
        adapter = adapter_for(name)
        dep = DEP[name]

        def stream() -> bytes:
            tr = adapter.chat_stream(dep, CTX)
            out = b"".join([tr.feed(e) for e in events])
            return out + tr.finish()

        assert b"[DONE]" in stream()
        req_us = timeit(lambda: adapter.chat_request(dep, REQUEST, stream=True), n, repeats)
        resp_us = timeit(lambda: adapter.chat_response(dep, answer, CTX), n, repeats)
        stream_us = timeit(stream, max(n // 10, 30), repeats)
        rows.append((name, req_us, resp_us, stream_us, stream_us / 50))
    print("chat completions in, translated (µs)")
    print(f"{'provider':<10} {'request':>12} {'answer':>12} {'50-event stream':>17} {'per event':>11}")
    for name, req_us, resp_us, stream_us, per in rows:
        print(f"{name:<10} {req_us:>9.1f} µs {resp_us:>9.1f} µs {stream_us:>14.1f} µs {per:>8.2f} µs")

    openai, anthropic = adapter_for("openai"), adapter_for("anthropic")
    o_dep, a_dep = DEP["openai"], DEP["anthropic"]
    store = MemoryStore(time.monotonic, ResponsesConfig)
    messages_chat = messages_prep()
    messages_ingress = MessagesIngress(MESSAGES_REQUEST, None, None)
    writer = responses_prep(store)
    # Attempt.body_for hands these adapters the body itself (no image inlining here).

    def check(out: bytes, *needles: bytes) -> None:
        for needle in needles:
            assert needle in out, (needle, out[-400:])

    # ---- translated ingress routes
    check(run_stream(lambda: messages_ingress.stream(openai, o_dep, CTX), o_events),
          b"event: message_start", b'"input_json_delta"', b'"stop_reason":"tool_use"', b"event: message_stop")
    check(messages_ingress.answer(openai, o_dep, OPENAI_ANSWER, CTX)[0], b'"type":"message"', b'"end_turn"')
    check(openai.chat_request(o_dep, messages_chat, stream=True).body, b'"gpt-4.1-mini"', b'"tool_calls"')
    check(run_stream(lambda: writer.stream(anthropic, a_dep, CTX), a_events),
          b"event: response.created", b"response.function_call_arguments.delta", b"event: response.completed")
    check(writer.answer(anthropic, a_dep, ANTHROPIC_ANSWER, CTX)[0], b'"object":"response"', b'"output_text"')
    check(anthropic.chat_request(a_dep, writer.chat, stream=True).body, b'"tool_result"', b'"claude-sonnet-4-5"')
    translated = []
    prep = timeit(messages_prep, n, repeats)
    translated.append(("messages → openai", prep, *measure(
        lambda: openai.chat_request(o_dep, messages_chat, stream=True),
        lambda: messages_ingress.answer(openai, o_dep, OPENAI_ANSWER, CTX),
        lambda: run_stream(lambda: messages_ingress.stream(openai, o_dep, CTX), o_events), n, repeats)))
    prep = timeit(lambda: responses_prep(store), n, repeats)
    translated.append(("responses → anthropic", prep, *measure(
        lambda: anthropic.chat_request(a_dep, writer.chat, stream=True),
        lambda: writer.answer(anthropic, a_dep, ANTHROPIC_ANSWER, CTX),
        lambda: run_stream(lambda: writer.stream(anthropic, a_dep, CTX), a_events), n, repeats)))

    # ---- passthrough routes
    check(run_stream(lambda: openai.chat_stream(o_dep, CTX), o_events), b"data: [DONE]")
    check(run_stream(lambda: messages_ingress.stream(anthropic, a_dep, CTX), a_events), b"event: message_stop")
    check(run_stream(lambda: writer.stream(openai, o_dep, CTX), r_events), b"event: response.completed")
    assert isinstance(messages_ingress.stream(anthropic, a_dep, CTX), anthropic_passthrough.AnthropicRelay)
    assert isinstance(writer.stream(openai, o_dep, CTX), openai_provider.ResponsesRelay)
    assert writer.answer(openai, o_dep, NATIVE_ANSWER, CTX)[0] is NATIVE_ANSWER
    passthrough = [("chat → openai", 0.0, *measure(
        lambda: openai.chat_request(o_dep, REQUEST, stream=True),
        lambda: openai.chat_response(o_dep, OPENAI_ANSWER, CTX),
        lambda: run_stream(lambda: openai.chat_stream(o_dep, CTX), o_events), n, repeats))]
    passthrough.append(("messages → anthropic", timeit(messages_passthrough_prep, n, repeats), *measure(
        lambda: anthropic_passthrough.passthrough_request(a_dep, MESSAGES_REQUEST, stream=True, client_betas=None),
        lambda: messages_ingress.answer(anthropic, a_dep, ANTHROPIC_ANSWER, CTX),
        lambda: run_stream(lambda: messages_ingress.stream(anthropic, a_dep, CTX), a_events), n, repeats)))
    passthrough.append(("responses → openai", timeit(lambda: responses_native_prep(store), n, repeats), *measure(
        lambda: openai_provider.responses_request(o_dep, RESPONSES_REQUEST, stream=True),
        lambda: writer.answer(openai, o_dep, NATIVE_ANSWER, CTX),
        lambda: run_stream(lambda: writer.stream(openai, o_dep, CTX), r_events), n, repeats)))

    for title, table in (("ingress formats, translated (µs)", translated),
                         ("passthrough routes (µs; chat → openai is today's fast path)", passthrough)):
        print()
        print(title)
        print(f"{'route':<22} {'prep':>9} {'request':>9} {'answer':>9} {'50-event stream':>16} {'per event':>10}"
              f" {'prep+req+stream':>16}")
        for name, prep_us, req_us, resp_us, stream_us in table:
            print(f"{name:<22} {prep_us:>9.1f} {req_us:>9.1f} {resp_us:>9.1f} {stream_us:>16.1f}"
                  f" {stream_us / 50:>10.2f} {prep_us + req_us + stream_us:>16.1f}")
    print(f"(best of {repeats} × {n} calls, streams × {max(n // 10, 30)}; python {sys.version.split()[0]};"
          " one core, no network)")


if __name__ == "__main__":
    main()

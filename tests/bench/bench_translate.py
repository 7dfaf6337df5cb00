"""How long the translating adapters take: µs per call, no network.

Run by hand (not a pytest test):

    .venv/bin/python tests/bench/bench_translate.py [--quick]

Measures, for Anthropic and Gemini:
- one typical chat request (system prompt, a six-message conversation with a
  parallel tool call and its results, two tools, sampling parameters) →
  provider request bytes (``chat_request``, JSON encoding included);
- one typical unary answer → OpenAI ``chat.completion`` bytes;
- one 50-event stream (text deltas, a ping, a tool call, usage, the end)
  fed one network read per event → OpenAI SSE bytes (``chat_stream`` +
  ``feed`` × 50 + ``finish``); the per-event figure is that divided by 50.

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

from llmproxy.config.tree import parse_config  # noqa: E402
from llmproxy.providers import adapter_for  # noqa: E402
from llmproxy.providers.base import CallContext  # noqa: E402

CFG = parse_config("""
providers:
  a: {type: anthropic, api_key: sk-ant}
  g: {type: gemini, api_key: AIza}
models:
  claude: {deployments: [{provider: a, model: claude-sonnet-4-5, max_tokens: 4096}]}
  gem: {deployments: [{provider: g, model: gemini-2.5-flash}]}
""", env={})
DEP = {"anthropic": CFG.models["claude"].deployments[0], "gemini": CFG.models["gem"].deployments[0]}
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


def timeit(fn: Callable[[], object], iterations: int, repeats: int) -> float:
    """Best µs per call over ``repeats`` runs of ``iterations`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter() - start) / iterations)
    return best * 1e6


def main() -> None:
    quick = "--quick" in sys.argv
    n, repeats = (300, 3) if quick else (3000, 7)
    rows = []
    for name, answer, events in (("anthropic", ANTHROPIC_ANSWER, anthropic_events()),
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
    print(f"{'provider':<10} {'request':>12} {'answer':>12} {'50-event stream':>17} {'per event':>11}")
    for name, req_us, resp_us, stream_us, per in rows:
        print(f"{name:<10} {req_us:>9.1f} µs {resp_us:>9.1f} µs {stream_us:>14.1f} µs {per:>8.2f} µs")
    print(f"(best of {repeats} × {n} calls; python {sys.version.split()[0]}; one core, no network)")


if __name__ == "__main__":
    main()

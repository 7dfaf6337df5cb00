"""POST /v1/responses through the real proxy, driven by the openai SDK's Responses API."""

from __future__ import annotations

import aiohttp
import openai
import orjson
import pytest

from .fakes import (
    Reply,
    openai_completion,
    openai_response,
    openai_stream,
    openai_tool_stream,
    responses_stream,
)
from .fakes_anthropic import AnthropicFake, message

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "strict": True}

def chat_config(url: str, options: str = "") -> str:
    """An OpenAI-compatible server without /responses (``responses: translate``)."""
    return f"""
    providers:
      up: {{type: openai, base_url: '{url}/v1', api_key: sk-upstream-secret, responses: translate{options}}}
    models:
      m:
        deployments: [{{provider: up, model: served-model}}]
        retry: {{retries: 0}}
    """

def native_config(url: str) -> str:
    return f"""
    providers:
      up: {{type: openai, base_url: '{url}/v1', api_key: sk-upstream-secret}}
    models:
      m:
        deployments: [{{provider: up, model: gpt-4o-2024-08-06}}]
        retry: {{retries: 0}}
    """

async def test_text_through_chat_upstream(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("Hello there")))
    proxy = await start_proxy(chat_config(fake.url))
    client = openai_client(proxy)
    raw = await client.responses.with_raw_response.create(
        model="m", instructions="Be brief.", input="Hi", max_output_tokens=50, temperature=0.3,
        metadata={"k": "v"},
    )
    resp = raw.parse()
    assert raw.headers["x-llmproxy-deployment"]
    assert resp.output_text == "Hello there"
    assert resp.id.startswith("resp_") and resp.object == "response" and resp.status == "completed"
    assert resp.output[0].type == "message" and resp.output[0].id.startswith("msg_")
    assert resp.usage.input_tokens == 5 and resp.usage.output_tokens == 2 and resp.usage.total_tokens == 7
    assert resp.usage.input_tokens_details.cached_tokens == 0
    assert resp.metadata == {"k": "v"} and resp.temperature == 0.3
    seen = fake.seen[0]
    assert seen.path == "/v1/chat/completions"
    body = seen.json
    assert body["model"] == "served-model"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert body["max_completion_tokens"] == 50 and body["temperature"] == 0.3
    assert "metadata" not in body and "input" not in body

async def test_stream_with_function_call_assembles(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_tool_stream("Let me check.", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}'])))
    proxy = await start_proxy(chat_config(fake.url))
    client = openai_client(proxy)
    deltas: list[str] = []
    types: list[str] = []
    async with client.responses.stream(model="m", input="Weather in Paris?", tools=[WEATHER]) as stream:
        async for event in stream:
            types.append(event.type)
            if event.type == "response.function_call_arguments.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert deltas == ['{"ci', 'ty": "Pa', 'ris"}']
    assert final.output_text == "Let me check."
    call = final.output[1]
    assert call.type == "function_call" and call.call_id == "call_abc" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "Paris"}
    assert final.usage.input_tokens == 9 and final.usage.output_tokens == 4
    sent = fake.seen[0].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["tools"] == [{"type": "function", "function": {k: WEATHER[k] for k in
                                                               ("name", "description", "parameters", "strict")}}]

async def test_function_call_output_round_trip(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("It is 21C in Paris.")))
    proxy = await start_proxy(chat_config(fake.url))
    client = openai_client(proxy)
    resp = await client.responses.create(model="m", tools=[WEATHER], input=[
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                     {"type": "input_image", "image_url": "https://example.com/a.png",
                                      "detail": "auto"}]},
        {"type": "function_call", "call_id": "call_abc", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_abc", "output": '{"temp":21}'},
    ])
    assert resp.output_text == "It is 21C in Paris."
    assert fake.seen[0].json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url",
                                      "image_url": {"url": "https://example.com/a.png", "detail": "auto"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": '{"temp":21}'},
    ]

async def test_untranslatable_fields_are_refused_by_name(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    proxy = await start_proxy(chat_config(fake.url))
    client = openai_client(proxy)
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="m", input="x", tools=[{"type": "web_search"}])
    assert info.value.body["param"] == "tools[0]" and "built-in" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="m", input="x", background=True)
    assert info.value.body["param"] == "background"
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="m", input="x", extra_body={"future_field": 1})
    assert info.value.body["param"] == "future_field"
    assert fake.seen == []

async def test_length_is_incomplete(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    doc = openai_completion("cut")
    doc["choices"][0]["finish_reason"] = "length"
    fake.script(Reply(json=doc))
    proxy = await start_proxy(chat_config(fake.url))
    resp = await openai_client(proxy).responses.create(model="m", input="x", max_output_tokens=16)
    assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"

async def test_stream_failure_after_first_byte_ends_with_response_failed(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_stream(["Hel", "lo"]), drop_after=2))
    proxy = await start_proxy(chat_config(fake.url))
    async with aiohttp.ClientSession() as s, s.post(proxy.v1 + "/responses",
                                                    json={"model": "m", "input": "x", "stream": True}) as r:
        assert r.status == 200
        raw = await r.read()
    events = [orjson.loads(b.split(b"data: ", 1)[1]) for b in raw.split(b"\n\n") if b.strip()]
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"
    assert events[-1]["response"]["id"] == events[0]["response"]["id"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))

# --------------------------------------------------------------------------- native /responses

async def test_native_passthrough_unary(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    upstream_answer = openai_response("native hi")
    fake.script(Reply(json=upstream_answer))
    proxy = await start_proxy(native_config(fake.url))
    client = openai_client(proxy, api_key="client-secret-key")
    raw = await client.responses.with_raw_response.create(
        model="m", input="Hi", tools=[{"type": "web_search"}], background=False,
        extra_body={"future_field": {"nested": [1, 2.5]}},
    )
    assert orjson.loads(await raw.http_response.aread()) == upstream_answer  # relayed as it came
    assert raw.parse().output_text == "native hi"
    seen = fake.seen[0]
    assert seen.path == "/v1/responses"
    assert seen.headers["Authorization"] == "Bearer sk-upstream-secret"
    assert "client-secret-key" not in repr(seen.headers) and b"client-secret-key" not in seen.body
    body = seen.json
    assert body == {"model": "gpt-4o-2024-08-06", "input": "Hi", "tools": [{"type": "web_search"}],
                    "background": False, "future_field": {"nested": [1, 2.5]}}

async def test_native_passthrough_stream_relayed_byte_for_byte(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    events = responses_stream("native stream")
    fake.script(Reply(stream=events))
    proxy = await start_proxy(native_config(fake.url))
    async with aiohttp.ClientSession() as s, s.post(proxy.v1 + "/responses",
                                                    json={"model": "m", "input": "x", "stream": True}) as r:
        assert r.status == 200 and r.headers["x-llmproxy-deployment"]
        assert await r.read() == b"".join(events)
    fake.script(Reply(stream=events))
    async with openai_client(proxy).responses.stream(model="m", input="x") as stream:
        final = await stream.get_final_response()
    assert final.output_text == "native stream" and final.id == "resp_native1"

async def test_native_cut_stream_ends_with_error_event(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(stream=responses_stream(), drop_after=4))
    proxy = await start_proxy(native_config(fake.url))
    async with aiohttp.ClientSession() as s, s.post(proxy.v1 + "/responses",
                                                    json={"model": "m", "input": "x", "stream": True}) as r:
        raw = await r.read()
    assert raw.endswith(b"\n\n")
    last = raw.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b"event: error\n")
    assert orjson.loads(last.split(b"data: ", 1)[1])["type"] == "error"

async def test_native_upstream_error_keeps_openai_shape(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(status=400, json={"error": {"message": "bad input", "type": "invalid_request_error",
                                                  "param": "input", "code": None}}))
    proxy = await start_proxy(native_config(fake.url))
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).responses.create(model="m", input="x")
    assert info.value.body["param"] == "input"

# --------------------------------------------------------------------------- Anthropic

def anthropic_config(url: str) -> str:
    return f"""
    providers:
      a: {{type: anthropic, base_url: '{url}', api_key: sk-ant-0}}
    models:
      claude:
        deployments: [{{provider: a, model: claude-sonnet-4-5, max_tokens: 1024}}]
        retry: {{retries: 0}}
    """

async def test_anthropic_unary_and_stream_with_tool_use(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    api = AnthropicFake(
        message([{"type": "text", "text": "Hello from Claude"}]),
        message([{"type": "text", "text": "Checking."},
                 {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}],
                stop_reason="tool_use"),
    )
    fake.responder = api
    proxy = await start_proxy(anthropic_config(fake.url))
    client = openai_client(proxy)
    resp = await client.responses.create(model="claude", instructions="Be brief.", input="Hi")
    assert resp.output_text == "Hello from Claude"
    assert resp.usage.input_tokens == 25 and resp.usage.output_tokens == 42
    assert api.bodies[0]["system"] == [{"type": "text", "text": "Be brief."}]
    async with client.responses.stream(model="claude", input="Weather?", tools=[WEATHER]) as stream:
        final = await stream.get_final_response()
    assert final.output_text == "Checking."
    call = final.output[1]
    assert call.type == "function_call" and call.call_id == "toolu_01"
    assert orjson.loads(call.arguments) == {"city": "Paris"}
    assert [o.id for o in final.output] == [final.output[0].id, call.id] and call.id.startswith("fc_")

# --------------------------------------------------------------------------- stored responses

async def test_previous_response_id_carries_the_chain(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_tool_stream("", "get_weather", ['{"city":"Paris"}'])),
                Reply(json=openai_completion("21C in Paris.")),
                Reply(json=openai_completion("You are welcome.")))
    proxy = await start_proxy(chat_config(fake.url))
    client = openai_client(proxy)
    async with client.responses.stream(model="m", instructions="Be brief.", input="Weather?",
                                       tools=[WEATHER]) as stream:
        first = await stream.get_final_response()
    call = first.output[0]
    assert call.type == "function_call"
    second = await client.responses.create(
        model="m", previous_response_id=first.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "21C"}])
    third = await client.responses.create(model="m", previous_response_id=second.id, input="Thanks!",
                                          instructions="Be kind.")
    assert third.output_text == "You are welcome."
    assert fake.seen[1].json["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_abc", "type": "function", "function": {"name": "get_weather",
                                                                "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "21C"},
    ]
    # Earlier instructions are not carried over; the new ones come first (§6.6).
    assert fake.seen[2].json["messages"] == [{"role": "system", "content": "Be kind."},
                                             *fake.seen[1].json["messages"],
                                             {"role": "assistant", "content": "21C in Paris."},
                                             {"role": "user", "content": "Thanks!"}]
    got = await client.responses.retrieve(second.id)
    assert got.output_text == "21C in Paris."
    await client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(second.id)

async def test_unknown_previous_response_id_is_400(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    proxy = await start_proxy(chat_config(fake.url))
    client = openai_client(proxy)
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="m", previous_response_id="resp_nope", input="x")
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"
    # store: false responses cannot be continued either.
    resp = await client.responses.create(model="m", input="x", store=False)
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="m", previous_response_id=resp.id, input="y")
    assert len(fake.seen) == 1

async def test_stored_responses_expire(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    now = [1000.0]
    proxy = await start_proxy(chat_config(fake.url) + "\n    responses: {store_max: 2, store_ttl: 60}",
                              clock=lambda: now[0])
    client = openai_client(proxy)
    a = await client.responses.create(model="m", input="a")
    await client.responses.retrieve(a.id)
    now[0] += 61
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(a.id)
    ids = [(await client.responses.create(model="m", input=str(i))).id for i in range(3)]
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(ids[0])  # store_max 2: the oldest went
    await client.responses.retrieve(ids[2])


# --------------------------------------------------------------------------- a model of both kinds


def mixed_config(native_url: str, translated_url: str) -> str:
    """Translated first (priority 0), the native upstream behind it."""
    return f"""
    providers:
      nat: {{type: openai, base_url: '{native_url}/v1', api_key: sk-native-secret}}
      tr: {{type: openai, base_url: '{translated_url}/v1', api_key: sk-tr-secret, responses: translate}}
    models:
      m:
        deployments:
          - {{provider: tr, model: served-model, priority: 0}}
          - {{provider: nat, model: gpt-4o, priority: 1}}
        retry: {{retries: 1, backoff: 0}}
    """


async def test_mixed_model_unknown_previous_id_goes_to_a_native_upstream(start_proxy, fake_upstream,
                                                                         openai_client):
    native, translated = await fake_upstream(), await fake_upstream()
    native.script(Reply(json=openai_response("from native", rid="resp_next")))
    proxy = await start_proxy(mixed_config(native.url, translated.url))
    client = openai_client(proxy)
    resp = await client.responses.create(model="m", input="and then?", previous_response_id="resp_upstream_own")
    assert resp.output_text == "from native"
    assert translated.seen == []  # the id is not ours: the translated deployment cannot continue it
    sent = native.seen[0].json
    assert sent["previous_response_id"] == "resp_upstream_own" and sent["input"] == "and then?"


async def test_mixed_model_unknown_previous_id_with_no_native_left_is_a_clear_error(start_proxy, fake_upstream,
                                                                                    openai_client):
    translated = await fake_upstream()
    proxy = await start_proxy(chat_config(translated.url))
    client = openai_client(proxy)
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="m", input="x", previous_response_id="resp_nope")
    assert info.value.code == "previous_response_not_found" and translated.seen == []


async def test_mixed_model_our_stored_turn_reaches_a_native_upstream_as_input_items(start_proxy, fake_upstream,
                                                                                   openai_client):
    native, translated = await fake_upstream(), await fake_upstream()
    translated.script(Reply(json=openai_completion("Paris.")),
                      Reply(status=500, json={"error": {"message": "down", "type": "server_error"}}))
    native.script(Reply(json=openai_response("About 2 million.", rid="resp_native2")))
    proxy = await start_proxy(mixed_config(native.url, translated.url))
    client = openai_client(proxy)
    first = await client.responses.create(model="m", input="Capital of France?")
    assert first.output_text == "Paris." and native.seen == []
    second = await client.responses.create(model="m", input="Population?", previous_response_id=first.id)
    assert second.output_text == "About 2 million."
    sent = native.seen[0].json
    assert "previous_response_id" not in sent  # our id means nothing to the upstream
    items = sent["input"]
    assert [i.get("role") for i in items] == ["user", "assistant", "user"]
    assert all("id" not in i for i in items)
    assert items[0]["content"] == "Capital of France?" and items[-1]["content"] == "Population?"
    assert items[1]["content"][0]["text"] == "Paris."

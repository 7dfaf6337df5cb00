"""Every bad-input and upstream-failure path answers with an OpenAI error."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import openai
import orjson
import pytest

from .fakes import Reply, openai_stream


def config(url: str, timeouts: str = "", extra: str = "") -> str:
    return f"""
    providers:
      up:
        type: openai
        base_url: {url}/v1
        api_key: sk-upstream-secret-key-123
        {timeouts}
    models:
      gpt-4o:
        deployments:
          - {{provider: up, model: gpt-4o}}
    {extra}
    """


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=body, headers=headers or {}) as r:
            return r.status, orjson.loads(await r.read())


def assert_openai_error(doc: dict, *, type_: str | None = None) -> dict:
    err = doc["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if type_:
        assert err["type"] == type_
    text = orjson.dumps(doc).decode()
    assert "sk-upstream-secret" not in text and "Traceback" not in text
    return err


@pytest.mark.parametrize(
    "body, param, fragment",
    [
        (b"{not json", None, "not valid JSON"),
        (b"", None, "empty"),
        (b"[1, 2]", None, "JSON object"),
        (orjson.dumps({"messages": [{"role": "user", "content": "x"}]}), "model", "'model' is required"),
        (orjson.dumps({"model": "gpt-4o"}), "messages", "'messages' is required"),
        (orjson.dumps({"model": "gpt-4o", "messages": []}), "messages", "non-empty"),
        (orjson.dumps({"model": "gpt-4o", "messages": ["hi"]}), "messages[0]", "role"),
        (orjson.dumps({**CHAT, "stream": "yes"}), "stream", "boolean"),
    ],
)
async def test_bad_requests_get_400(start_proxy, fake_upstream, body, param, fragment):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url))
    status, doc = await post(proxy.v1 + "/chat/completions", body)
    assert status == 400
    err = assert_openai_error(doc, type_="invalid_request_error")
    assert err["param"] == param
    assert fragment in err["message"]
    assert fake.seen == []


async def test_unknown_model_is_404_and_names_the_models(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url))
    with pytest.raises(openai.NotFoundError) as info:
        await openai_client(proxy).chat.completions.create(
            model="gpt-5-turbo", messages=[{"role": "user", "content": "x"}]
        )
    assert "gpt-5-turbo" in info.value.message and "gpt-4o" in info.value.message
    assert info.value.code == "model_not_found"


async def test_oversized_body_is_413(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, extra="server: {max_body_size: 1KiB}"))
    big = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]})
    status, doc = await post(proxy.v1 + "/chat/completions", big)
    assert status == 413
    assert "1024" in assert_openai_error(doc)["message"]

    async def chunked():  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.v1 + "/chat/completions", data=chunked()) as r:
            assert r.status == 413
    assert fake.seen == []
    # A body under the limit still goes through.
    status, _ = await post(proxy.v1 + "/chat/completions", orjson.dumps(CHAT))
    assert status == 200


async def test_unknown_endpoint_and_method(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url))
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.v1 + "/nope") as r:
            assert r.status == 404
            assert_openai_error(orjson.loads(await r.read()))
        async with s.get(proxy.v1 + "/chat/completions") as r:
            assert r.status == 405
            assert_openai_error(orjson.loads(await r.read()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_upstream_is_502(start_proxy):
    proxy = await start_proxy(config(f"http://127.0.0.1:{_free_port()}"))
    status, doc = await post(proxy.v1 + "/chat/completions", orjson.dumps(CHAT))
    assert status == 502
    err = assert_openai_error(doc, type_="upstream_error")
    assert err["code"] == "upstream_unreachable"
    assert proxy.proxy.runtime.router.states["up/gpt-4o"].in_flight == 0


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b"<html>bad gateway</html>", content_type="text/html"),
        Reply(body=b'{"choices": "not a list"}', content_type="application/json"),
        Reply(body=b"[1,2,3]", content_type="application/json"),
    ],
)
async def test_garbage_from_upstream_is_502(start_proxy, fake_upstream, reply):
    fake = await fake_upstream()
    fake.script(reply)
    proxy = await start_proxy(config(fake.url))
    status, doc = await post(proxy.v1 + "/chat/completions", orjson.dumps(CHAT))
    assert status == 502
    assert assert_openai_error(doc)["code"] == "upstream_bad_response"


async def test_stream_request_answered_with_html_is_502(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(stream=[b"<html>oops</html>"], content_type="text/html"))
    proxy = await start_proxy(config(fake.url))
    status, doc = await post(proxy.v1 + "/chat/completions", orjson.dumps({**CHAT, "stream": True}))
    assert status == 502
    assert "text/html" in assert_openai_error(doc)["message"]


async def test_upstream_hang_is_504(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(hang=True))
    proxy = await start_proxy(config(fake.url, timeouts="timeouts: {first_byte: 0.2}"))
    status, doc = await post(proxy.v1 + "/chat/completions", orjson.dumps(CHAT))
    assert status == 504
    err = assert_openai_error(doc, type_="timeout_error")
    assert "first byte" in err["message"]
    await asyncio.wait_for(fake.disconnected.wait(), 5)  # the hung request was closed
    assert proxy.proxy.runtime.router.states["up/gpt-4o"].in_flight == 0


async def test_stream_idle_gap_ends_with_error_event(start_proxy, fake_upstream):
    fake = await fake_upstream()
    never = asyncio.Event()
    fake.script(Reply(stream=openai_stream(["a", "b"]), pause_after=2, resume=never))
    proxy = await start_proxy(config(fake.url, timeouts="timeouts: {idle: 0.2}"))
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.v1 + "/chat/completions", data=orjson.dumps({**CHAT, "stream": True})) as r:
            assert r.status == 200
            text = (await r.read()).decode()
    events = [e for e in text.split("\n\n") if e]
    assert '"content":"a"' in events[1]
    last = orjson.loads(events[-1].removeprefix("data: "))
    assert last["error"]["type"] == "timeout_error" and "idle" in last["error"]["message"]
    assert "[DONE]" not in text  # a cut stream never looks complete


async def test_stream_cut_mid_way_ends_with_error_event(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_stream(["a", "b", "c"]), drop_after=3))
    proxy = await start_proxy(config(fake.url))
    stream = await openai_client(proxy).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
    )
    got = []
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["", "a", "b"]
    assert proxy.proxy.runtime.router.states["up/gpt-4o"].in_flight == 0


async def test_upstream_5xx_passes_status_through(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(status=503, json={"error": {"message": "overloaded", "type": "server_error"}},
                      headers={"Retry-After": "1"}))
    proxy = await start_proxy(config(fake.url))
    with pytest.raises(openai.InternalServerError) as info:
        await openai_client(proxy).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 503 and "overloaded" in info.value.message


async def test_client_disconnect_mid_stream_closes_upstream_and_frees_slot(start_proxy, fake_upstream):
    fake = await fake_upstream()
    never = asyncio.Event()
    fake.script(Reply(stream=openai_stream(["a", "b", "c"]), pause_after=2, resume=never))
    proxy = await start_proxy(config(fake.url))
    state = proxy.proxy.runtime.router.states["up/gpt-4o"]
    async with aiohttp.ClientSession() as s:
        resp = await s.post(proxy.v1 + "/chat/completions", data=orjson.dumps({**CHAT, "stream": True}))
        assert resp.status == 200
        first = await resp.content.readuntil(b"\n\n")
        assert b'"role":"assistant"' in first
        assert state.in_flight == 1
        resp.close()  # the client goes away mid-stream
    await asyncio.wait_for(fake.disconnected.wait(), 5)
    for _ in range(100):  # the handler's finally runs right after the cancel
        if state.in_flight == 0:
            break
        await asyncio.sleep(0)
    assert state.in_flight == 0


async def test_client_disconnect_while_waiting_non_stream(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(hang=True))
    proxy = await start_proxy(config(fake.url))
    state = proxy.proxy.runtime.router.states["up/gpt-4o"]
    async with aiohttp.ClientSession() as s:
        task = asyncio.ensure_future(s.post(proxy.v1 + "/chat/completions", data=orjson.dumps(CHAT)))
        await asyncio.wait_for(fake.received.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.wait_for(fake.disconnected.wait(), 5)
    for _ in range(100):
        if state.in_flight == 0:
            break
        await asyncio.sleep(0)
    assert state.in_flight == 0


async def test_failover_to_next_deployment_when_one_is_down(start_proxy, fake_upstream):
    fake = await fake_upstream()
    dead = f"http://127.0.0.1:{_free_port()}"
    proxy = await start_proxy(f"""
    providers:
      dead: {{type: openai, base_url: "{dead}/v1", api_key: k}}
      live: {{type: openai, base_url: "{fake.url}/v1", api_key: k}}
    models:
      gpt-4o:
        strategy: round_robin
        deployments:
          - {{provider: dead, model: m}}
          - {{provider: live, model: m}}
    """)
    for _ in range(4):
        status, doc = await post(proxy.v1 + "/chat/completions", orjson.dumps(CHAT))
        assert status == 200, doc
    assert len(fake.seen) == 4


async def test_client_api_keys_are_enforced(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, extra="server: {api_keys: [team-key-1]}"))
    with pytest.raises(openai.AuthenticationError):
        await openai_client(proxy, api_key="wrong").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    r = await openai_client(proxy, api_key="team-key-1").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    assert r.choices[0].message.content == "hi"
    assert fake.seen[0].headers["Authorization"] == "Bearer sk-upstream-secret-key-123"


async def test_upstream_error_echoing_our_key_never_reaches_the_client(start_proxy, fake_upstream):
    fake = await fake_upstream()
    leak = "Incorrect API key provided: sk-upstream-secret-key-123. You can find your API key at ..."
    fake.script(Reply(status=401, json={"error": {"message": leak, "type": "invalid_request_error",
                                                  "code": "invalid_api_key"}}))
    proxy = await start_proxy(config(fake.url))
    status, doc = await post(proxy.v1 + "/chat/completions", orjson.dumps(CHAT))
    assert status == 401
    err = assert_openai_error(doc)  # asserts the key is nowhere in the body
    assert err["code"] == "invalid_api_key" and "Incorrect API key provided" in err["message"]

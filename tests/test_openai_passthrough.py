"""The openai and azure providers through the real proxy, driven by the real SDK."""

from __future__ import annotations

import asyncio

import openai
import orjson
import pytest

from .fakes import Reply, openai_completion, openai_stream


def openai_config(url: str, extra: str = "") -> str:
    return f"""
    providers:
      up:
        type: openai
        base_url: {url}/v1
        api_key: sk-upstream-secret
        organization: org-1
    models:
      gpt-4o:
        deployments:
          - {{provider: up, model: gpt-4o-2024-08-06}}
    {extra}
    """


async def test_async_client_non_streaming_forwards_body_untouched(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    proxy = await start_proxy(openai_config(fake.url))
    client = openai_client(proxy)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    result = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hello"}],
        tools=tools,
        response_format={"type": "json_object"},
        logprobs=True,
        seed=7,
        extra_body={"future_field": {"nested": [1, 2.5, "x"]}},
    )
    assert result.choices[0].message.content == "hi"
    assert result.usage is not None and result.usage.total_tokens == 7
    seen = fake.seen[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == "Bearer sk-upstream-secret"
    assert seen.headers["OpenAI-Organization"] == "org-1"
    body = seen.json
    assert body["model"] == "gpt-4o-2024-08-06"
    assert body["tools"] == tools
    assert body["response_format"] == {"type": "json_object"}
    assert body["logprobs"] is True and body["seed"] == 7
    assert body["future_field"] == {"nested": [1, 2.5, "x"]}
    assert body["messages"] == [{"role": "user", "content": "hello"}]


async def test_sync_client_streaming_with_usage(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_stream(["Hel", "lo", "!"], usage=True)))
    proxy = await start_proxy(openai_config(fake.url))

    def run() -> tuple[str, object, list[str]]:
        with openai.OpenAI(base_url=proxy.v1, api_key="k", max_retries=0) as client:
            return consume(client)

    def consume(client: openai.OpenAI) -> tuple[str, object, list[str]]:
        text, usage, finishes = "", None, []
        for chunk in client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True,
            stream_options={"include_usage": True},
        ):
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
        return text, usage, finishes

    text, usage, finishes = await asyncio.to_thread(run)
    assert text == "Hello!"
    assert finishes == ["stop"]
    assert usage is not None and usage.completion_tokens == 3  # type: ignore[attr-defined]
    assert fake.seen[0].json["stream_options"] == {"include_usage": True}


async def test_sync_client_non_streaming(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(openai_config(fake.url))

    def run() -> str | None:
        with openai.OpenAI(base_url=proxy.v1, api_key="k", max_retries=0) as client:
            r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
            return r.choices[0].message.content

    assert await asyncio.to_thread(run) == "hi"


async def test_async_streaming_relays_events_as_they_arrive(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    resume = asyncio.Event()
    fake.script(Reply(stream=openai_stream(["a", "b", "c"]), pause_after=2, resume=resume))
    proxy = await start_proxy(openai_config(fake.url))
    client = openai_client(proxy)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
    )
    got = []
    async for chunk in stream:
        got.append(chunk.choices[0].delta.content if chunk.choices else None)
        if len(got) == 2:
            # The upstream is paused after two events: we have them already.
            assert got == ["", "a"]
            resume.set()
    assert "".join(g or "" for g in got) == "abc"


async def test_compatible_server_crlf_framing_and_keepalive_comments(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    events = [c.replace(b"\n", b"\r\n") for c in openai_stream(["x", "y"])]
    fake.script(Reply(stream=[b": keep-alive\r\n\r\n", *events]))
    proxy = await start_proxy(openai_config(fake.url))
    client = openai_client(proxy)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "xy"


async def test_embeddings_forwarded(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json={"object": "list", "model": "emb",
                            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
                            "usage": {"prompt_tokens": 2, "total_tokens": 2}}))
    proxy = await start_proxy(f"""
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: k}}
    models:
      emb:
        deployments: [{{provider: up, model: text-embedding-3-large}}]
    """)
    client = openai_client(proxy)
    result = await client.embeddings.create(model="emb", input=["hello", "world"], dimensions=2,
                                            encoding_format="float")
    assert result.data[0].embedding == [0.5, -0.25]
    assert fake.seen[0].path == "/v1/embeddings"
    assert fake.seen[0].json == {"model": "text-embedding-3-large", "input": ["hello", "world"],
                                 "dimensions": 2, "encoding_format": "float"}


@pytest.mark.parametrize("api_version", ["2024-10-21", None])
async def test_azure_paths_and_api_key_header(start_proxy, fake_upstream, api_version, openai_client):
    fake = await fake_upstream()
    version_line = f'api_version: "{api_version}"' if api_version else ""
    proxy = await start_proxy(f"""
    providers:
      az:
        type: azure
        base_url: {fake.url}
        api_key: azure-secret
        {version_line}
    models:
      gpt-4o:
        deployments: [{{provider: az, model: my-gpt4o-deployment}}]
    """)
    client = openai_client(proxy)
    await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    seen = fake.seen[0]
    assert seen.headers["api-key"] == "azure-secret"
    assert "Authorization" not in seen.headers
    if api_version:
        assert seen.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
        assert seen.query == {"api-version": api_version}
    else:
        assert seen.path == "/openai/v1/chat/completions"
        assert seen.query == {}
    assert seen.json["model"] == "my-gpt4o-deployment"


async def test_azure_content_filter_chunk_with_empty_choices_is_dropped(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    filter_chunk = (b'data: {"choices":[],"created":0,"id":"","model":"","object":"",'
                    b'"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}\n\n')
    fake.script(Reply(stream=[filter_chunk, *openai_stream(["ok"])]))
    proxy = await start_proxy(f"""
    providers:
      az: {{type: azure, base_url: "{fake.url}", api_key: k, api_version: "2024-10-21"}}
    models:
      gpt-4o:
        deployments: [{{provider: az, model: dep}}]
    """)
    client = openai_client(proxy)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
    )
    chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "ok"


async def test_upstream_4xx_passes_through_with_status_and_message(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(status=400, json={"error": {"message": "messages[0].content is too long",
                                                  "type": "invalid_request_error", "param": "messages",
                                                  "code": "context_length_exceeded"}}))
    proxy = await start_proxy(openai_config(fake.url))
    client = openai_client(proxy)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 400
    assert info.value.code == "context_length_exceeded"
    assert "too long" in info.value.message
    assert len(fake.seen) == 1  # a client error is not retried elsewhere


async def test_request_id_is_honoured_and_returned(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion()))
    proxy = await start_proxy(openai_config(fake.url))
    import aiohttp

    async with aiohttp.ClientSession() as s:
        body = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
        async with s.post(proxy.v1 + "/chat/completions", data=body, headers={"X-Request-ID": "req-42"}) as r:
            assert r.headers["X-Request-ID"] == "req-42"
            assert r.headers["x-llmproxy-deployment"] == "up/gpt-4o-2024-08-06"
        ids = set()
        for _ in range(2):
            async with s.post(proxy.v1 + "/chat/completions", data=b"{") as r:
                assert r.status == 400
                ids.add(r.headers["X-Request-ID"])
        async with s.post(proxy.v1 + "/chat/completions", data=body) as r:
            ids.add(r.headers["X-Request-ID"])
        async with s.get(proxy.url + "/healthz") as r:
            ids.add(r.headers["X-Request-ID"])
        assert len(ids) == 4 and all(len(i) == 22 for i in ids)
        stream_body = orjson.dumps({"model": "gpt-4o", "stream": True,
                                    "messages": [{"role": "user", "content": "x"}]})
        fake.script(Reply(stream=openai_stream(["a"])))
        async with s.post(proxy.v1 + "/chat/completions", data=stream_body,
                          headers={"X-Request-ID": "stream-7"}) as r:
            assert r.headers["X-Request-ID"] == "stream-7"
            await r.read()


async def test_upstream_cookies_never_travel_to_the_next_request(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion(), headers={"Set-Cookie": "session=client-a-secret; Path=/"}),
                Reply(json=openai_completion()))
    # By host name: aiohttp's default jar ignores cookies from IP addresses.
    proxy = await start_proxy(openai_config(fake.url.replace("127.0.0.1", "localhost")))
    client = openai_client(proxy)
    for _ in range(2):
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert len(fake.seen) == 2
    assert "Cookie" not in fake.seen[1].headers

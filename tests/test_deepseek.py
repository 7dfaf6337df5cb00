"""The deepseek type: an OpenAI-compatible alias, through the real proxy."""

from __future__ import annotations

import aiohttp

from llmproxy.config.tree import parse_config

from .fakes import Reply, openai_stream


def test_deepseek_has_its_default_base_url():
    config = parse_config("""
    providers:
      ds: {type: deepseek, api_key: sk-ds}
    models:
      m: {deployments: [{provider: ds, model: deepseek-chat}]}
    """, env={})
    assert config.providers["ds"].base_url == "https://api.deepseek.com/v1"


async def test_deepseek_speaks_openai_with_a_bearer_key(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    proxy = await start_proxy(f"""
    providers:
      ds: {{type: deepseek, base_url: {fake.url}/v1, api_key: sk-ds-upstream}}
    models:
      chat: {{deployments: [{{provider: ds, model: deepseek-chat}}]}}
    """)
    client = openai_client(proxy)
    result = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello"}])
    assert result.choices[0].message.content == "hi"
    seen = fake.seen[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == "Bearer sk-ds-upstream"
    assert seen.json["model"] == "deepseek-chat"

    # Streams ask for usage upstream, as for openai.
    fake.script(Reply(stream=openai_stream(["a", "b"], usage=True)))
    stream = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}],
                                                  stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "ab"
    assert fake.seen[1].json["stream_options"] == {"include_usage": True}


async def test_deepseek_is_labelled_in_metrics(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    proxy = await start_proxy(f"""
    providers:
      ds: {{type: deepseek, base_url: {fake.url}/v1, api_key: k}}
    models:
      chat: {{deployments: [{{provider: ds, model: deepseek-chat}}]}}
    """)
    await openai_client(proxy).chat.completions.create(model="chat", messages=[{"role": "user", "content": "h"}])
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/metrics") as r:
            text = await r.text()
    assert 'gen_ai_provider_name="deepseek"' in text

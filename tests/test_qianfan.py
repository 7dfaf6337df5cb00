"""type: qianfan — Baidu Qianfan v2 (ERNIE), OpenAI-compatible with its own key and appid."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from llmproxy.config.tree import parse_config
from llmproxy.errors import UpstreamStatusError
from llmproxy.providers.base import CallContext
from llmproxy.providers.qianfan import QianfanAdapter

from .fakes import Reply, openai_completion, openai_stream

ADAPTER = QianfanAdapter()
CTX = CallContext(public_model="ernie", request_id="r", created=1)
KEY = "bce-v3/ALTAK-abc123/0123456789abcdef"


def dep_for(extra: str = "") -> Any:
    config = parse_config(f"""
    providers:
      baidu: {{type: qianfan, api_key: "{KEY}", {extra}}}
    models:
      ernie: {{deployments: [{{provider: baidu, model: ernie-4.0-8k}}]}}
    """, env={})
    return config.models["ernie"].deployments[0]


def test_default_base_url_bearer_key_and_appid() -> None:
    req = ADAPTER.chat_request(dep_for("appid: app-42"), {"model": "ernie", "messages": []}, stream=True)
    assert req.url == "https://qianfan.baidubce.com/v2/chat/completions"
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.headers["appid"] == "app-42"
    assert orjson.loads(req.body) == {"model": "ernie-4.0-8k", "messages": []}
    req = ADAPTER.embeddings_request(dep_for(), {"model": "e", "input": "x"})
    assert req.url == "https://qianfan.baidubce.com/v2/embeddings" and "appid" not in req.headers


@pytest.mark.parametrize("code, status", [("336501", 429), (18, 429), ("rpm_rate_limit_exceeded", 429),
                                          ("336003", 502), ("invalid_model", 502)])
def test_error_in_a_200_body_is_an_upstream_error(code: Any, status: int) -> None:
    data = orjson.dumps({"id": "as-1", "error": {"code": code, "message": "limit reached", "type": "x"}})
    with pytest.raises(UpstreamStatusError) as info:
        ADAPTER.chat_response(dep_for(), data, CTX)
    assert info.value.status == status and info.value.retryable and info.value.message == "limit reached"


def test_normal_answer_passes_through_untouched() -> None:
    data = orjson.dumps(openai_completion("你好", model="ernie-4.0-8k"))
    out, usage = ADAPTER.chat_response(dep_for(), data, CTX)
    assert out == data and usage == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def qianfan_yaml(url: str) -> str:
    return f"""
    providers:
      baidu: {{type: qianfan, base_url: "{url}/v2", api_key: "{KEY}", appid: app-7}}
    models:
      ernie-speed: {{deployments: [{{provider: baidu, model: ernie-speed-128k}}]}}
    """


async def test_chat_and_stream_through_the_proxy(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("你好", model="ernie-speed-128k")),
                Reply(stream=openai_stream(["文心", "一言"], model="ernie-speed-128k")))
    proxy = await start_proxy(qianfan_yaml(fake.url))
    client = openai_client(proxy)
    result = await client.chat.completions.create(model="ernie-speed", messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == "你好"
    stream = await client.chat.completions.create(model="ernie-speed", messages=[{"role": "user", "content": "hi"}],
                                                  stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "文心一言"
    for seen in fake.seen:
        assert seen.path == "/v2/chat/completions"
        assert seen.headers["Authorization"] == f"Bearer {KEY}" and seen.headers["appid"] == "app-7"
        assert seen.json["model"] == "ernie-speed-128k"


async def test_openai_shaped_error_status_passes_through(start_proxy, fake_upstream, openai_client) -> None:
    fake = await fake_upstream()
    fake.script(Reply(status=401, json={"error": {"code": "invalid_iam_token", "message": "IAM Certification failed",
                                                  "type": "invalid_request_error"}}))
    proxy = await start_proxy(qianfan_yaml(fake.url))
    with pytest.raises(openai.AuthenticationError, match="IAM Certification failed"):
        await openai_client(proxy).chat.completions.create(model="ernie-speed", messages=[{"role": "user", "content": "x"}])


def test_example_config_checks_without_any_environment() -> None:
    from pathlib import Path

    path = Path(__file__).parent.parent / "configs" / "providers.yaml"
    config = parse_config(path.read_bytes(), env={}, source=str(path))
    assert {p.type for p in config.providers.values()} == {
        "anthropic", "gemini", "vertex", "bedrock", "ollama", "cohere", "qianfan"}
    models = {d.model for m in config.models.values() for d in m.deployments}
    assert {"ernie-4.0-8k", "ernie-speed-128k", "anthropic.claude-3-haiku-20240307-v1:0"} <= models
    assert config.providers["bedrock-us"].base_url == "https://bedrock-runtime.us-east-1.amazonaws.com"
    assert config.providers["qianfan"].base_url == "https://qianfan.baidubce.com/v2"

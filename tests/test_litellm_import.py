"""``llmproxy import-litellm``: LiteLLM configs in, llmproxy configs that route the same names to the same places.

Each fixture under tests/fixtures/litellm/ is a LiteLLM proxy config as its
docs write one (one per provider prefix, and a large mixed one). Its import
must load, name the provider type, base URL and upstream model LiteLLM would
call, and, served by the real proxy with the base URLs pointed at a fake,
make the same request reach the fake with the same model name and key.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from llmproxy.config.litellm_import import (
    APPROX,
    MAPPED,
    NOT_MAPPED,
    Row,
    convert,
    to_yaml,
)
from llmproxy.config.tree import Config, parse_config

from . import fakes_anthropic, fakes_gemini
from .fakes import Reply, Seen, openai_completion

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "litellm"

CONVERSE = {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}}
OLLAMA = {"model": "m", "created_at": "2025-01-01T00:00:00Z", "message": {"role": "assistant", "content": "hi"},
          "done": True, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 1}
COHERE = {"id": "r", "finish_reason": "COMPLETE", "message": {"role": "assistant", "content": [
    {"type": "text", "text": "hi"}]}, "usage": {"tokens": {"input_tokens": 3, "output_tokens": 1}}}


def answer(seen: Seen) -> Reply:
    """What each provider's API answers, told apart by the path the proxy called."""
    path = seen.path
    if path.endswith("/converse"):
        return Reply(json=CONVERSE)
    if path.endswith("/v1/messages"):
        return Reply(json=fakes_anthropic.message([{"type": "text", "text": "hi"}]))
    if ":generateContent" in path:
        return Reply(json=fakes_gemini.response([{"text": "hi"}]))
    if path.endswith("/api/chat"):
        return Reply(json=OLLAMA)
    if path.endswith("/v2/chat"):
        return Reply(json=COHERE)
    return Reply(json=openai_completion())


def reached(seen: Seen) -> tuple[str, str | None]:
    """(the upstream model, the credential) of a request as the fake saw it."""
    path, h = unquote(seen.path), seen.headers
    if path.endswith("/converse"):
        m = re.search(r"Credential=([^/]+)/", h["Authorization"])
        return path.split("/model/")[1].rsplit("/", 1)[0], m.group(1) if m else None
    if "/openai/deployments/" in path:
        return path.split("/openai/deployments/")[1].split("/")[0], h.get("api-key")
    if ":generateContent" in path:
        model = path.rsplit("/models/", 1)[1].split(":")[0]
        return model, h.get("x-goog-api-key") or h.get("Authorization")
    if path.endswith("/v1/messages"):
        return seen.json["model"], h.get("x-api-key")
    return seen.json["model"], h.get("Authorization") or h.get("api-key")


def env_for(text: str) -> dict[str, str]:
    """A distinct value for every ${VAR} the imported YAML reads (a URL for an api_base)."""
    return {name: f"https://{name.lower().replace('_', '-')}.example.com" if "BASE" in name else f"val-{name.lower()}"
            for name in re.findall(r"\$\{(\w+)\}", text)}


def load(path: Path) -> tuple[dict[str, Any], list[Row], str]:
    doc, rows = convert(yaml.safe_load(path.read_text()))
    return doc, rows, to_yaml(doc, path.name, rows)


def pointed_at(doc: dict[str, Any], config: Config, url: str) -> dict[str, Any]:
    """``doc`` with every provider's base URL on ``url`` (its path kept)."""
    out = {**doc, "providers": {}}
    for name, p in doc["providers"].items():
        base = config.providers[name].base_url
        out["providers"][name] = {**p, "base_url": url + urlsplit(base).path}
    return out


# (fixture, public model, type, base URL, upstream model, credential as sent: a ${VAR} filled by env_for)
PER_PREFIX = [
    ("openai", "gpt-4o-mini", "openai", "https://api.openai.com/v1", "gpt-4o-mini", "Bearer val-openai_api_key"),
    ("azure", "gpt-4o", "azure", "https://acme-eastus.openai.azure.com", "prod-gpt-4o", "val-azure_api_key"),
    ("azure_ai", "mistral-large", "openai", "https://acme.services.ai.azure.com/models", "Mistral-Large-2411",
     "Bearer val-azure_ai_api_key"),
    ("anthropic", "claude-sonnet", "anthropic", "https://api.anthropic.com", "claude-sonnet-4-5-20250929",
     "val-anthropic_api_key"),
    ("gemini", "gemini-flash", "gemini", "https://generativelanguage.googleapis.com", "gemini-2.5-flash",
     "val-gemini_api_key"),
    ("vertex_ai", "gemini-pro", "vertex", "https://aiplatform.googleapis.com", "gemini-2.5-pro",
     "Bearer val-vertex_access_token"),
    ("bedrock", "claude-bedrock", "bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com",
     "anthropic.claude-3-5-sonnet-20240620-v1:0", "val-aws_access_key_id"),
    ("ollama", "llama3", "ollama", "http://localhost:11434", "llama3.2:3b", None),
    ("cohere", "command-r", "cohere", "https://api.cohere.com", "command-r-plus-08-2024", "Bearer val-cohere_api_key"),
    ("hosted_vllm", "llama-70b", "openai", "http://vllm.internal:8000/v1", "meta-llama/Llama-3.3-70B-Instruct",
     "Bearer val-vllm_api_key"),
    ("openai_compatible", "local-qwen", "openai", "http://llama-server.internal:8080/v1", "Qwen/Qwen2.5-7B-Instruct",
     "Bearer val-local_llm_key"),
    ("groq", "llama-fast", "openai", "https://api.groq.com/openai/v1", "llama-3.3-70b-versatile",
     "Bearer val-groq_api_key"),
    ("mistral", "mistral-small", "openai", "https://api.mistral.ai/v1", "mistral-small-latest",
     "Bearer val-mistral_api_key"),
    ("deepseek", "deepseek-chat", "deepseek", "https://api.deepseek.com/v1", "deepseek-chat",
     "Bearer val-deepseek_api_key"),
    ("together_ai", "llama-together", "openai", "https://api.together.xyz/v1",
     "meta-llama/Llama-3.3-70B-Instruct-Turbo", "Bearer val-togetherai_api_key"),
    ("openrouter", "or-claude", "openai", "https://openrouter.ai/api/v1", "anthropic/claude-3.5-sonnet",
     "Bearer val-openrouter_api_key"),
]


def test_every_prefix_fixture_is_exercised() -> None:
    names = {p.stem for p in FIXTURES.glob("*.yaml")} - {"mixed"}
    assert names == {row[0] for row in PER_PREFIX}


@pytest.mark.parametrize(("fixture", "public", "ptype", "base", "upstream", "credential"), PER_PREFIX,
                         ids=[row[0] for row in PER_PREFIX])
async def test_one_prefix_routes_to_the_same_place(fixture, public, ptype, base, upstream, credential,
                                                   start_proxy, fake_upstream, openai_client) -> None:
    doc, rows, text = load(FIXTURES / f"{fixture}.yaml")
    env = env_for(text)
    config = await asyncio.to_thread(parse_config, text, env=env)
    dep = config.models[public].deployments[0]
    assert (dep.provider.type, dep.provider.base_url, dep.model) == (ptype, base, upstream)
    assert all(r.outcome in (MAPPED, APPROX, NOT_MAPPED) for r in rows)

    fake = await fake_upstream()
    fake.responder = answer
    proxy = await start_proxy(yaml.safe_dump(pointed_at(doc, config, fake.url)), env=env)
    result = await openai_client(proxy).chat.completions.create(
        model=public, messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == "hi"
    assert reached(fake.seen[-1]) == (upstream, credential)


def test_the_report_says_what_was_not_mapped_and_why() -> None:
    _, rows, _ = load(FIXTURES / "vertex_ai.yaml")
    creds = [r for r in rows if r.setting.endswith("vertex_credentials")]
    assert creds and creds[0].outcome == NOT_MAPPED and "access token" in creds[0].detail
    _, rows, _ = load(FIXTURES / "openai.yaml")
    org = [r for r in rows if r.setting.endswith(".organization")]
    assert org[0].outcome == MAPPED


def test_the_mixed_config_maps_what_exists_and_reports_the_rest() -> None:
    _, rows, text = load(FIXTURES / "mixed.yaml")
    by = {(r.setting, r.outcome): r.detail for r in rows}
    for setting in ("general_settings.database_url", "litellm_settings.success_callback",
                    "router_settings.context_window_fallbacks",
                    "model_list[11].litellm_params.model", "model_list[12].litellm_params.model",
                    "model_list[6].litellm_params.model", "environment_variables",
                    "model_list[1].litellm_params.stream_timeout"):
        assert (setting, NOT_MAPPED) in by, setting
    assert "virtual keys" in by[("general_settings.database_url", NOT_MAPPED)]
    assert ("litellm_settings.cache", MAPPED) in by and ("litellm_settings.cache_params.ttl", MAPPED) in by
    assert "router_settings' redis_host" in by[("litellm_settings.cache_params.host", APPROX)]
    assert not any("yet" in r.detail for r in rows)  # nothing reported missing that llmproxy has now
    assert (("router_settings.routing_strategy", APPROX)) in by
    assert ("model_list[3].litellm_params.model", APPROX) in by  # no prefix: taken as openai/
    # Every LiteLLM setting the file holds has a row: nothing is skipped silently.
    source = yaml.safe_load((FIXTURES / "mixed.yaml").read_text())
    for section in ("router_settings", "litellm_settings", "general_settings"):
        for key in source[section]:
            assert any(r.setting.startswith(f"{section}.{key}") for r in rows), (section, key)
    # Credentials are never in the report.
    assert not any("val-" in r.detail or "sk-" in r.detail for r in rows)

    env = env_for(text)
    config = parse_config(text, env=env)
    assert config.unsupported_params == "drop"
    assert config.retry.retries == 3 and config.breaker.failures == 3 and config.breaker.cooldown == 45
    assert config.timeouts.total == 120
    assert config.state.redis == "redis://:val-redis_password@val-redis_host:6379/0"
    assert config.cache.enabled and config.cache.backend == "redis" and config.cache.scope == "global"
    assert config.cache.ttl == 600
    assert config.server.api_keys == frozenset()
    (master,) = config.keys
    assert (master.name, master.role) == ("litellm-master-key", "admin")
    assert dict(config.aliases) == {"gpt-4": "gpt-4o", "sonnet": "claude"}
    assert config.models["gpt-4o"].fallbacks == ("claude", "gpt-4o-mini")
    assert config.models["claude"].fallbacks == ("gpt-4o",)
    assert set(config.models) == {"gpt-4o", "gpt-4o-mini", "claude", "embed", "local", "anthropic/*", "groq/*"}
    bedrock = config.models["claude"].deployments[1]
    assert (bedrock.provider.type, bedrock.model) == ("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert bedrock.price is not None and bedrock.price.input_per_mtok == 3.0
    westeu = config.models["gpt-4o"].deployments[2]
    assert (westeu.priority, westeu.provider.name) == (2, "azure-2")


async def test_the_mixed_config_through_the_proxy(start_proxy, fake_upstream, openai_client) -> None:
    doc, _, text = load(FIXTURES / "mixed.yaml")
    env = {**env_for(text), "AWS_ACCESS_KEY_ID": "AKIAMIXED", "AWS_SECRET_ACCESS_KEY": "secret"}
    config = await asyncio.to_thread(parse_config, text, env=env)
    fake = await fake_upstream()
    fake.responder = answer
    served = pointed_at(doc, config, fake.url)
    served.pop("state")  # the imported Redis host is not one this test can reach
    served["cache"] = {**served["cache"], "backend": "memory"}
    proxy = await start_proxy(yaml.safe_dump(served), env=env)
    client = openai_client(proxy, api_key="val-litellm_master_key")
    expected = {"gpt-4o": {("gpt-4o", "Bearer val-openai_api_key"), ("gpt-4o-eastus", "val-azure_api_key_east")},
                "gpt-4": {("gpt-4o", "Bearer val-openai_api_key"), ("gpt-4o-eastus", "val-azure_api_key_east")},
                "claude": {("claude-sonnet-4-5", "val-anthropic_api_key"),
                           ("anthropic.claude-3-5-sonnet-20240620-v1:0", "AKIAMIXED")},
                "gpt-4o-mini": {("gpt-4o-mini", "Bearer val-openai_api_key")},
                "local": {("llama3.2", None)},
                "groq/llama-3.1-8b-instant": {("llama-3.1-8b-instant", "Bearer val-groq_api_key")},
                "anthropic/claude-haiku-4-5": {("claude-haiku-4-5", "val-anthropic_api_key")}}
    for public, places in expected.items():
        for _ in range(3):
            result = await client.chat.completions.create(model=public, messages=[{"role": "user", "content": "hi"}])
            assert result.choices[0].message.content == "hi"
            assert reached(fake.seen[-1]) in places, public


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmproxy", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, **(env or {})}, check=False)


def test_the_readme_command_on_the_example(tmp_path: Path) -> None:
    """README "Coming from LiteLLM": the import, then `llmproxy check` on its output, as real processes."""
    readme = (ROOT / "README.md").read_text()
    assert "llmproxy import-litellm configs/litellm/config.yaml -o llmproxy.yaml" in readme
    out = tmp_path / "llmproxy.yaml"
    result = run_cli("import-litellm", "configs/litellm/config.yaml", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert re.search(r"litellm_settings\.cache +mapped +cache\.enabled: true", result.stderr)
    text = out.read_text()
    assert text.startswith("# llmproxy config imported from the LiteLLM config configs/litellm/config.yaml")
    check = run_cli("check", str(out), env=env_for(text))
    assert check.returncode == 0, check.stderr
    assert "gpt4  (alias of gpt-4o)" in check.stdout
    assert "openai/*  (strategy: least_connections)" in check.stdout
    # Without the variables, check says which one is missing, as for ${VAR}.
    bare = {k: v for k, v in os.environ.items() if k not in env_for(text)}
    missing = subprocess.run([sys.executable, "-m", "llmproxy", "check", str(out)], capture_output=True, text=True,
                             timeout=60, cwd=ROOT, env=bare, check=False)
    assert missing.returncode == 1 and "environment variable OPENAI_API_KEY is not set" in missing.stderr


def test_the_cli_to_stdout_and_on_bad_input(tmp_path: Path) -> None:
    result = run_cli("import-litellm", "tests/fixtures/litellm/groq.yaml")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["providers"]["groq"]["base_url"] == "https://api.groq.com/openai/v1"
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list: [\n")
    result = run_cli("import-litellm", str(bad))
    assert result.returncode == 1 and "invalid YAML" in result.stderr
    result = run_cli("import-litellm", str(tmp_path / "missing.yaml"))
    assert result.returncode == 1 and "cannot read" in result.stderr


def test_odd_litellm_documents_are_reported_not_crashes() -> None:
    for doc in (None, [], "x", {"model_list": "x"}, {"model_list": [None, {"model_name": 1}, {"model_name": "a",
                "litellm_params": {"model": "openai/x", "rpm": "lots", "weight": -1, "order": 1.5}}]},
                {"model_list": [], "router_settings": [], "litellm_settings": {"drop_params": False}}):
        out, rows = convert(doc)
        assert rows, doc
        if out.get("models"):  # what is written loads
            text = yaml.safe_dump(out)
            parse_config(text, env=env_for(text))



# --------------------------------------------------------------------------- the cache and keys


def cache_import(litellm: dict[str, Any], router: dict[str, Any] | None = None,
                 general: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[tuple[str, str], str], Config]:
    doc = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o-mini"}}],
           "litellm_settings": litellm, "router_settings": router or {}, "general_settings": general or {}}
    out, rows = convert(doc)
    text = to_yaml(out, "test.yaml", rows)
    return out, {(r.setting, r.outcome): r.detail for r in rows}, parse_config(text, env=env_for(text))


def test_cache_local_with_ttl_is_the_memory_backend() -> None:
    out, by, config = cache_import({"cache": True, "cache_params": {"type": "local", "ttl": 120,
                                                                    "supported_call_types": ["acompletion"]}})
    assert out["cache"] == {"enabled": True, "backend": "memory", "scope": "global", "ttl": 120}
    assert config.cache.backend == "memory" and config.cache.ttl == 120 and config.state.redis is None
    assert ("litellm_settings.cache_params.type", MAPPED) in by
    assert "embeddings" in by[("litellm_settings.cache_params.supported_call_types", APPROX)]


def test_cache_params_redis_host_port_password_become_state_redis() -> None:
    out, by, config = cache_import({"cache": True, "cache_params": {
        "type": "redis", "host": "os.environ/CACHE_HOST", "port": 6380, "password": "os.environ/CACHE_PASSWORD",
        "namespace": "litellm.caching", "default_in_redis_ttl": 30, "default_in_memory_ttl": 5,
        "redis_startup_nodes": [{"host": "a", "port": 1}]}})
    assert out["state"] == {"redis": "redis://:${CACHE_PASSWORD}@${CACHE_HOST}:6380/0"}
    assert config.state.redis == "redis://:val-cache_password@val-cache_host:6380/0"
    assert config.cache.backend == "redis" and config.cache.ttl == 30
    assert ("litellm_settings.cache_params.password", MAPPED) in by
    assert ("litellm_settings.cache_params.namespace", APPROX) in by
    assert ("litellm_settings.cache_params.default_in_memory_ttl", APPROX) in by
    assert "no cluster" in by[("litellm_settings.cache_params.redis_startup_nodes", NOT_MAPPED)]
    assert not any("val-" in d or "CACHE_PASSWORD" in d for d in by.values())


def test_cache_on_without_params_reads_litellms_redis_variables() -> None:
    out, by, config = cache_import({"cache": True})
    assert out["state"]["redis"] == "redis://:${REDIS_PASSWORD:-}@${REDIS_HOST}:${REDIS_PORT:-6379}/0"
    assert config.state.redis == "redis://:@val-redis_host:6379/0" and config.cache.backend == "redis"
    assert "REDIS_URL" in by[("litellm_settings.cache_params.host", APPROX)]
    assert ("litellm_settings.cache_params.type (default redis)", MAPPED) in by
    doc = {"model_list": [], "litellm_settings": {"cache": True, "cache_params": {
        "type": "redis", "url": "os.environ/REDIS_URL", "ssl": True}}}
    out, rows = convert(doc)
    assert out["state"]["redis"] == "${REDIS_URL}"
    assert ("litellm_settings.cache_params.ssl", APPROX) in {(r.setting, r.outcome) for r in rows}
    out, _ = convert({**doc, "litellm_settings": {"cache": True, "cache_params": {"host": "h", "ssl": True,
                                                                                 "db": 2}}})
    assert out["state"]["redis"] == "rediss://h:6379/2"


def test_cache_with_router_redis_uses_the_one_state_redis() -> None:
    router = {"redis_host": "redis.internal", "redis_port": 6379, "redis_password": "os.environ/REDIS_PASSWORD"}
    out, by, _ = cache_import({"cache": True, "cache_params": {"type": "redis", "host": "other.internal"}}, router)
    assert out["state"]["redis"] == "redis://:${REDIS_PASSWORD}@redis.internal:6379/0"
    assert "one Redis" in by[("litellm_settings.cache_params", APPROX)]


@pytest.mark.parametrize(("kind", "backend"), [("redis-semantic", "redis"), ("qdrant-semantic", "memory"),
                                               ("s3", "memory"), ("disk", "memory")])
def test_cache_types_llmproxy_lacks_are_approximated(kind: str, backend: str) -> None:
    out, by, config = cache_import({"cache": True, "cache_params": {"type": kind, "host": "h"}})
    assert config.cache.enabled and config.cache.backend == backend
    assert ("litellm_settings.cache_params.type", APPROX) in by


def test_cache_left_off_when_litellm_would_not_cache_every_request() -> None:
    for litellm in ({"cache": False, "cache_params": {"type": "redis"}},
                    {"cache": True, "cache_params": {"type": "redis", "mode": "default_off"}},
                    {"cache": True, "cache_params": {"type": "memcached"}}):
        out, by, config = cache_import(litellm)
        assert "cache" not in out and not config.cache.enabled, litellm
        assert "state" not in out
    _, by, _ = cache_import({"cache": True, "cache_params": {"mode": "default_off"}})
    assert "opt-in" in by[("litellm_settings.cache", NOT_MAPPED)]


def test_master_key_is_an_admin_key_or_a_short_client_key() -> None:
    out, by, config = cache_import({}, general={"master_key": "os.environ/LITELLM_MASTER_KEY"})
    assert out["keys"] == [{"name": "litellm-master-key", "key": "${LITELLM_MASTER_KEY}", "role": "admin"}]
    assert "database" in by[("general_settings.master_key", MAPPED)]
    out, by, config = cache_import({}, general={"master_key": "sk-1234"})  # LiteLLM's docs' example
    assert out["server"]["api_keys"] == ["sk-1234"] and "keys" not in out
    assert ("general_settings.master_key", APPROX) in by


async def test_an_imported_cache_serves_repeats_through_the_proxy(start_proxy, fake_upstream, openai_client,
                                                                  redis_url) -> None:
    """cache: true + cache_params {type: redis, host, port}: the second identical request is a hit
    (on a real Redis) and never reaches the fake."""
    host, port = urlsplit(redis_url).hostname, urlsplit(redis_url).port
    doc = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                                 "api_key": "os.environ/OPENAI_API_KEY"}}],
           "litellm_settings": {"cache": True, "cache_params": {"type": "redis", "host": host, "port": port,
                                                                "ttl": 60}},
           "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}
    out, _ = convert(doc)
    env = {"OPENAI_API_KEY": "sk-openai-test-key", "LITELLM_MASTER_KEY": "sk-litellm-master-0123456789"}
    fake = await fake_upstream()
    out["providers"]["openai"]["base_url"] = fake.url + "/v1"
    proxy = await start_proxy(yaml.safe_dump(out), env=env)
    client = openai_client(proxy, api_key=env["LITELLM_MASTER_KEY"])
    for _ in range(2):
        raw = await client.chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-llmproxy-cache"] == "hit" and raw.parse().choices[0].message.content == "hi"
    assert len(fake.seen) == 1

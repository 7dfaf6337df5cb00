"""Wrong-typed values anywhere in a config are config errors, never a crash.

Property-style: every key of a full config, in turn, gets a list, a mapping,
null, a bool, huge and non-finite numbers in place of its value (and odd
things in place of its name); ``parse_config`` must answer with a Config or a
``ConfigError`` and nothing else, and a list or mapping where a scalar
belongs must be an error naming that key's path.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmproxy.config.tree import Config, ConfigError, parse_config
from llmproxy.config.validate import Validator

Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

FULL: dict[str, Any] = {
    "listen": "127.0.0.1:8080",
    "server": {"max_body_size": "20MiB", "drain_timeout": 30, "api_keys": ["client-key-1"], "header_timeout": 10,
               "body_timeout": 15, "keepalive_timeout": 75, "cors_origins": ["https://app.example.com"],
               "allowed_hosts": ["proxy.internal"]},
    "admin": {"token": "admin-token-1", "request_log": 500, "request_log_bodies": False, "config_history": 10},
    "reload": {"enabled": True, "debounce": 0.1, "poll_interval": 5},
    "logging": {"level": "info", "format": "json", "access_log": True, "redact_emails": False,
                "redact_cards": False, "log_bodies": False},
    "metrics": {"enabled": True, "listen": "127.0.0.1:9464"},
    "responses": {"store_backend": "memory", "store_max": 100, "store_ttl": 60, "store_max_entry_bytes": "1MiB"},
    "state": {"path": "state/llmproxy.db", "redis": "redis://:hunter2@127.0.0.1:6379/0"},
    "auth": {"jwt": {"issuer": "https://idp.example.com/", "audience": "llmproxy", "jwks_file": "jwks.json",
                     "jwks_url": "https://idp.example.com/.well-known/jwks.json", "algorithms": ["RS256", "EdDSA"],
                     "key_claim": "team", "leeway": 10, "jwks_refresh": 600, "jwks_refresh_min": 5}},
    "keys": [
        {"name": "search-team", "key_sha256": "9f86d081884c7d659a2feae0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
         "models": ["small", "o*"], "rpm": 600, "tpm": 200000, "max_parallel": 20,
         "budget": {"usd": 50, "period": "30d"}, "metadata": {"team": "search"}, "role": "admin"},
        {"name": "env-key", "key": "sk-llmp-0123456789abcdef0123"},
        {"name": "file-key", "key_file": str(Path(__file__).parent / "fixtures" / "client_key.txt")},
    ],
    "prices_file": str(Path(__file__).parent / "fixtures" / "litellm_prices.json"),
    "cache": {"enabled": True, "ttl": 600, "max_bytes": "64MiB", "max_entry_bytes": "1MiB", "backend": "redis",
              "scope": "key", "wait": 30},
    "tracing": {"enabled": False, "endpoint": "http://otel:4318/v1/traces", "service_name": "llmproxy",
                "sample_ratio": 0.5, "headers": {"Authorization": "Bearer otel-token"}},
    "defaults": {
        "timeouts": {"connect": 5, "first_byte": 60, "idle": 30, "total": 600},
        "upstream": {"limit": 1000, "limit_per_host": 0, "keepalive_timeout": 30},
        "retry": {"retries": 2, "backoff": 0.1, "max_backoff": 2, "budget_ratio": 0.2, "budget_min": 10,
                  "budget_window": 10},
        "breaker": {"failures": 5, "failure_ratio": 0.5, "min_requests": 20, "window": 30, "cooldown": 30,
                    "half_open_probes": 1, "max_retry_after": 300, "when_all_open": "route_oldest"},
        "limits": {"max_response_size": "32MiB", "max_event_size": 1048576},
        "queue_timeout": 5,
        "unsupported_params": "error",
        "health_check": {"enabled": False, "interval": 30, "timeout": 5, "kind": "models"},
    },
    "aliases": {"gpt4": "gpt-4o"},
    "providers": {
        "oa": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key": "sk-1",
               "organization": "org-1", "project": "proj-1", "headers": {"X-Extra": "v"},
               "timeouts": {"connect": 3, "first_byte": 120, "idle": 20, "total": 300},
               "limits": {"max_response_size": "8MiB", "max_event_size": "1MiB"}, "stream_usage": True,
               "responses": "translate"},
        "az": {"type": "azure", "base_url": "https://x.openai.azure.com", "api_key": "az-1",
               "api_version": "2024-10-21", "stream_usage": False},
        "mk": {"type": "mock", "latency": 0.0, "tokens_per_second": 200, "reply": "hi"},
        "br": {"type": "bedrock", "region": "us-east-1", "aws_access_key_id": "AKIA1",
               "aws_secret_access_key": "secret-1", "aws_session_token": "tok-1", "allow_image_urls": False,
               "image_url_max_bytes": 1000, "image_url_allow_private": False},
        "ol": {"type": "ollama", "allow_image_urls": True, "image_url_max_bytes": 1000,
               "image_url_allow_private": False},
        "co": {"type": "cohere", "api_key_file": str(Path(__file__).parent / "fixtures" / "api_key.txt")},
        "qf": {"type": "qianfan", "api_key": "qf-1", "appid": "app-1"},
        "an": {"type": "anthropic", "api_key": "an-1", "anthropic_version": "2023-06-01",
               "beta": ["prompt-caching-2024-07-31"]},
        "ge": {"type": "gemini", "api_key": "ge-1", "api_version": "v1beta", "allow_image_urls": False,
               "image_url_max_bytes": 1000, "image_url_allow_private": False},
        "vx": {"type": "vertex", "api_key": "vx-1", "project": "p", "location": "us-central1",
               "api_version": "v1", "quota_project": "q", "allow_image_urls": False,
               "image_url_max_bytes": 1000, "image_url_allow_private": False},
    },
    "models": {
        "gpt-4o": {
            "strategy": "weighted",
            "fallbacks": ["small"],
            "retry": {"retries": 1, "backoff": 0.2, "max_backoff": 1, "budget_ratio": 0.1, "budget_min": 5,
                      "budget_window": 20},
            "session_key": {"header": "x-tenant", "field": "user"},
            "cache": {"ttl": 3600},
            "deployments": [
                {"provider": "oa", "model": "gpt-4o", "id": "oa-4o", "weight": 2,
                 "timeouts": {"connect": 2, "first_byte": 50, "idle": 10, "total": 100}, "max_tokens": 1000,
                 "priority": 0, "max_concurrency": 64,
                 "queue_timeout": 2, "rpm": 5000, "tpm": 800000, "unsupported_params": "drop",
                 "price": {"input_per_mtok": 2.5, "output_per_mtok": 10, "cached_input_per_mtok": 1.25},
                 "breaker": {"failures": 3, "failure_ratio": 0.4, "min_requests": 10, "window": 20, "cooldown": 10,
                             "half_open_probes": 2, "max_retry_after": 60, "when_all_open": "fail_fast"},
                 "health_check": {"enabled": True, "interval": 10, "timeout": 2, "kind": "chat"}},
                {"provider": "az", "model": "dep"},
            ],
        },
        "small": {"strategy": "round_robin", "deployments": [{"provider": "mk", "model": "m"}]},
        "openai/*": {"wildcard_names": 10, "deployments": [{"provider": "oa", "model": "*"}]},
        "others": {"strategy": "least_latency", "deployments": [
            {"provider": p, "model": "m"} for p in ("br", "ol", "co", "qf", "an", "ge", "vx")]},
    },
}

SENTINEL = "__VALUE_UNDER_TEST__"
HUGE = "1" + "0" * 5000  # past Python's int-from-text limit (4300 digits)
# What the issue names, as YAML text through parse_config: (literal, is it a collection).
VALUES = [("[weighted]", True), ("{a: 1}", True), ("null", False), ("true", False), (HUGE, False)]
# More odd values, as Python objects straight into the validator (no YAML
# round trip: pure-Python YAML parsing is what makes the cases above slow).
recursive: list[Any] = []
recursive.append(recursive)
OBJECTS = [10**5000, 10**30, float("inf"), float("-inf"), float("nan"), -1, "", b"hello",
           datetime.date(2024, 1, 1), {"a", "b"}, [[[[[["x"]]]]]], recursive, "x" * 1_000_000, False]
KEYS = [None, 1, True, 1.5, "k" * 300, datetime.date(2024, 1, 1)]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], bool]]:
    """Every (path, is_scalar_leaf) of the document, the root excluded."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield prefix + (k,), not isinstance(v, (dict, list))
        yield from paths(v, prefix + (k,))


def replaced(path: tuple[Any, ...], value: Any = SENTINEL, key: Any = None) -> dict[str, Any]:
    doc = copy.deepcopy(FULL)
    node = doc
    for k in path[:-1]:
        node = node[k]
    if key is None:
        node[path[-1]] = value
    else:
        node[key] = node.pop(path[-1])
    return doc


def outcome(text: str) -> Config | ConfigError:
    try:
        return parse_config(text, env={}, source="t.yaml")
    except ConfigError as exc:
        return exc


def validate(doc: Any) -> list[str]:
    v = Validator({}, Path.cwd())
    v.config(doc, "t.yaml", "")
    return v.problems


def test_the_full_config_is_valid():
    assert isinstance(outcome(yaml.safe_dump(FULL)), Config)
    assert validate(FULL) == []


@pytest.mark.parametrize("literal,collection", VALUES, ids=["list", "mapping", "null", "bool", "huge-int"])
def test_any_value_anywhere_is_a_config_or_a_config_error(literal: str, collection: bool):
    crashes, silent = [], []
    for path, scalar in paths(FULL):
        text = yaml.dump(replaced(path), Dumper=Dumper, sort_keys=False).replace(SENTINEL, literal)
        try:
            result = outcome(text)
        except Exception as exc:  # the property: nothing but ConfigError
            crashes.append((path, f"{type(exc).__name__}: {exc}"[:200]))
            continue
        if scalar and collection:
            # A list or a mapping where a scalar belongs: an error at that path.
            last = str(path[-1]) if not isinstance(path[-1], int) else f"{path[-2]}[{path[-1]}]"
            if not isinstance(result, ConfigError) or not any(last in p for p in result.problems):
                silent.append((path, getattr(result, "problems", result)))
        if literal == HUGE and not scalar:
            assert isinstance(result, ConfigError), path
        if isinstance(result, ConfigError):
            assert all(len(p) < 400 for p in result.problems), result.problems
    assert crashes == []
    assert silent == []


@pytest.mark.parametrize("value", OBJECTS, ids=lambda v: type(v).__name__)
def test_odd_python_values_anywhere_are_problems_not_crashes(value: Any):
    crashes = []
    for path, _ in paths(FULL):
        try:
            problems = validate(replaced(path, value))
        except Exception as exc:
            crashes.append((path, f"{type(exc).__name__}: {exc}"[:200]))
            continue
        assert all(len(p) < 400 for p in problems), problems
    assert crashes == []


@pytest.mark.parametrize("key", KEYS, ids=lambda v: type(v).__name__)
def test_any_key_anywhere_is_a_problem_not_a_crash(key: Any):
    crashes = []
    for path, _ in paths(FULL):
        if isinstance(path[-1], int):
            continue
        try:
            problems = validate(replaced(path, key=key))
        except Exception as exc:
            crashes.append((path, f"{type(exc).__name__}: {exc}"[:200]))
            continue
        assert all(len(p) < 400 for p in problems), problems
    assert crashes == []


def test_full_uses_every_key_of_the_schema():
    """FULL cannot drift from the schema: a new key fails here until it is added."""
    from llmproxy.config.views import explain_keys

    used = {template(path) for path, _ in paths(FULL)}
    missing = [row[0] for row in explain_keys() if row[0] not in used]
    assert missing == []


def template(path: tuple[Any, ...]) -> str:
    """A document path as ``--explain`` writes it: ``providers.<name>.timeouts.idle``."""
    out: list[str] = []
    for i, part in enumerate(path):
        if isinstance(part, int):
            out[-1] += "[]"
        elif i == 1 and path[0] in ("providers", "models"):
            out.append("<name>")
        else:
            out.append(str(part))
    return ".".join(out)


def test_strategy_as_a_list_names_the_path():
    text = yaml.safe_dump(FULL).replace("strategy: weighted", "strategy: [weighted]")
    result = outcome(text)
    assert isinstance(result, ConfigError)
    assert result.problems == ["models.gpt-4o.strategy: must be a string, got a list"]

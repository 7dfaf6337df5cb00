"""Each config key is declared once: the admin view, ``check --explain``, the
README's key reference and the provider registry are all derived from it."""

from __future__ import annotations

import copy
import dataclasses
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from llmproxy.__main__ import main
from llmproxy.config import tree as config_module
from llmproxy.config.schema import keys_of
from llmproxy.config.tree import Config, ProviderOptions
from llmproxy.config.views import REDACTED, explain_keys, explain_text
from llmproxy.providers import ADAPTERS, Adapter
from llmproxy.providers.registry import PROVIDER_SPECS

from .test_config_types import FULL, paths, template

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": "Bearer admin-token-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def schema_classes(cls: type, seen: set[type] | None = None) -> set[type]:
    """``cls`` and every section dataclass reachable from it."""
    seen = set() if seen is None else seen
    seen.add(cls)
    for k in keys_of(cls):
        sub = k.section_class()
        if sub is not None and sub not in seen:
            schema_classes(sub, seen)
    return seen


def secret_templates() -> set[str]:
    return {path for path, kind, _, _ in explain_keys() if kind.endswith("secret")}


def lookup(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


async def test_admin_view_shows_every_key_with_only_secrets_masked(start_proxy):
    doc = copy.deepcopy(FULL)
    doc["metrics"]["listen"] = f"127.0.0.1:{free_port()}"
    proxy = await start_proxy(yaml.safe_dump(doc))
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/admin/config", headers=ADMIN) as r:
            assert r.status == 200
            body = await r.text()
    view = yaml.safe_load(body)["config"]  # JSON is YAML
    secrets = secret_templates()
    missing, masked_wrongly, leaked = [], [], []
    for path, scalar in paths(doc):
        try:
            shown = lookup(view, path)
        except (KeyError, IndexError, TypeError):
            missing.append(path)
            continue
        under_secret = any(template(path[:n]) in secrets for n in range(1, len(path) + 1))
        if scalar and under_secret and shown != REDACTED:
            leaked.append((path, shown))
        if scalar and not under_secret and shown == REDACTED:
            masked_wrongly.append(path)
    assert missing == []
    assert leaked == []
    assert masked_wrongly == []
    # The keys of the view are exactly the schema's: nothing hidden, nothing invented.
    view_keys = {template(p) for p, _ in paths(view)}
    assert {row[0] for row in explain_keys()} <= view_keys
    for secret in ("sk-1", "admin-token-1", "client-key-1", "secret-1", "tok-1", "Bearer otel-token",
                   "fixture-key-file-1"):
        assert secret not in body


async def test_tokens_per_second_is_not_masked(start_proxy):
    proxy = await start_proxy("""
    providers:
      m: {type: mock, tokens_per_second: 200, latency: 0.5, reply: hi}
    models:
      x: {deployments: [{provider: m, model: m}]}
    """)
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/admin/config") as r:
            view = (await r.json())["config"]
    assert view["providers"]["m"]["tokens_per_second"] == 200
    assert view["providers"]["m"]["latency"] == 0.5
    assert view["providers"]["m"]["reply"] == "hi"


async def test_the_view_lists_what_it_used_to_omit(start_proxy):
    proxy = await start_proxy("""
    defaults: {retry: {retries: 3}, breaker: {failures: 7}}
    logging: {level: debug}
    providers:
      m: {type: mock}
    models:
      x:
        fallbacks: [y]
        deployments: [{provider: m, model: m, priority: 1, rpm: 60, tpm: 6000,
                       price: {input_per_mtok: 1, output_per_mtok: 2}}]
      y: {deployments: [{provider: m, model: n}]}
    """)
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/admin/config") as r:
            view = (await r.json())["config"]
    dep = view["models"]["x"]["deployments"][0]
    assert view["models"]["x"]["fallbacks"] == ["y"]
    assert (dep["priority"], dep["rpm"], dep["tpm"]) == (1, 60, 6000)
    assert dep["price"] == {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cached_input_per_mtok": None}
    assert dep["breaker"]["failures"] == 7
    assert view["models"]["x"]["retry"]["retries"] == 3
    assert view["logging"]["level"] == "debug"
    assert view["metrics"]["enabled"] is True
    assert view["tracing"]["enabled"] is False


def test_explain_lists_every_field_of_the_schema(capsys):
    assert main(["check", "--explain"]) == 0
    out = capsys.readouterr().out
    listed = {row[0] for row in explain_keys()}
    classes = schema_classes(Config) | {spec.options for spec in PROVIDER_SPECS.values()}
    for extra in (config_module.ProviderConfig, config_module.ModelConfig, config_module.DeploymentConfig):
        classes |= schema_classes(extra)
    for cls in classes:
        for k in keys_of(cls):
            if k.section_class() is not None:
                continue
            name = ".".join(k.path)
            assert any(p == name or p.endswith("." + name) for p in listed), (cls.__name__, name)
            assert f".{name}` " in out or f"`{name}` " in out, name
            assert k.meta["help"], (cls.__name__, name)


def test_readme_key_reference_is_the_explain_output():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- BEGIN llmproxy check --explain -->\n(.*?)\n<!-- END llmproxy check --explain -->",
                  readme, re.S)
    assert m is not None
    assert m.group(1) == explain_text(), "run: llmproxy check --explain and paste it into README.md"


def test_the_config_types_are_the_registry():
    assert set(config_module.PROVIDER_TYPES) == set(PROVIDER_SPECS) == set(ADAPTERS)
    assert set(config_module.DEFAULT_BASE_URLS) <= set(PROVIDER_SPECS)
    members = [n for n in vars(Adapter) if not n.startswith("_")]
    assert "chat_request" in members and "stream_content_types" in members
    for t, spec in PROVIDER_SPECS.items():
        assert spec.type == t
        for name in members:
            assert hasattr(spec.adapter, name), (t, name)
        assert issubclass(spec.options, ProviderOptions) and dataclasses.is_dataclass(spec.options)
        assert all(f.default is None for f in dataclasses.fields(spec.options)), t
        assert spec.image_urls_to_fetch is None or callable(spec.image_urls_to_fetch)
    # A key is a type's own or common, never both.
    common = {k.path[0] for k in keys_of(config_module.ProviderConfig)}
    for spec in PROVIDER_SPECS.values():
        assert not common & {k.path[0] for k in keys_of(spec.options)}

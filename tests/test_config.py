"""Config loading: path-qualified errors, env expansion, secrets from files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from llmproxy.config.tree import ConfigError, load_config, parse_config

GOOD = """
listen: 0.0.0.0:9000
providers:
  openai:
    type: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
  azure-eu:
    type: azure
    base_url: https://x.openai.azure.com
    api_key: ${AZURE_KEY:-azure-default}
    api_version: "2024-10-21"
  local:
    type: mock
models:
  gpt-4o:
    deployments:
      - {provider: openai, model: gpt-4o}
      - {provider: azure-eu, model: my-gpt4o-deployment, weight: 2}
defaults:
  timeouts: {connect: 5, first_byte: 60, idle: 30, total: 600}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), env=env or {})
    return info.value.problems


def test_the_issue_example_loads_and_expands_env():
    config = parse_config(GOOD, env={"OPENAI_API_KEY": "sk-test"})
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9000)
    assert config.providers["openai"].api_key == "sk-test"
    assert config.providers["azure-eu"].api_key == "azure-default"
    assert config.providers["azure-eu"].options["api_version"] == "2024-10-21"
    deps = config.models["gpt-4o"].deployments
    assert [d.id for d in deps] == ["openai/gpt-4o", "azure-eu/my-gpt4o-deployment"]
    assert deps[1].weight == 2.0
    assert deps[0].timeouts.first_byte == 60.0
    assert len(config.sha256) == 64


def test_config_objects_are_immutable():
    config = parse_config(GOOD, env={"OPENAI_API_KEY": "k"})
    with pytest.raises(AttributeError):
        config.models["gpt-4o"].strategy = "random"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.models["new"] = config.models["gpt-4o"]  # type: ignore[index]


def test_secrets_are_not_in_repr():
    config = parse_config(GOOD, env={"OPENAI_API_KEY": "sk-very-secret"})
    assert "sk-very-secret" not in repr(config)


def test_every_problem_is_listed_with_its_path():
    found = problems("""
    providers:
      openai: {type: openai, api_key: "${MISSING_KEY}", base_ur: x}
      weird: {type: opnai}
    models:
      gpt-4o:
        strategy: fastest
        deployments:
          - {provider: openai, model: gpt-4o, weight: -1}
          - {provider: opena, model: gpt-4o}
          - {provider: openai}
      empty: {deployments: []}
    """)
    expected = [
        "providers.openai.base_ur: unknown key (did you mean 'base_url'?)",
        "providers.openai.api_key: environment variable MISSING_KEY is not set",
        "providers.weird.type: unknown provider type 'opnai' (did you mean 'openai'?)",
        "models.gpt-4o.strategy: unknown strategy 'fastest'",
        "models.gpt-4o.deployments[0].weight: must be a positive number, got -1",
        "models.gpt-4o.deployments[1].provider: unknown provider 'opena' (did you mean 'openai'?)",
        "models.gpt-4o.deployments[2].model: is required",
        "models.empty.deployments: must be a non-empty list",
    ]
    for fragment in expected:
        assert any(fragment in p for p in found), (fragment, found)


def test_unknown_top_level_key_suggests_the_right_one():
    found = problems("""
    provider: {}
    models: {}
    """)
    assert any("provider: unknown key (did you mean 'providers'?)" in p for p in found)


def test_invalid_yaml_names_line_and_column():
    found = problems("providers:\n  a: [1, 2\nmodels: {}\n")
    assert len(found) == 1 and "invalid YAML" in found[0] and "line" in found[0]


def test_listen_and_sizes_are_checked():
    found = problems("""
    listen: localhost
    server: {max_body_size: lots}
    providers: {m: {type: mock}}
    models: {x: {deployments: [{provider: m, model: a}]}}
    """)
    assert any(p.startswith("listen: must be HOST:PORT") for p in found)
    assert any(p.startswith("server.max_body_size: must be a positive size") for p in found)


def test_sizes_accept_units():
    config = parse_config("""
    server: {max_body_size: 2MiB}
    providers: {m: {type: mock}}
    models: {x: {deployments: [{provider: m, model: a}]}}
    """)
    assert config.server.max_body_size == 2 * 1024 * 1024


def test_duplicate_deployment_ids_in_one_model_are_rejected():
    found = problems("""
    providers: {m: {type: mock}}
    models:
      x:
        deployments:
          - {provider: m, model: a}
          - {provider: m, model: a}
    """)
    assert any("duplicate deployment id 'm/a'" in p for p in found)


def test_api_key_file_reads_a_mounted_secret(tmp_path: Path):
    secret = tmp_path / "secrets" / "openai"
    secret.parent.mkdir()
    secret.write_text("sk-from-file\n")
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(textwrap.dedent("""
    providers:
      openai: {type: openai, api_key_file: secrets/openai}
    models:
      gpt-4o: {deployments: [{provider: openai, model: gpt-4o}]}
    """))
    config = load_config(cfg)
    assert config.providers["openai"].api_key == "sk-from-file"

    cfg.write_text(cfg.read_text().replace("secrets/openai", "secrets/missing"))
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert info.value.problems[0].startswith("providers.openai.api_key_file: cannot read secrets/missing")


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "cannot read config" in info.value.problems[0]


def test_provider_option_kinds_are_checked():
    found = problems("""
    providers:
      m: {type: mock, latency: fast, tokens_per_second: 0}
    models: {x: {deployments: [{provider: m, model: a}]}}
    """)
    assert any(p.startswith("providers.m.latency: must be a number") for p in found)
    assert any(p.startswith("providers.m.tokens_per_second: must be a positive number") for p in found)


def test_example_configs_are_valid():
    root = Path(__file__).resolve().parent.parent / "configs"
    for path in sorted(root.glob("*.yaml")):
        load_config(path, env={})


def test_body_limits_defaults_overrides_and_errors():
    from llmproxy.config.views import redacted_view

    config = parse_config(textwrap.dedent("""
    providers:
      a: {type: mock}
      b: {type: mock, limits: {max_event_size: 64KiB}}
    models: {x: {deployments: [{provider: a, model: m}, {provider: b, model: m}]}}
    defaults:
      limits: {max_response_size: 8MiB}
    """), env={})
    a, b = config.providers["a"].limits, config.providers["b"].limits
    assert (a.max_response_size, a.max_event_size) == (8 * 1024**2, 1024**2)
    assert (b.max_response_size, b.max_event_size) == (8 * 1024**2, 64 * 1024)
    view = redacted_view(config)
    assert view["defaults"]["limits"] == {"max_response_size": 8 * 1024**2, "max_event_size": 1024**2}
    assert view["providers"]["b"]["limits"]["max_event_size"] == 64 * 1024
    default = parse_config("providers: {a: {type: mock}}\nmodels: {x: {deployments: [{provider: a, model: m}]}}")
    assert default.providers["a"].limits.max_response_size == 32 * 1024**2

    found = problems("""
    providers:
      a: {type: mock, limits: {max_event_size: [1], max_events: 3}}
    models: {x: {deployments: [{provider: a, model: m}]}}
    defaults:
      limits: {max_response_size: lots}
    """)
    assert any(p.startswith("defaults.limits.max_response_size: must be a positive size") for p in found), found
    assert any(p.startswith("providers.a.limits.max_event_size: must be a positive size") for p in found), found
    assert any(p.startswith("providers.a.limits.max_events: unknown key") for p in found), found
    assert problems("""
    providers: {a: {type: mock, limits: 5}}
    models: {x: {deployments: [{provider: a, model: m}]}}
    """) == ["providers.a.limits: must be a mapping, got int"]

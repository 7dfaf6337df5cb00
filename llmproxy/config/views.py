"""Views of a config: the routing table ``check`` prints, the start-up
summary line, and the admin view with every credential redacted."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from ..observe.redact import url_without_userinfo
from .schema import Key, explain, keys_of
from .tree import Config, ProviderConfig


def describe_routes(config: Config) -> str:
    """The routing table ``check`` prints: model, strategy, deployments."""
    lines = []
    for model in config.models.values():
        lines.append(f"{model.name}  (strategy: {model.strategy})")
        if model.fallbacks:
            lines.append(f"  fallbacks: {', '.join(model.fallbacks)}")
        for dep in model.deployments:
            extras = [f"weight {dep.weight:g}"]
            if dep.priority:
                extras.append(f"priority {dep.priority}")
            if dep.max_concurrency:
                extras.append(f"max_concurrency {dep.max_concurrency}")
            if dep.rpm:
                extras.append(f"rpm {dep.rpm}")
            if dep.tpm:
                extras.append(f"tpm {dep.tpm}")
            lines.append(
                f"  - {dep.id}: provider {dep.provider.name} ({dep.provider.type}) "
                f"model {dep.model} {' '.join(extras)}"
            )
    for alias, target in config.aliases.items():
        lines.append(f"{alias}  (alias of {target})")
    return "\n".join(lines)


def summarize(config: Config) -> str:
    """One line for start-up logs."""
    n_dep = sum(len(m.deployments) for m in config.models.values())
    types = sorted({p.type for p in config.providers.values()})
    return (
        f"{len(config.models)} models, {n_dep} deployments, "
        f"{len(config.providers)} providers ({', '.join(types)})"
    )


REDACTED = "<redacted>"


def redacted_view(config: Config) -> dict[str, Any]:
    """The config as plain data, generated from the schema: every key, each
    secret one masked (admin output). It cannot drift from what is loaded."""
    view = section_view(config)
    view["providers"] = {name: provider_view(p) for name, p in config.providers.items()}
    view["models"] = {
        name: {**section_view(m), "deployments": [section_view(d) for d in m.deployments]}
        for name, m in config.models.items()
    }
    view["keys"] = [section_view(k) for k in config.keys]
    return view


def provider_view(p: ProviderConfig) -> dict[str, Any]:
    """A provider's common keys and its type's own keys, as they are in YAML."""
    return {**section_view(p), **section_view(p.options)}


def section_view(obj: Any) -> dict[str, Any]:
    """``obj``'s keys, nested by their YAML names; secrets masked."""
    out: dict[str, Any] = {}
    for k in keys_of(type(obj)):
        value = getattr(obj, k.name)
        if k.kind == "manual" and k.name in ("providers", "models", "deployments", "keys"):
            continue  # listed by the caller, entry by entry
        at = out
        for part in k.path[:-1]:
            at = at.setdefault(part, {})
        at[k.path[-1]] = _leaf(k, value)
    return out


def _leaf(k: Key, value: Any) -> Any:
    meta = k.meta
    if meta["view"] is not None:
        return meta["view"](value)
    if k.secret:
        if k.kind == "map":
            return {name: REDACTED for name in value}
        if k.kind == "list":
            return [REDACTED] * len(value)
        return REDACTED if value else None
    if meta["url"] and isinstance(value, str):
        return url_without_userinfo(value)
    if k.kind == "section":
        return None if value is None else section_view(value)
    if isinstance(value, (tuple, list, frozenset)):
        return list(value)
    if k.kind == "map" or isinstance(value, MappingProxyType):  # aliases: a manual mapping
        return dict(value)
    return value


def explain_keys() -> list[tuple[str, str, str, str]]:
    """(dotted path, kind, default, help) of every config key, from the
    schema: what ``llmproxy check --explain`` prints."""
    from ..providers.registry import PROVIDER_SPECS
    from .tree import Config, DeploymentConfig, KeyConfig, ModelConfig

    rows: list[tuple[str, str, str, str]] = []
    for row in explain(Config):
        rows.append(row)
        if row[0] == "providers":
            rows.extend(explain(ProviderConfig, "providers.<name>"))
            # A key several types share is one row, unless its help differs.
            by_key: dict[tuple[str, str, str, str], list[str]] = {}
            for t, spec in PROVIDER_SPECS.items():
                for opt in explain(spec.options, "providers.<name>"):
                    by_key.setdefault(opt, []).append(t)
            rows.extend((p, k, d, f"{h} (type: {', '.join(ts)})") for (p, k, d, h), ts in by_key.items())
        elif row[0] == "models":
            rows.extend(r for r in explain(ModelConfig, "models.<name>"))
            rows.extend(explain(DeploymentConfig, "models.<name>.deployments[]"))
        elif row[0] == "keys":
            rows.extend(explain(KeyConfig, "keys[]"))
    return [r for r in rows if r[1] != "section"]


def explain_text() -> str:
    """The key reference as a Markdown table (README's "Every config key")."""
    lines = ["| key | kind | default | what it does |", "|---|---|---|---|"]
    for path, kind, default, help_ in explain_keys():
        cell = help_.replace("|", "\\|")
        lines.append(f"| `{path}` | {kind} | `{default}` | {cell} |")
    return "\n".join(lines)

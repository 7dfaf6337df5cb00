"""Views of a config: the routing table ``check`` prints, the start-up
summary line, and the admin view with every credential redacted."""

from __future__ import annotations

import re
from typing import Any

from .config import BodyLimits, Config, Timeouts
from .redact import url_without_userinfo


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
    return "\n".join(lines)


def summarize(config: Config) -> str:
    """One line for start-up logs."""
    n_dep = sum(len(m.deployments) for m in config.models.values())
    types = sorted({p.type for p in config.providers.values()})
    return (
        f"{len(config.models)} models, {n_dep} deployments, "
        f"{len(config.providers)} providers ({', '.join(types)})"
    )


_SECRET_OPTION = re.compile(r"(secret|token|password|key)", re.I)
REDACTED = "<redacted>"


def redacted_view(config: Config) -> dict[str, Any]:
    """The config as plain data with every credential replaced (admin output)."""

    def timeouts(t: Timeouts) -> dict[str, float]:
        return {"connect": t.connect, "first_byte": t.first_byte, "idle": t.idle, "total": t.total}

    def limits(b: BodyLimits) -> dict[str, int]:
        return {"max_response_size": b.max_response_size, "max_event_size": b.max_event_size}

    providers = {}
    for name, p in config.providers.items():
        providers[name] = {
            "type": p.type,
            "base_url": url_without_userinfo(p.base_url),
            "api_key": REDACTED if p.api_key else None,
            "headers": {k: REDACTED for k in p.headers},
            "timeouts": timeouts(p.timeouts),
            "limits": limits(p.limits),
            **{
                k: (REDACTED if _SECRET_OPTION.search(k) and v else v)
                for k, v in p.options.items()
            },
        }
    models = {
        name: {
            "strategy": m.strategy,
            "deployments": [
                {"id": d.id, "provider": d.provider.name, "model": d.model, "weight": d.weight,
                 "timeouts": timeouts(d.timeouts), "max_tokens": d.max_tokens}
                for d in m.deployments
            ],
        }
        for name, m in config.models.items()
    }
    return {
        "listen": f"{config.server.host}:{config.server.port}",
        "server": {
            "max_body_size": config.server.max_body_size,
            "drain_timeout": config.server.drain_timeout,
            "api_keys": [REDACTED] * len(config.server.api_keys),
            "header_timeout": config.server.header_timeout,
            "body_timeout": config.server.body_timeout,
            "keepalive_timeout": config.server.keepalive_timeout,
            "cors_origins": list(config.server.cors_origins),
            "allowed_hosts": list(config.server.allowed_hosts),
        },
        "admin": {"token": REDACTED if config.admin.token else None},
        "reload": {"enabled": config.reload.enabled, "debounce": config.reload.debounce,
                   "poll_interval": config.reload.poll_interval},
        "defaults": {
            "timeouts": timeouts(config.timeouts),
            "limits": limits(config.limits),
            "upstream": {"limit": config.pool.limit, "limit_per_host": config.pool.limit_per_host,
                         "keepalive_timeout": config.pool.keepalive_timeout},
        },
        "providers": providers,
        "models": models,
    }

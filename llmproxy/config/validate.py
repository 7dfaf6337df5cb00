"""Validation of a parsed YAML document into the config tree.

Every check appends a path-qualified problem and carries on with a default,
so one pass reports everything that is wrong. Any YAML value can turn up
anywhere (a list where a name belongs, null, a bool, a number of 4,000
digits): each is checked for its type before it is hashed, compared or
converted, and a value is only ever quoted through ``show`` (bounded, and
masked under a secret-named key). Unknown keys are errors with a
did-you-mean; ``${VAR}`` and ``${VAR:-default}`` expand from the environment
given (never read here); ``api_key_file`` paths are read relative to the
config's directory.

Plain keys are not listed here: ``walk`` reads each dataclass field's
``config.schema.key`` declaration. What remains below is cross-field:
``listen``, provider types and base URLs, api_key vs api_key_file, Bedrock's
AWS environment defaults, base_url userinfo vs Authorization, deployment
ids agreeing across models, fallbacks naming existing models.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from ..observe.redact import url_credentials, url_without_userinfo
from ..providers.registry import PROVIDER_SPECS
from . import names, section_checks
from .schema import Key, keys_of, one_of, parse_listen, show
from .schema import did_you_mean as _did_you_mean
from .schema import kind_of as _kind
from .secrets import is_secret_key
from .tree import (
    MAX_PROBLEMS,
    BodyLimits,
    BreakerConfig,
    Config,
    DeploymentConfig,
    HealthCheckConfig,
    ModelConfig,
    ProviderConfig,
    RetryConfig,
    ServerConfig,
    Timeouts,
)

__all__ = ["Validator", "parse_listen", "show"]

_T = TypeVar("_T")
_ABSENT: Any = object()  # a key not in its mapping (null is a value: YAML's ``key:``)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
# LiteLLM's spelling of a whole value from the environment, so a key copied
# from a LiteLLM config reads the same: ``os.environ/VAR`` is ``${VAR}``.
_LITELLM_ENV_REF = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")
_SIZE = re.compile(r"^\s*(\d{1,15}(?:\.\d{1,15})?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.I)
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
    "gb": 1000**3, "gib": 1024**3,
}
# Beyond any timeout, rate or price a config means (and float() of a larger
# int can overflow); sizes have their own, larger bound.
MAX_NUMBER = 1e12
MAX_SIZE = 1 << 50
MAX_SECRET_FILE = 64 * 1024  # api_key_file: a key, not /dev/zero



class Validator:
    def __init__(self, env: Mapping[str, str], base_dir: Path) -> None:
        self.env = env
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.dropped = 0  # problems past MAX_PROBLEMS, counted only
        self.retry_defaults = RetryConfig()
        self.breaker_defaults = BreakerConfig()
        self.health_defaults = HealthCheckConfig()
        self.queue_timeout = 5.0
        self.unsupported_params = "error"

    def fail(self, path: str, message: str) -> None:
        if len(self.problems) >= MAX_PROBLEMS:
            self.dropped += 1
            return
        self.problems.append(f"{path}: {message}" if path else message)

    @staticmethod
    def shown(node: Any, path: str) -> str:
        """``node`` for a message: bounded, and never the value of a secret."""
        last = re.sub(r"\[\d+\]$", "", path).rpartition(".")[2]
        if is_secret_key(last) or ".headers." in path:
            return f"{_kind(node)} (not shown: a credential)"
        return show(node)

    # -- generic helpers

    def mapping(self, node: Any, path: str, allowed: frozenset[str] | set[str]) -> dict[str, Any]:
        if node is None:
            return {}
        if not isinstance(node, dict):
            self.fail(path, f"must be a mapping, got {_kind(node)}")
            return {}
        for key in node:
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings, got {show(key)}")
            elif key not in allowed:
                suffix = _did_you_mean(key, allowed)
                known = ", ".join(sorted(allowed))
                self.fail(_join(path, key), f"unknown key{suffix}; known keys: {known}")
        return {k: v for k, v in node.items() if isinstance(k, str) and k in allowed}

    def expand(self, value: Any, path: str) -> Any:
        """Expand ``${VAR}`` / ``${VAR:-default}`` in a string value, or a whole
        ``os.environ/VAR`` (LiteLLM's form)."""
        if not isinstance(value, str):
            return value
        if value.startswith("os.environ/") and (m := _LITELLM_ENV_REF.fullmatch(value)):
            value = "${" + m.group(1) + "}"
        if "${" not in value:
            return value

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.fail(path, f"environment variable {name} is not set")
            return ""

        return _ENV_REF.sub(sub, value)

    def string(self, node: Any, path: str, *, required: bool = False) -> str | None:
        if node is None:
            if required:
                self.fail(path, "is required")
            return None
        if isinstance(node, bool) or not isinstance(node, (str, int, float)) or (
            isinstance(node, int) and node.bit_length() > 256  # str() refuses past 4,300 digits
        ):
            self.fail(path, f"must be a string, got {_kind(node)}")
            return None
        value: str = self.expand(str(node), path)
        if required and value == "":
            self.fail(path, "must not be empty")
        return value

    def number(
        self, node: Any, path: str, default: float, *, positive: bool = True, integer: bool = False
    ) -> float:
        if node is None:
            return default
        node = self.expand(node, path)
        if isinstance(node, str):
            try:
                node = float(node)
            except ValueError:
                pass
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            self.fail(path, f"must be a {'whole ' if integer else ''}number, got {self.shown(node, path)}")
            return default
        if isinstance(node, float) and not math.isfinite(node) or abs(node) > MAX_NUMBER:
            self.fail(path, f"must be a finite number of at most {MAX_NUMBER:g}, got {self.shown(node, path)}")
            return default
        if integer and node != int(node):
            self.fail(path, f"must be a whole number, got {self.shown(node, path)}")
            return default
        if positive and node <= 0:
            self.fail(path, f"must be a positive number, got {self.shown(node, path)}")
            return default
        if not positive and node < 0:
            self.fail(path, f"must not be negative, got {self.shown(node, path)}")
            return default
        return int(node) if integer else float(node)

    def size(self, node: Any, path: str, default: int) -> int:
        if node is None:
            return default
        if isinstance(node, int) and not isinstance(node, bool) and 0 < node <= MAX_SIZE:
            return node
        m = _SIZE.match(node) if isinstance(node, str) else None
        value = int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower() or None]) if m else 0
        if not 0 < value <= MAX_SIZE:
            self.fail(path, f"must be a positive size such as 20MiB or 1048576 (at most 1 PiB), "
                            f"got {self.shown(node, path)}")
            return default
        return value

    # -- the generic walk: every key as its dataclass field declares it (config.schema)

    def walk(
        self, classes: Sequence[type], node: Any, path: str, base: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]] | None:
        """The field values of each of ``classes``, read from one YAML mapping.

        ``base`` overrides a field's declared default (for a section: the
        instance its keys default to, e.g. ``defaults.timeouts`` under a
        provider). Manual keys come back as their raw node, when present.
        None if ``node`` is not a mapping (reported).
        """
        if node is not None and not isinstance(node, dict):
            self.fail(path, f"must be a mapping, got {_kind(node)}")
            return None
        tree: dict[str, Any] = {}
        for i, cls in enumerate(classes):
            for k in keys_of(cls):
                t = tree
                for part in k.path[:-1]:
                    t = t.setdefault(part, {})
                t[k.path[-1]] = (i, k)
        out: list[dict[str, Any]] = [{} for _ in classes]
        self._walk_tree(tree, node, path, base or {}, out)
        return out

    def _walk_tree(
        self, tree: dict[str, Any], node: Any, path: str, base: Mapping[str, Any], out: list[dict[str, Any]]
    ) -> None:
        m = self.mapping(node, path, set(tree))
        for name, sub in tree.items():
            kpath = _join(path, name)
            if isinstance(sub, dict):
                self._walk_tree(sub, m.get(name), kpath, base, out)
                continue
            i, k = sub
            if k.kind == "manual":
                if name in m:
                    out[i][k.name] = m[name]
                continue
            default = base[k.name] if k.name in base else k.default()
            out[i][k.name] = self.value(k, m[name] if name in m else _ABSENT, kpath, default)

    def value(self, k: Key, node: Any, path: str, default: Any) -> Any:
        """One key's value (``default`` when absent, null or invalid: reported)."""
        meta, kind = k.meta, k.kind
        if kind == "bool" and node is not _ABSENT:
            return self.boolean(node, path, default)
        if node is _ABSENT or node is None:
            if meta["required"]:
                self.fail(path, "is required")
                return default
            if kind == "str" and meta["nullable"] and node is None:
                return None
            if kind == "section" and default is None and k.field.default is dataclasses.MISSING:
                return k.section_class()()  # type: ignore[misc]
            return default
        if kind in ("int", "number"):
            integer = kind == "int"
            value = self.number(node, path, 1 if default is None else default,
                                positive=meta["positive"], integer=integer)
            value = int(value) if integer else value
            if meta["max"] is not None and value > meta["max"]:
                self.fail(path, f"must be between 0 and {meta['max']:g}, got {value!r}")
                return default
            return value
        if kind == "size":
            return self.size(node, path, default)
        if kind == "str":
            text = self.string(node, path, required=meta["required"] or meta["nonempty"])
            if text is None:
                return default
            if meta["nullable"] and text == "":
                return None
            if meta["lower"]:
                text = text.lower()
            if meta["check"] is not None and (problem := meta["check"](text)):
                self.fail(path, problem)
                return default
            return text if text or meta["required"] else default
        if kind == "enum":
            raw = self.expand(node, path)
            if isinstance(raw, str) and meta["lower"]:
                raw = raw.lower()
            if isinstance(raw, str) and raw in meta["choices"]:
                return raw
            shown = repr(raw) if isinstance(raw, str) and len(raw) <= 40 else _kind(raw)
            self.fail(path, f"must be {one_of(meta['choices'])}, got {shown}")
            return default
        if kind == "list":
            if meta["items"] is not None:
                items: tuple[str, ...] = self.names(node, path, *meta["items"])
            elif not isinstance(node, list):
                self.fail(path, f"must be {meta['what']}, got {_kind(node)}")
                return default
            else:
                items = tuple(s for i, v in enumerate(node) if (s := self.string(v, f"{path}[{i}]", required=True)))
            return frozenset(items) if isinstance(default, frozenset) else items
        if kind == "map":
            return MappingProxyType(self.headers(node, path))
        if kind == "section":
            cls = k.section_class()
            assert cls is not None
            return self.section(cls, node, path, default if default is not None else cls())
        raise AssertionError(f"unknown key kind {kind!r}")

    def section(self, cls: type[_T], node: Any, path: str, base: _T) -> _T:
        """A nested section; its keys default to ``base``'s values."""
        values = self.walk([cls], node, path, {k.name: getattr(base, k.name) for k in keys_of(cls)})
        return base if values is None else cls(**values[0])

    def boolean(self, node: Any, path: str, default: bool = False) -> bool:
        node = self.expand(node, path)
        if isinstance(node, str) and node.lower() in ("true", "false"):
            return node.lower() == "true"
        if not isinstance(node, bool):
            self.fail(path, f"must be true or false, got {self.shown(node, path)}")
            return default
        return node

    # -- sections with cross-field rules

    def config(self, doc: Any, source: str, sha: str) -> Config | None:
        values = self.walk([Config], {} if doc is None else doc, "")
        if values is None:
            return None
        v = values[0]
        self.retry_defaults, self.breaker_defaults = v["retry"], v["breaker"]
        self.queue_timeout = v["queue_timeout"]
        self.unsupported_params = v["unsupported_params"]
        self.health_defaults = v["health_check"]
        server: ServerConfig = v["server"]
        listen_s = self.string(v.get("listen"), "listen")
        if listen_s is not None:
            parsed = parse_listen(listen_s)
            if parsed is None:
                self.fail("listen", f"must be HOST:PORT such as 127.0.0.1:8080, got {show(listen_s)}")
            else:
                server = dataclasses.replace(server, host=parsed[0], port=parsed[1])
        section_checks.check_jwt(self, v["auth"].jwt)
        if v["cache"].enabled and v["cache"].backend == "redis" and v["state"].redis is None:
            self.fail("cache.backend", "redis needs state.redis (the server's redis:// URL)")
        if v["responses"].store_backend == "redis" and v["state"].redis is None:
            self.fail("responses.store_backend", "redis needs state.redis (the server's redis:// URL)")
        providers = self.providers(v.get("providers"), v["timeouts"], v["limits"])
        models = self.models(v.get("models"), providers)
        from .keys_validate import (  # they use this class
            apply_prices,
            prices_file,
            virtual_keys,
        )

        prices = prices_file(self, v.get("prices_file"))
        if prices:
            models = apply_prices(models, prices)
        aliases = names.aliases(v.get("aliases"), models, self.fail)
        keys = virtual_keys(self, v.get("keys"), models, server.api_keys, names.routable(models, aliases))
        return Config(**{
            **v, "server": server, "listen": f"{server.host}:{server.port}", "keys": keys,
            "prices_file": v.get("prices_file") if isinstance(v.get("prices_file"), str) else None,
            "providers": MappingProxyType(providers), "models": MappingProxyType(models),
            "aliases": MappingProxyType(aliases),
            "source": source, "sha256": sha,
        })

    def names(self, node: Any, path: str, shape: re.Pattern[str], what: str) -> tuple[str, ...]:
        """A list of origins or host names, lower-cased; ``"*"`` is always accepted."""
        if node is None:
            return ()
        if not isinstance(node, list):
            self.fail(path, f"must be a list of strings, got {_kind(node)}")
            return ()
        out: list[str] = []
        for i, item in enumerate(node):
            value = self.string(item, f"{path}[{i}]", required=True)
            if not value:
                continue
            value = value.strip().lower().rstrip("/")
            if value != "*" and not shape.fullmatch(value):
                self.fail(f"{path}[{i}]", f"must be {what}, got {value[:100]!r}")
                continue
            out.append(value)
        return tuple(out)

    def providers(self, node: Any, timeouts: Timeouts, limits: BodyLimits) -> dict[str, ProviderConfig]:
        out: dict[str, ProviderConfig] = {}
        for name, path, body in self.named("providers", node, "name at least one provider",
                                           "a mapping of names to providers"):
            if not isinstance(body, dict):
                self.fail(path, f"must be a mapping, got {_kind(body)}")
                continue
            ptype = body.get("type")
            if not isinstance(ptype, str) or ptype not in PROVIDER_SPECS:
                suffix = _did_you_mean(ptype, PROVIDER_SPECS) if isinstance(ptype, str) else ""
                self.fail(
                    f"{path}.type",
                    f"unknown provider type {show(ptype)}{suffix}; known types: "
                    + ", ".join(sorted(PROVIDER_SPECS)),
                )
                continue
            spec = PROVIDER_SPECS[ptype]
            values = self.walk([ProviderConfig, spec.options], body, path, {"timeouts": timeouts, "limits": limits})
            assert values is not None
            p, given = values
            base_url = self.string(p.get("base_url"), f"{path}.base_url")
            if base_url is None:
                base_url = spec.default_base_url
                if base_url is None:
                    self.fail(f"{path}.base_url", f"is required for type {ptype}")
                    base_url = ""
            elif not re.match(r"^https?://[^/\s]+", base_url):
                self.fail(f"{path}.base_url", f"must be an http(s) URL, got {show(url_without_userinfo(base_url))}")
            api_key = self.api_key(p, path)
            options = {k: v for k, v in given.items() if v is not None}
            if ptype == "bedrock":
                options, base_url = section_checks.aws_defaults(self, options, base_url, path)
            key_file = p.get("api_key_file")
            out[name] = provider = ProviderConfig(
                name=name,
                type=ptype,
                base_url=base_url.rstrip("/"),
                api_key=api_key,
                api_key_file=key_file if isinstance(key_file, str) else None,
                headers=p["headers"],
                timeouts=p["timeouts"],
                limits=p["limits"],
                options=spec.options(**options),
            )
            if url_credentials(provider.base_url) and _sets_authorization(provider):
                self.fail(f"{path}.base_url", "has user:password@, which is sent as 'Authorization: Basic', "
                          "but this provider sends its own Authorization header (api_key, headers or AWS "
                          "signing); keep one of the two")
        return out

    def named(self, section: str, node: Any, required: str, shape: str) -> list[tuple[str, str, Any]]:
        """``providers:`` / ``models:``: (name, path, body) of each entry of a
        required mapping whose keys are names."""
        if node is None:
            self.fail(section, f"is required: {required}")
            return []
        if not isinstance(node, dict):
            self.fail(section, f"must be {shape}, got {_kind(node)}")
            return []
        out: list[tuple[str, str, Any]] = []
        for key, body in node.items():
            path = _join(section, key)
            name = self.name(key, path)
            if name is not None:
                out.append((name, path, body))
        return out

    def name(self, key: Any, path: str) -> str | None:
        """A provider or model name: YAML may make it a number, never a list or null."""
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            self.fail(path, f"names must be strings, got {show(key)}")
            return None
        return str(key)

    def headers(self, node: Any, path: str) -> dict[str, str]:
        out: dict[str, str] = {}
        if node is None:
            return out
        if not isinstance(node, dict):
            self.fail(path, f"must be a mapping, got {_kind(node)}")
            return out
        for hk, hv in node.items():
            hpath = _join(path, hk)
            if not isinstance(hk, str):
                self.fail(hpath, f"header names must be strings, got {show(hk)}")
                continue
            value = self.string(hv, hpath, required=True)
            if value is not None:
                out[hk] = value
        return out

    def api_key(self, p: dict[str, Any], path: str) -> str | None:
        if "api_key" in p and "api_key_file" in p:
            self.fail(path, "set api_key or api_key_file, not both")
        if "api_key_file" in p:
            return self.secret_file(p["api_key_file"], f"{path}.api_key_file")
        return self.string(p.get("api_key"), f"{path}.api_key")

    def secret_file(self, node: Any, path: str) -> str | None:
        """The stripped text of a secret file (relative to the config's directory)."""
        fpath = self.string(node, path, required=True)
        if not fpath:
            return None
        resolved = Path(fpath) if os.path.isabs(fpath) else self.base_dir / fpath
        try:
            with resolved.open("rb") as f:
                data = f.read(MAX_SECRET_FILE + 1)
        except OSError as exc:
            self.fail(path, f"cannot read {fpath[:200]}: {exc.strerror or exc}")
            return None
        if len(data) > MAX_SECRET_FILE:
            self.fail(path, f"{fpath[:200]} is larger than {MAX_SECRET_FILE} bytes")
            return None
        try:
            return data.decode().strip()
        except UnicodeDecodeError:
            self.fail(path, f"{fpath[:200]} is not UTF-8 text")
            return None

    def models(self, node: Any, providers: dict[str, ProviderConfig]) -> dict[str, ModelConfig]:
        out: dict[str, ModelConfig] = {}
        ids: dict[str, str] = {}
        for name, path, body in self.named("models", node, "name at least one model",
                                           "a mapping of model names"):
            base = {"retry": self.retry_defaults}
            values = self.walk([ModelConfig], body, path, base) or self.walk([ModelConfig], {}, path, base)
            assert values is not None
            m = values[0]
            m["cache"] = section_checks.model_cache(self, m.pop("cache", None), f"{path}.cache")
            deps_node = m.pop("deployments", None)
            if not isinstance(deps_node, list) or not deps_node:
                self.fail(f"{path}.deployments", "must be a non-empty list of deployments")
                continue
            deps: list[DeploymentConfig] = []
            for i, dnode in enumerate(deps_node):
                dep = self.deployment(dnode, f"{path}.deployments[{i}]", providers)
                if dep is None:
                    continue
                if dep.id in ids and ids[dep.id] == name:
                    self.fail(f"{path}.deployments[{i}]",
                              f"duplicate deployment id {show(dep.id)}; give one of them an 'id:'")
                    continue
                ids[dep.id] = name
                deps.append(dep)
            out[name] = ModelConfig(name=name, deployments=tuple(deps), **m)
        for name, model in out.items():
            for i, fb in enumerate(model.fallbacks):
                if fb not in out:
                    suffix = _did_you_mean(fb, out)
                    self.fail(f"{_join('models', name)}.fallbacks[{i}]", f"unknown model {show(fb)}{suffix}")
                elif fb == name:
                    self.fail(f"{_join('models', name)}.fallbacks[{i}]", "a model cannot fall back to itself")
        names.check_models(out, self.fail)
        first: dict[str, tuple[str, DeploymentConfig]] = {}
        for name, model in out.items():
            for dep in model.deployments:
                seen = first.setdefault(dep.id, (name, dep))
                if seen[1].limits() != dep.limits():
                    self.fail(
                        f"{_join('models', name)}.deployments",
                        f"deployment id {show(dep.id)} is also used by model {show(seen[0])} with different "
                        "provider, model, limits, breaker or timeouts; give one of them its own 'id:'",
                    )
        return out

    def deployment(
        self, node: Any, path: str, providers: dict[str, ProviderConfig]
    ) -> DeploymentConfig | None:
        if not isinstance(node, dict):
            self.fail(path, f"must be a mapping, got {_kind(node)}")
            return None
        pname = self.string(node.get("provider"), f"{path}.provider", required=True)
        provider = providers.get(pname or "")
        if pname and provider is None:
            suffix = _did_you_mean(pname, providers)
            self.fail(f"{path}.provider", f"unknown provider {show(pname)}{suffix}")
        base = {"timeouts": provider.timeouts if provider else Timeouts(), "breaker": self.breaker_defaults,
                "queue_timeout": self.queue_timeout, "unsupported_params": self.unsupported_params,
                "health_check": self.health_defaults}
        values = self.walk([DeploymentConfig], node, path, base)
        assert values is not None
        d = values[0]
        if provider is None or not d["model"]:
            return None
        hc: HealthCheckConfig = d["health_check"]
        if hc.active(provider.type) and hc.kind == "models" and not _lists_models(provider.type):
            self.fail(f"{path}.health_check.kind",
                      f"provider type {show(provider.type)} has no models-list probe; use kind: chat "
                      "(a one-token completion) or enabled: false")
        d["id"] = d["id"] or f"{pname}/{d['model']}"
        return DeploymentConfig(**{**d, "provider": provider})

def _join(path: str, key: object) -> str:
    # A key is part of every message under it: bounded like a value.
    text = key if isinstance(key, str) else show(key)
    if len(text) > _MAX_KEY:
        text = text[:_MAX_KEY - 3] + "..."
    return f"{path}.{text}" if path else text


_MAX_KEY = 64


def _lists_models(provider_type: str) -> bool:
    spec = PROVIDER_SPECS.get(provider_type)
    return spec is not None and spec.models_request is not None


def _sets_authorization(provider: ProviderConfig) -> bool:
    """Would this provider's requests carry an Authorization header of their
    own? (aiohttp refuses to add userinfo's Basic credential to one.) Asks
    the provider's adapter for a request, so each type's rule lives once."""
    from ..errors import ProxyError
    from ..providers import (
        adapter_for,  # here: the adapters import this package's config
    )

    dep = DeploymentConfig(id="-", provider=provider, model="-")
    probe = {"model": "-", "messages": [{"role": "user", "content": "-"}], "max_tokens": 1}
    try:
        req = adapter_for(provider.type).chat_request(dep, probe, stream=False)
    except (ProxyError, KeyError, TypeError, ValueError):
        return any(k.lower() == "authorization" for k in provider.headers)
    return req.aws_sigv4 is not None or any(k.lower() == "authorization" for k in req.headers)

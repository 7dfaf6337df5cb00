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
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .config import (
    COMMON_PROVIDER_KEYS,
    DEFAULT_BASE_URLS,
    DEFAULT_MAX_BODY,
    MAX_PROBLEMS,
    PROVIDER_TYPES,
    STRATEGIES,
    WHEN_ALL_OPEN,
    AdminConfig,
    BodyLimits,
    BreakerConfig,
    Config,
    DeploymentConfig,
    LoggingConfig,
    MetricsConfig,
    ModelConfig,
    Price,
    ProviderConfig,
    ReloadConfig,
    RetryConfig,
    ServerConfig,
    Timeouts,
    TracingConfig,
    UpstreamPoolConfig,
)
from .config_secrets import is_secret_key
from .redact import url_credentials, url_without_userinfo

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
# scheme://host[:port], as a browser sends it in Origin (RFC 6454 §6.1); "null" too.
_ORIGIN = re.compile(r"null|https?://(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:\d{1,5})?")
# A host name or IP literal without port; "*.example.com" for any subdomain.
_HOST_NAME = re.compile(r"\[[0-9a-f:.]+\]|(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
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
        self.queue_timeout = 5.0

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
        """Expand ``${VAR}`` / ``${VAR:-default}`` in a string value."""
        if not isinstance(value, str) or "${" not in value:
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

    # -- sections

    def config(self, doc: Any, source: str, sha: str) -> Config | None:
        if doc is None:
            doc = {}
        top = self.mapping(
            doc, "", {"listen", "server", "providers", "models", "defaults", "admin", "reload", "logging",
                      "metrics", "tracing"}
        )
        if not isinstance(doc, dict):
            return None
        defaults = self.mapping(
            top.get("defaults"), "defaults", {"timeouts", "upstream", "retry", "breaker", "queue_timeout",
                                          "limits"}
        )
        timeouts = self.timeouts(defaults.get("timeouts"), "defaults.timeouts", Timeouts())
        limits = self.body_limits(defaults.get("limits"), "defaults.limits", BodyLimits())
        pool = self.pool(defaults.get("upstream"), "defaults.upstream")
        self.retry_defaults = self.retry(defaults.get("retry"), "defaults.retry", RetryConfig())
        self.breaker_defaults = self.breaker(defaults.get("breaker"), "defaults.breaker", BreakerConfig())
        self.queue_timeout = self.number(
            defaults.get("queue_timeout"), "defaults.queue_timeout", 5.0, positive=False
        )
        server = self.server(top.get("listen"), top.get("server"))
        providers = self.providers(top.get("providers"), timeouts, limits)
        models = self.models(top.get("models"), providers)
        admin = self.mapping(top.get("admin"), "admin", {"token"})
        rl = self.mapping(top.get("reload"), "reload", {"enabled", "debounce", "poll_interval"})
        d = ReloadConfig()
        return Config(
            retry=self.retry_defaults,
            breaker=self.breaker_defaults,
            admin=AdminConfig(token=self.string(admin.get("token"), "admin.token") or None),
            reload=ReloadConfig(
                enabled=self.option(rl["enabled"], "reload.enabled", "bool") if "enabled" in rl else True,
                debounce=self.number(rl.get("debounce"), "reload.debounce", d.debounce, positive=False),
                poll_interval=self.number(rl.get("poll_interval"), "reload.poll_interval", d.poll_interval),
            ),
            logging=self.logging_section(top.get("logging")),
            metrics=self.metrics_section(top.get("metrics")),
            tracing=self.tracing_section(top.get("tracing")),
            server=server,
            providers=MappingProxyType(providers),
            models=MappingProxyType(models),
            timeouts=timeouts,
            pool=pool,
            limits=limits,
            source=source,
            sha256=sha,
        )

    def logging_section(self, node: Any) -> LoggingConfig:
        keys = {"level", "format", "access_log", "redact_emails", "redact_cards", "log_bodies"}
        lg = self.mapping(node, "logging", keys)
        d = LoggingConfig()
        level = (self.string(lg.get("level"), "logging.level") or d.level).lower()
        if level not in ("debug", "info", "warning", "error"):
            self.fail("logging.level", f"must be debug, info, warning or error, got {show(level)}")
            level = d.level
        fmt = self.string(lg.get("format"), "logging.format") or d.format
        if fmt not in ("json", "text"):
            self.fail("logging.format", f"must be json or text, got {show(fmt)}")
            fmt = d.format

        def flag(key: str, default: bool) -> bool:
            return bool(self.option(lg[key], f"logging.{key}", "bool")) if key in lg else default

        return LoggingConfig(
            level=level, format=fmt, access_log=flag("access_log", d.access_log),
            redact_emails=flag("redact_emails", d.redact_emails), redact_cards=flag("redact_cards", d.redact_cards),
            log_bodies=flag("log_bodies", d.log_bodies),
        )

    def metrics_section(self, node: Any) -> MetricsConfig:
        m = self.mapping(node, "metrics", {"enabled", "listen"})
        listen = self.string(m.get("listen"), "metrics.listen")
        if listen is not None and parse_listen(listen) is None:
            self.fail("metrics.listen", f"must be HOST:PORT such as 0.0.0.0:9464, got {show(listen)}")
            listen = None
        enabled = bool(self.option(m["enabled"], "metrics.enabled", "bool")) if "enabled" in m else True
        return MetricsConfig(enabled=enabled, listen=listen)

    def tracing_section(self, node: Any) -> TracingConfig:
        t = self.mapping(node, "tracing", {"enabled", "endpoint", "service_name", "sample_ratio", "headers"})
        d = TracingConfig()
        ratio = self.number(t.get("sample_ratio"), "tracing.sample_ratio", d.sample_ratio, positive=False)
        if ratio > 1:
            self.fail("tracing.sample_ratio", f"must be between 0 and 1, got {ratio!r}")
            ratio = d.sample_ratio
        headers = self.headers(t.get("headers"), "tracing.headers")
        return TracingConfig(
            enabled=bool(self.option(t["enabled"], "tracing.enabled", "bool")) if "enabled" in t else False,
            endpoint=self.string(t.get("endpoint"), "tracing.endpoint"),
            service_name=self.string(t.get("service_name"), "tracing.service_name") or d.service_name,
            sample_ratio=ratio, headers=MappingProxyType(headers),
        )

    def timeouts(self, node: Any, path: str, base: Timeouts) -> Timeouts:
        t = self.mapping(node, path, {"connect", "first_byte", "idle", "total"})
        return Timeouts(
            connect=self.number(t.get("connect"), f"{path}.connect", base.connect),
            first_byte=self.number(t.get("first_byte"), f"{path}.first_byte", base.first_byte),
            idle=self.number(t.get("idle"), f"{path}.idle", base.idle),
            total=self.number(t.get("total"), f"{path}.total", base.total),
        )

    def body_limits(self, node: Any, path: str, base: BodyLimits) -> BodyLimits:
        b = self.mapping(node, path, {"max_response_size", "max_event_size"})
        return BodyLimits(
            max_response_size=self.size(b.get("max_response_size"), f"{path}.max_response_size",
                                        base.max_response_size),
            max_event_size=self.size(b.get("max_event_size"), f"{path}.max_event_size", base.max_event_size),
        )

    def retry(self, node: Any, path: str, base: RetryConfig) -> RetryConfig:
        r = self.mapping(node, path, {"retries", "backoff", "max_backoff", "budget_ratio", "budget_min",
                                      "budget_window"})
        return RetryConfig(
            retries=int(self.number(r.get("retries"), f"{path}.retries", base.retries,
                                    integer=True, positive=False)),
            backoff=self.number(r.get("backoff"), f"{path}.backoff", base.backoff, positive=False),
            max_backoff=self.number(r.get("max_backoff"), f"{path}.max_backoff", base.max_backoff,
                                    positive=False),
            budget_ratio=self.number(r.get("budget_ratio"), f"{path}.budget_ratio", base.budget_ratio,
                                     positive=False),
            budget_min=int(self.number(r.get("budget_min"), f"{path}.budget_min", base.budget_min,
                                       integer=True, positive=False)),
            budget_window=self.number(r.get("budget_window"), f"{path}.budget_window", base.budget_window),
        )

    def breaker(self, node: Any, path: str, base: BreakerConfig) -> BreakerConfig:
        b = self.mapping(node, path, {"failures", "failure_ratio", "min_requests", "window", "cooldown",
                                      "half_open_probes", "max_retry_after", "when_all_open"})
        ratio = self.number(b.get("failure_ratio"), f"{path}.failure_ratio", base.failure_ratio)
        if ratio > 1:
            self.fail(f"{path}.failure_ratio", f"must be between 0 and 1, got {ratio!r}")
            ratio = base.failure_ratio
        cap = self.number(b.get("max_retry_after"), f"{path}.max_retry_after", base.max_retry_after)
        if not math.isfinite(cap):
            self.fail(f"{path}.max_retry_after", f"must be a finite number of seconds, got {cap!r}")
            cap = base.max_retry_after
        when = base.when_all_open
        if "when_all_open" in b:
            raw = self.expand(b["when_all_open"], f"{path}.when_all_open")
            if raw in WHEN_ALL_OPEN:
                when = raw
            else:
                shown = repr(raw) if isinstance(raw, str) and len(raw) <= 40 else _kind(raw)
                self.fail(f"{path}.when_all_open", f"must be {' or '.join(WHEN_ALL_OPEN)}, got {shown}")
        return BreakerConfig(
            failures=int(self.number(b.get("failures"), f"{path}.failures", base.failures, integer=True)),
            failure_ratio=ratio,
            min_requests=int(self.number(b.get("min_requests"), f"{path}.min_requests", base.min_requests,
                                         integer=True)),
            window=self.number(b.get("window"), f"{path}.window", base.window),
            cooldown=self.number(b.get("cooldown"), f"{path}.cooldown", base.cooldown),
            half_open_probes=int(self.number(b.get("half_open_probes"), f"{path}.half_open_probes",
                                             base.half_open_probes, integer=True)),
            max_retry_after=cap,
            when_all_open=when,
        )

    def pool(self, node: Any, path: str) -> UpstreamPoolConfig:
        p = self.mapping(node, path, {"limit", "limit_per_host", "keepalive_timeout"})
        d = UpstreamPoolConfig()
        return UpstreamPoolConfig(
            limit=int(self.number(p.get("limit"), f"{path}.limit", d.limit, integer=True, positive=False)),
            limit_per_host=int(
                self.number(p.get("limit_per_host"), f"{path}.limit_per_host", d.limit_per_host,
                            integer=True, positive=False)
            ),
            keepalive_timeout=self.number(
                p.get("keepalive_timeout"), f"{path}.keepalive_timeout", d.keepalive_timeout
            ),
        )

    def server(self, listen: Any, node: Any) -> ServerConfig:
        s = self.mapping(node, "server", {
            "max_body_size", "drain_timeout", "api_keys", "header_timeout", "body_timeout",
            "keepalive_timeout", "cors_origins", "allowed_hosts",
        })
        d = ServerConfig()
        host, port = "127.0.0.1", 8080
        listen_s = self.string(listen, "listen")
        if listen_s is not None:
            parsed = parse_listen(listen_s)
            if parsed is None:
                self.fail("listen", f"must be HOST:PORT such as 127.0.0.1:8080, got {show(listen_s)}")
            else:
                host, port = parsed
        keys: set[str] = set()
        raw_keys = s.get("api_keys")
        if raw_keys is not None:
            if not isinstance(raw_keys, list):
                self.fail("server.api_keys", f"must be a list of strings, got {_kind(raw_keys)}")
            else:
                for i, k in enumerate(raw_keys):
                    value = self.string(k, f"server.api_keys[{i}]", required=True)
                    if value:
                        keys.add(value)
        return ServerConfig(
            host=host,
            port=port,
            max_body_size=self.size(s.get("max_body_size"), "server.max_body_size", DEFAULT_MAX_BODY),
            drain_timeout=self.number(s.get("drain_timeout"), "server.drain_timeout", 30.0, positive=False),
            api_keys=frozenset(keys),
            header_timeout=self.number(s.get("header_timeout"), "server.header_timeout", d.header_timeout),
            body_timeout=self.number(s.get("body_timeout"), "server.body_timeout", d.body_timeout),
            keepalive_timeout=self.number(
                s.get("keepalive_timeout"), "server.keepalive_timeout", d.keepalive_timeout
            ),
            cors_origins=self.names(s.get("cors_origins"), "server.cors_origins", _ORIGIN,
                                    "an origin such as https://app.example.com or \"*\""),
            allowed_hosts=self.names(s.get("allowed_hosts"), "server.allowed_hosts", _HOST_NAME,
                                     "a host name such as proxy.internal (no port) or \"*\""),
        )

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
        if node is None:
            self.fail("providers", "is required: name at least one provider")
            return out
        if not isinstance(node, dict):
            self.fail("providers", f"must be a mapping of names to providers, got {_kind(node)}")
            return out
        for key, body in node.items():
            path = _join("providers", key)
            name = self.name(key, path)
            if name is None:
                continue
            if not isinstance(body, dict):
                self.fail(path, f"must be a mapping, got {_kind(body)}")
                continue
            ptype = body.get("type")
            if not isinstance(ptype, str) or ptype not in PROVIDER_TYPES:
                suffix = _did_you_mean(ptype, PROVIDER_TYPES) if isinstance(ptype, str) else ""
                self.fail(
                    f"{path}.type",
                    f"unknown provider type {show(ptype)}{suffix}; known types: "
                    + ", ".join(sorted(PROVIDER_TYPES)),
                )
                continue
            extra = PROVIDER_TYPES[ptype]
            p = self.mapping(body, path, COMMON_PROVIDER_KEYS | set(extra))
            base_url = self.string(p.get("base_url"), f"{path}.base_url")
            if base_url is None:
                base_url = DEFAULT_BASE_URLS.get(ptype)
                if base_url is None:
                    self.fail(f"{path}.base_url", f"is required for type {ptype}")
                    base_url = ""
            elif not re.match(r"^https?://[^/\s]+", base_url):
                self.fail(f"{path}.base_url", f"must be an http(s) URL, got {show(url_without_userinfo(base_url))}")
            api_key = self.api_key(p, path)
            headers = self.headers(p.get("headers"), f"{path}.headers")
            options = {
                k: self.option(p[k], f"{path}.{k}", kind) for k, kind in extra.items() if k in p
            }
            if ptype == "bedrock":
                options, base_url = self.aws_defaults(options, base_url, path)
            out[name] = provider = ProviderConfig(
                name=name,
                type=ptype,
                base_url=base_url.rstrip("/"),
                api_key=api_key,
                headers=MappingProxyType(headers),
                timeouts=self.timeouts(p.get("timeouts"), f"{path}.timeouts", timeouts),
                limits=self.body_limits(p.get("limits"), f"{path}.limits", limits),
                options=MappingProxyType(options),
            )
            if url_credentials(provider.base_url) and _sets_authorization(provider):
                self.fail(f"{path}.base_url", "has user:password@, which is sent as 'Authorization: Basic', "
                          "but this provider sends its own Authorization header (api_key, headers or AWS "
                          "signing); keep one of the two")
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

    def aws_defaults(self, options: dict[str, Any], base_url: str, path: str) -> tuple[dict[str, Any], str]:
        """Bedrock: region and credentials from the standard AWS variables when not set.

        Credentials are taken as a set, all from the YAML or all from the
        environment, never mixed. None at all is allowed here (``api_key`` may
        hold a Bedrock API key, and ``check`` runs without secrets); the
        request path then answers with a message naming what is missing.
        """
        env, out = self.env, dict(options)
        region = out.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not region:
            self.fail(f"{path}.region", "is required for type bedrock (or set AWS_REGION)")
        else:
            out["region"] = region
        keys = ("aws_access_key_id", "aws_secret_access_key")
        if not any(k in out for k in keys) and "aws_session_token" not in out:
            for key, var in (*zip(keys, ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
                             ("aws_session_token", "AWS_SESSION_TOKEN")):
                if env.get(var):
                    out[key] = env[var]
        if ("aws_access_key_id" in out) != ("aws_secret_access_key" in out):
            self.fail(path, "set both aws_access_key_id and aws_secret_access_key, or neither")
        return out, base_url.replace("{region}", region or "")

    def api_key(self, p: dict[str, Any], path: str) -> str | None:
        if "api_key" in p and "api_key_file" in p:
            self.fail(path, "set api_key or api_key_file, not both")
        if "api_key_file" in p:
            fpath = self.string(p["api_key_file"], f"{path}.api_key_file", required=True)
            if not fpath:
                return None
            resolved = Path(fpath) if os.path.isabs(fpath) else self.base_dir / fpath
            try:
                with resolved.open("rb") as f:
                    data = f.read(MAX_SECRET_FILE + 1)
            except OSError as exc:
                self.fail(f"{path}.api_key_file", f"cannot read {fpath[:200]}: {exc.strerror or exc}")
                return None
            if len(data) > MAX_SECRET_FILE:
                self.fail(f"{path}.api_key_file", f"{fpath[:200]} is larger than {MAX_SECRET_FILE} bytes")
                return None
            try:
                return data.decode().strip()
            except UnicodeDecodeError:
                self.fail(f"{path}.api_key_file", f"{fpath[:200]} is not UTF-8 text")
                return None
        return self.string(p.get("api_key"), f"{path}.api_key")

    def option(self, node: Any, path: str, kind: str) -> Any:
        if kind == "str":
            return self.string(node, path, required=True)
        if kind in ("number", "number0"):
            return self.number(node, path, 0.0, positive=kind == "number")
        if kind == "int":
            return int(self.number(node, path, 1, integer=True))
        if kind == "bool":
            node = self.expand(node, path)
            if isinstance(node, str) and node.lower() in ("true", "false"):
                return node.lower() == "true"
            if not isinstance(node, bool):
                self.fail(path, f"must be true or false, got {self.shown(node, path)}")
                return False
            return node
        if kind == "list":
            if not isinstance(node, list):
                self.fail(path, f"must be a list of strings, got {_kind(node)}")
                return ()
            return tuple(self.string(v, f"{path}[{i}]", required=True) or "" for i, v in enumerate(node))
        raise AssertionError(f"unknown option kind {kind!r}")

    def models(self, node: Any, providers: dict[str, ProviderConfig]) -> dict[str, ModelConfig]:
        out: dict[str, ModelConfig] = {}
        if node is None:
            self.fail("models", "is required: name at least one model")
            return out
        if not isinstance(node, dict):
            self.fail("models", f"must be a mapping of model names, got {_kind(node)}")
            return out
        ids: dict[str, str] = {}
        for key, body in node.items():
            path = _join("models", key)
            name = self.name(key, path)
            if name is None:
                continue
            m = self.mapping(body, path, {"deployments", "strategy", "fallbacks", "retry", "session_key"})
            strategy = self.string(m.get("strategy"), f"{path}.strategy")
            if strategy is None:  # absent, or not a string (reported)
                strategy = "weighted"
            elif strategy not in STRATEGIES:
                suffix = _did_you_mean(strategy, STRATEGIES)
                self.fail(f"{path}.strategy", f"unknown strategy {show(strategy)}{suffix}; known: "
                          + ", ".join(sorted(STRATEGIES)))
                strategy = "weighted"
            deps_node = m.get("deployments")
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
            fallbacks_node = m.get("fallbacks")
            fallbacks: list[str] = []
            if fallbacks_node is not None and not isinstance(fallbacks_node, list):
                self.fail(f"{path}.fallbacks", f"must be a list of model names, got {_kind(fallbacks_node)}")
            for i, fnode in enumerate(fallbacks_node if isinstance(fallbacks_node, list) else ()):
                fb = self.string(fnode, f"{path}.fallbacks[{i}]", required=True)
                if fb:
                    fallbacks.append(fb)
            sk = self.mapping(m.get("session_key"), f"{path}.session_key", {"header", "field"})
            header = self.string(sk.get("header"), f"{path}.session_key.header") or "x-session-id"
            field_name = self.string(sk.get("field"), f"{path}.session_key.field") if "field" in sk else "user"
            out[name] = ModelConfig(
                name=name,
                deployments=tuple(deps),
                strategy=strategy,
                fallbacks=tuple(fallbacks),
                retry=self.retry(m.get("retry"), f"{path}.retry", self.retry_defaults),
                session_header=header.lower(),
                session_field=field_name or None,
            )
        for name, model in out.items():
            for i, fb in enumerate(model.fallbacks):
                if fb not in out:
                    suffix = _did_you_mean(fb, out)
                    self.fail(f"{_join('models', name)}.fallbacks[{i}]", f"unknown model {show(fb)}{suffix}")
                elif fb == name:
                    self.fail(f"{_join('models', name)}.fallbacks[{i}]", "a model cannot fall back to itself")
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
        d = self.mapping(node, path, {"provider", "model", "id", "weight", "timeouts", "max_tokens",
                                      "priority", "max_concurrency", "queue_timeout", "rpm", "tpm",
                                      "price", "breaker"})
        if not isinstance(node, dict):
            return None
        pname = self.string(d.get("provider"), f"{path}.provider", required=True)
        model = self.string(d.get("model"), f"{path}.model", required=True)
        provider = providers.get(pname or "")
        if pname and provider is None:
            suffix = _did_you_mean(pname, providers)
            self.fail(f"{path}.provider", f"unknown provider {show(pname)}{suffix}")
        if provider is None or not model:
            return None
        dep_id = self.string(d.get("id"), f"{path}.id") or f"{pname}/{model}"
        return DeploymentConfig(
            id=dep_id,
            provider=provider,
            model=model,
            weight=self.number(d.get("weight"), f"{path}.weight", 1.0),
            timeouts=self.timeouts(d.get("timeouts"), f"{path}.timeouts", provider.timeouts),
            max_tokens=self.optional_int(d, "max_tokens", path),
            priority=int(self.number(d.get("priority"), f"{path}.priority", 0, integer=True, positive=False)),
            max_concurrency=self.optional_int(d, "max_concurrency", path),
            queue_timeout=self.number(d.get("queue_timeout"), f"{path}.queue_timeout", self.queue_timeout,
                                      positive=False),
            rpm=self.optional_int(d, "rpm", path),
            tpm=self.optional_int(d, "tpm", path),
            price=self.price(d.get("price"), f"{path}.price"),
            breaker=self.breaker(d.get("breaker"), f"{path}.breaker", self.breaker_defaults),
        )

    def optional_int(self, d: dict[str, Any], key: str, path: str) -> int | None:
        if d.get(key) is None:
            return None
        return int(self.number(d[key], f"{path}.{key}", 1, integer=True))

    def price(self, node: Any, path: str) -> Price | None:
        if node is None:
            return None
        p = self.mapping(node, path, {"input_per_mtok", "output_per_mtok"})
        return Price(
            input_per_mtok=self.number(p.get("input_per_mtok"), f"{path}.input_per_mtok", 0.0, positive=False),
            output_per_mtok=self.number(p.get("output_per_mtok"), f"{path}.output_per_mtok", 0.0,
                                        positive=False),
        )


def parse_listen(value: str) -> tuple[str, int] | None:
    """``host:port``, ``[v6]:port`` or ``:port`` → (host, port)."""
    m = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$", value) or re.match(r"^([^:\[\]]*):(\d{1,5})$", value)
    if not m:
        return None
    port = int(m.group(2))
    if not 0 < port < 65536:
        return None
    return (m.group(1) or "0.0.0.0", port)


def _join(path: str, key: object) -> str:
    # A key is part of every message under it: bounded like a value.
    text = key if isinstance(key, str) else show(key)
    if len(text) > _MAX_KEY:
        text = text[:_MAX_KEY - 3] + "..."
    return f"{path}.{text}" if path else text


_MAX_KEY = 64
_SHOW = 80


def _did_you_mean(value: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, else ``""``."""
    if len(value) > _MAX_KEY:  # difflib is quadratic; no real key is this long
        return ""
    hint = difflib.get_close_matches(value, sorted(choices), n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def _kind(node: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(node), type(node).__name__
    )


class _Lit(str):
    """A piece of punctuation in ``show``'s walk, not a value to quote."""


def show(value: Any, limit: int = _SHOW) -> str:
    """A repr of ``value`` cut at ``limit`` characters, built without ever
    materialising the whole repr: an alias-shared YAML structure can stand
    for billions of nodes, and a string can be megabytes."""
    out: list[str] = []
    size = 0
    stack: list[Any] = [value]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, _Lit):
            piece = str(item)
        elif isinstance(item, str):
            piece = repr(item[: limit + 1])
        elif isinstance(item, (dict, list, tuple, set, frozenset)):
            opener, closer = ("{", "}") if isinstance(item, (dict, set, frozenset)) else ("[", "]")
            parts: list[Any] = []
            for i, element in enumerate(item.items() if isinstance(item, dict) else item):
                if i * 2 > limit:
                    parts.append(_Lit("..."))
                    break
                if i:
                    parts.append(_Lit(", "))
                if isinstance(item, dict):
                    parts.extend((element[0], _Lit(": "), element[1]))
                else:
                    parts.append(element)
            stack.append(_Lit(closer))
            stack.extend(reversed(parts))
            piece = opener
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            piece = repr(item)
        elif isinstance(item, int):
            piece = repr(item) if item.bit_length() < 4 * limit else f"<an integer of {item.bit_length()} bits>"
        elif isinstance(item, (bytes, bytearray)):
            piece = repr(bytes(item[: limit + 1]))
        else:
            piece = f"<{type(item).__name__}>"
        out.append(piece)
        size += len(piece)
    text = "".join(out)
    if stack or len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _sets_authorization(provider: ProviderConfig) -> bool:
    """Would this provider's requests carry an Authorization header of their
    own? (aiohttp refuses to add userinfo's Basic credential to one.) Asks
    the provider's adapter for a request, so each type's rule lives once."""
    from .errors import ProxyError
    from .providers import adapter_for  # here: the adapters import this package's config

    dep = DeploymentConfig(id="-", provider=provider, model="-")
    probe = {"model": "-", "messages": [{"role": "user", "content": "-"}], "max_tokens": 1}
    try:
        req = adapter_for(provider.type).chat_request(dep, probe, stream=False)
    except (ProxyError, KeyError, TypeError, ValueError):
        return any(k.lower() == "authorization" for k in provider.headers)
    return req.aws_sigv4 is not None or any(k.lower() == "authorization" for k in req.headers)

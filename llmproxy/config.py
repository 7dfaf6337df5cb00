"""YAML → a frozen, validated config tree: the dataclasses and the load API.

Invariant: a ``Config`` only exists if every check passed. Loading collects
*every* problem (with a path such as ``models.gpt-4o.deployments[1].weight``)
and raises ``ConfigError`` carrying all of them, so ``llmproxy check`` and a
rejected reload can list them at once. Nothing here opens sockets; files are
read only for the config itself and ``api_key_file`` secrets. The checks
themselves live in ``config_validate``; human and admin views of a config in
``config_views``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .sse import DEFAULT_MAX_EVENT

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_MAX_BODY = 20 * 1024 * 1024
DEFAULT_MAX_RESPONSE = 32 * 1024 * 1024
# A config is a few KiB; past this a file is refused before it is parsed (a
# reload parses off the event loop, but a 100 MB file still costs seconds of
# CPU and hundreds of MiB).
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# Nodes that YAML aliases may stand for, counted as expanded (``<<: *base``
# merges and ``*ref`` reuse in a real config come to a few hundred); a
# billion-laughs document passes this within its first few aliases.
MAX_ALIAS_NODES = 10_000
# A rejected file can be wrong in every line: the first problems say what to fix.
MAX_PROBLEMS = 100

# Keys that every provider accepts, and the extra keys each provider type
# understands with the kind of value each takes ("str", "number" (> 0),
# "number0" (>= 0), "int" (> 0), "bool", "list" of strings). A provider module
# that needs a setting adds it here, so a misspelling is still an error.
COMMON_PROVIDER_KEYS = frozenset(
    {"type", "base_url", "api_key", "api_key_file", "headers", "timeouts", "limits"}
)
PROVIDER_TYPES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        # stream_usage (default true): ask for stream_options.include_usage
        # upstream, so streams are accounted even when the client did not ask.
        "openai": {"organization": "str", "project": "str", "stream_usage": "bool"},
        "azure": {"api_version": "str", "stream_usage": "bool"},
        "mock": {"latency": "number0", "tokens_per_second": "number", "reply": "str"},
        # Region and credentials default to AWS_REGION / AWS_ACCESS_KEY_ID /
        # AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN (see _Validator.aws_defaults).
        "bedrock": {"region": "str", "aws_access_key_id": "str", "aws_secret_access_key": "str",
                    "aws_session_token": "str", "allow_image_urls": "bool", "image_url_max_bytes": "int",
                    "image_url_allow_private": "bool"},
        "ollama": {"allow_image_urls": "bool", "image_url_max_bytes": "int", "image_url_allow_private": "bool"},
        "cohere": {},
        "qianfan": {"appid": "str"},
        "anthropic": {"anthropic_version": "str", "beta": "list"},
        "gemini": {"api_version": "str", "allow_image_urls": "bool", "image_url_max_bytes": "int",
                   "image_url_allow_private": "bool"},
        # With project: api_key/api_key_file is an OAuth2 access token (Bearer);
        # without: a Vertex express-mode API key. location defaults to global.
        "vertex": {"project": "str", "location": "str", "api_version": "str", "quota_project": "str",
                   "allow_image_urls": "bool", "image_url_max_bytes": "int",
                   "image_url_allow_private": "bool"},
    }
)
# Types whose base_url has a sensible public default; the others must say where.
DEFAULT_BASE_URLS: Mapping[str, str] = MappingProxyType(
    {"openai": "https://api.openai.com/v1", "mock": "mock://local",
     "bedrock": "https://bedrock-runtime.{region}.amazonaws.com",  # {region} filled in at load
     "ollama": "http://localhost:11434", "cohere": "https://api.cohere.com",
     "qianfan": "https://qianfan.baidubce.com/v2",
     "anthropic": "https://api.anthropic.com",
     "gemini": "https://generativelanguage.googleapis.com",
     "vertex": "https://aiplatform.googleapis.com"}  # regional host derived from location
)
# breaker.when_all_open, the default first.
WHEN_ALL_OPEN = ("route_oldest", "fail_fast")


class ConfigError(Exception):
    """The config is invalid; ``problems`` lists every path-qualified reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid config:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    first_byte: float = 60.0
    idle: float = 30.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Bounds on what an upstream may send back (sizes after decompression)."""

    max_response_size: int = DEFAULT_MAX_RESPONSE  # a whole non-stream answer (or error body)
    max_event_size: int = DEFAULT_MAX_EVENT  # one stream event: SSE event, NDJSON line, eventstream frame


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    type: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    timeouts: Timeouts = Timeouts()
    limits: BodyLimits = BodyLimits()
    # Type-specific settings (validated against PROVIDER_TYPES).
    # repr=False: options may hold credentials (aws_secret_access_key).
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float = 0.0  # USD per million prompt tokens
    output_per_mtok: float = 0.0  # USD per million completion tokens

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failures: int = 5  # consecutive failures that open the breaker
    failure_ratio: float = 0.5  # ...or this share of failures over `window`
    min_requests: int = 20  # ...once the window holds at least this many outcomes
    window: float = 30.0  # seconds
    cooldown: float = 30.0  # seconds open before probing
    half_open_probes: int = 1  # requests let through at once while half-open
    # Longest a Retry-After (or retry-after-ms, or an HTTP-date) may keep the
    # deployment cooling, seconds: an upstream's 999999 must not bench it for days.
    max_retry_after: float = 300.0
    # When every deployment a request could use is out only because its breaker
    # is open: "route_oldest" sends it to the one whose breaker opened first
    # (Envoy's panic routing); "fail_fast" answers 503.
    when_all_open: str = "route_oldest"


@dataclass(frozen=True, slots=True)
class RetryConfig:
    retries: int = 2  # extra attempts within a model group
    backoff: float = 0.1  # first backoff before retrying the same deployment, seconds
    max_backoff: float = 2.0
    budget_ratio: float = 0.2  # retries allowed per request over the budget window
    budget_min: int = 10  # retries always allowed per budget window
    budget_window: float = 10.0  # seconds


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    id: str
    provider: ProviderConfig
    model: str
    weight: float = 1.0
    timeouts: Timeouts = Timeouts()
    # Default max_tokens for providers that require one (Anthropic) when the
    # client sends neither max_tokens nor max_completion_tokens.
    max_tokens: int | None = None
    priority: int = 0  # lower tiers first; higher tiers only when all lower are unusable
    max_concurrency: int | None = None
    queue_timeout: float = 5.0  # seconds to wait for a slot / a cooling deployment
    rpm: int | None = None
    tpm: int | None = None
    price: Price | None = None
    breaker: BreakerConfig = BreakerConfig()

    def limits(self) -> tuple[object, ...]:
        """What must agree when one deployment id serves several models."""
        return (self.provider, self.model, self.max_concurrency, self.rpm, self.tpm, self.breaker,
                self.timeouts)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    deployments: tuple[DeploymentConfig, ...]
    strategy: str = "weighted"
    fallbacks: tuple[str, ...] = ()
    retry: RetryConfig = RetryConfig()
    # Where sticky / consistent_hash find the session key.
    session_header: str = "x-session-id"
    session_field: str | None = "user"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_size: int = DEFAULT_MAX_BODY
    drain_timeout: float = 30.0
    # Client keys accepted as ``Authorization: Bearer``; empty means no auth.
    api_keys: frozenset[str] = field(default=frozenset(), repr=False)
    # Client-side time bounds (seconds): the whole request head, the longest
    # silence while a body is read, an idle keep-alive connection (nginx's 75).
    header_timeout: float = 10.0
    body_timeout: float = 15.0
    keepalive_timeout: float = 75.0
    # Browser origins allowed to call the proxy ("*" = any); requests with an
    # Origin not listed are refused. Empty: no browser page may call it.
    cors_origins: tuple[str, ...] = ()
    # Host names accepted besides the loopback ones while listening on loopback
    # (DNS-rebinding guard); "*" accepts any.
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AdminConfig:
    # Bearer token for /admin/*; without one, admin answers loopback clients only.
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ReloadConfig:
    enabled: bool = True  # watch the config file's directory
    debounce: float = 0.1  # seconds a burst of file events is gathered for
    poll_interval: float = 5.0  # safety-net content-hash check, seconds


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"  # --log-level / $LLMPROXY_LOG_LEVEL win over it
    format: str = "json"  # json | text
    access_log: bool = True  # one line per request on llmproxy.access
    redact_emails: bool = False
    redact_cards: bool = False
    log_bodies: bool = False  # prompts and completions in logs: only if this is true


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True  # GET /metrics on the main port
    listen: str | None = None  # HOST:PORT to also serve /metrics on (e.g. 0.0.0.0:9464)


@dataclass(frozen=True, slots=True)
class TracingConfig:
    enabled: bool = False  # needs the otel extra: pip install 'llmproxy[otel]'
    endpoint: str | None = None  # OTLP/HTTP, e.g. http://otel-collector:4318/v1/traces
    service_name: str = "llmproxy"
    sample_ratio: float = 1.0
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)


@dataclass(frozen=True, slots=True)
class UpstreamPoolConfig:
    limit: int = 1000
    limit_per_host: int = 0
    keepalive_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    providers: Mapping[str, ProviderConfig]
    models: Mapping[str, ModelConfig]
    timeouts: Timeouts
    pool: UpstreamPoolConfig
    limits: BodyLimits = BodyLimits()
    admin: AdminConfig = AdminConfig()
    reload: ReloadConfig = ReloadConfig()
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    source: str = "<memory>"
    sha256: str = ""

    def deployments(self) -> list[DeploymentConfig]:
        """Every deployment once, in config order."""
        seen: dict[str, DeploymentConfig] = {}
        for model in self.models.values():
            for dep in model.deployments:
                seen.setdefault(dep.id, dep)
        return list(seen.values())


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, expand and validate the YAML file at ``path``."""
    p = Path(path)
    try:
        raw = read_config_bytes(p)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    return parse_config(raw, env=env, source=str(path), base_dir=p.parent)


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes, at most one past ``MAX_CONFIG_BYTES`` (so /dev/zero
    or a runaway generator is refused by ``parse_config``, not read whole)."""
    with path.open("rb") as f:
        return f.read(MAX_CONFIG_BYTES + 1)


class _ConfigLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses alias bombs.

    PyYAML shares an aliased node rather than copying it, but everything that
    walks the result (merge keys, a repr, a validator) pays for the expanded
    tree: each alias is charged the expanded size of what it names.
    """

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._alias_nodes += _expanded_size(target, self._sizes, set())
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise yaml.composer.ComposerError(
                        None, None,
                        f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)",
                        event.start_mark,
                    )
        return super().compose_node(parent, index)


def _expanded_size(node: yaml.Node, memo: dict[int, int], open_: set[int]) -> int:
    """Nodes in ``node`` with every shared child counted each time it appears.

    A node still being composed (a recursive alias) counts what it holds so
    far; the budget then bounds the recursion's use.
    """
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_ or not isinstance(node, yaml.CollectionNode):
        return 1
    open_.add(key)
    total = 1
    for item in node.value:
        for child in item if isinstance(item, tuple) else (item,):
            total += _expanded_size(child, memo, open_)
            if total > MAX_ALIAS_NODES:
                break
    open_.discard(key)
    memo[key] = total
    return total


def _yaml_problem(source: str, exc: BaseException) -> str:
    # Only PyYAML's own short phrases and the position: str(exc) quotes the
    # offending line, which may hold a credential.
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
    elif isinstance(exc, RecursionError):
        where, problem = "", "nested too deeply"
    else:  # ValueError from int(): an integer of thousands of digits
        where, problem = "", "a number is too large"
    return f"{source}: invalid YAML: {where}{problem[:200]}"


def parse_config(
    text: bytes | str,
    env: Mapping[str, str] | None = None,
    source: str = "<memory>",
    base_dir: Path | None = None,
) -> Config:
    """Parse and validate; CPU-bound, so a running proxy calls it off the loop."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{source}: the config file is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB; "
                           "refused without parsing it"])
    loader = _ConfigLoader(raw)
    try:
        doc = loader.get_single_data()
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise ConfigError([_yaml_problem(source, exc)]) from None
    finally:
        loader.dispose()
    from .config_secrets import redact_problems  # here: both import this module's dataclasses
    from .config_validate import Validator

    environ = os.environ if env is None else env
    v = Validator(environ, base_dir or Path.cwd())
    config = v.config(doc, source, hashlib.sha256(raw).hexdigest())
    if v.problems:
        problems = redact_problems(v.problems, doc, environ)
        if v.dropped:
            problems.append(f"... and {v.dropped} more problems")
        raise ConfigError(problems)
    assert config is not None
    return config


# The valid ``strategy`` names, derived from the strategy registry (each class
# declares its own). Imported last because the router package imports this
# module's dataclasses: by now they all exist, whichever module loads first.
from .router.strategies import STRATEGY_NAMES  # noqa: E402

STRATEGIES: frozenset[str] = STRATEGY_NAMES

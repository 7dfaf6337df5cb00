"""YAML → a frozen, validated config tree: the dataclasses (the loader is config/load.py).

Invariant: a ``Config`` only exists if every check passed. Loading collects
*every* problem (with a path such as ``models.gpt-4o.deployments[1].weight``)
and raises ``ConfigError`` carrying all of them, so ``llmproxy check`` and a
rejected reload can list them at once. Nothing here opens sockets; files are
read only for the config itself and ``api_key_file`` secrets.

Each key is declared once, on its field (``config.schema.key``: YAML name,
kind, bounds, default, secret, help); ``config.validate`` walks those
declarations, ``config.views`` renders the admin view and ``check --explain``
from them. A provider type's own keys are its spec's options dataclass
(``providers/registry.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


# The valid ``strategy`` names, from the strategy registry (each class declares
# its own); router/__init__ resolves lazily, so this import cycles back to no
# module that needs this one's dataclasses.
from ..router.strategies import STRATEGY_NAMES as STRATEGIES
from ..sse import DEFAULT_MAX_EVENT
from .schema import did_you_mean, key, keys_of, parse_listen, show

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
# The embedded store's default file; a read-only directory (a ConfigMap mount)
# is a WARNING and memory-only spend, never a proxy that will not start.
DEFAULT_STATE_PATH = "state/llmproxy.db"

# breaker.when_all_open, the default first.
WHEN_ALL_OPEN = ("route_oldest", "fail_fast")
# unsupported_params, the default first: a field the provider cannot take is
# refused with a 400 naming it, or dropped and reported (header, metric, DEBUG).
UNSUPPORTED_PARAMS = ("error", "drop")
# A wildcard model's deployments: the distinct requested names that get their
# own breaker and limit state (later names share the wildcard deployment's).
DEFAULT_WILDCARD_NAMES = 256
# scheme://host[:port], as a browser sends it in Origin (RFC 6454 §6.1); "null" too.
ORIGIN = re.compile(r"null|https?://(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:\d{1,5})?")
# A host name or IP literal without port; "*.example.com" for any subdomain.
HOST_NAME = re.compile(r"\[[0-9a-f:.]+\]|(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


def __getattr__(name: str) -> Any:
    # The provider tables derive from the registry, which imports the provider
    # modules, which import this module's dataclasses: resolved on first use.
    if name in ("PROVIDER_TYPES", "DEFAULT_BASE_URLS"):
        from ..providers.registry import DEFAULT_BASE_URLS, PROVIDER_TYPES

        return PROVIDER_TYPES if name == "PROVIDER_TYPES" else DEFAULT_BASE_URLS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ConfigError(Exception):
    """The config is invalid; ``problems`` lists every path-qualified reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid config:\n" + "\n".join(f"  - {p}" for p in problems))


def _check_listen(value: str) -> str | None:
    if parse_listen(value) is None:
        return f"must be HOST:PORT such as 0.0.0.0:9464, got {show(value)}"
    return None


def _check_strategy(value: str) -> str | None:
    if value in STRATEGIES:
        return None
    return (f"unknown strategy {show(value)}{did_you_mean(value, STRATEGIES)}; known: "
            + ", ".join(sorted(STRATEGIES)))


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = key(5.0, help="seconds to open the TCP (and TLS) connection")
    first_byte: float = key(60.0, help="seconds from sending the request to the first answer byte")
    idle: float = key(30.0, help="longest silence between two stream chunks, seconds")
    total: float = key(600.0, help="seconds for the whole attempt")


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Bounds on what an upstream may send back (sizes after decompression)."""

    max_response_size: int = key(DEFAULT_MAX_RESPONSE, kind="size",
                                 help="a whole non-stream answer (or error body)")
    max_event_size: int = key(DEFAULT_MAX_EVENT, kind="size",
                              help="one stream event: SSE event, NDJSON line, eventstream frame")


class ProviderOptions:
    """Base of each provider type's typed options (``providers/*``'s spec).

    Subclasses are frozen dataclasses of ``key()`` fields defaulting to None
    (not set). Read-only mapping access over the keys that are set serves
    code that handles every type alike (redaction, the mock transport).
    """

    __slots__ = ()

    def _set(self) -> dict[str, Any]:
        return {k.name: v for k in keys_of(type(self)) if (v := getattr(self, k.name)) is not None}

    def get(self, name: str, default: Any = None) -> Any:
        value = getattr(self, name, None)
        return default if value is None else value

    def keys(self) -> list[str]:
        return list(self._set())

    def items(self) -> list[tuple[str, Any]]:
        return list(self._set().items())

    def __getitem__(self, name: str) -> Any:
        value = getattr(self, name, None)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and getattr(self, name, None) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._set())

    def __len__(self) -> int:
        return len(self._set())


@dataclass(frozen=True, slots=True)
class NoOptions(ProviderOptions):
    """A provider type with no settings of its own."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    type: str = key(kind="manual", shape="str", help="the wire format: one of the provider types (see the table)")
    base_url: str = key(kind="manual", shape="str", url=True,
                        help="where requests go (has a default for most types; user:password@ is sent "
                             "as Basic auth)")
    api_key: str | None = key(None, kind="manual", shape="str", secret=True,
                              help="the provider credential; ${VAR} expands")
    api_key_file: str | None = key(None, kind="manual", shape="str",
                                   help="file holding api_key (relative to the config's directory)")
    headers: Mapping[str, str] = key(kind="map", secret=True, factory=lambda: MappingProxyType({}),
                                     help="extra request headers (values are never shown)")
    timeouts: Timeouts = key(Timeouts(), help="per-provider timeouts (default: defaults.timeouts)")
    limits: BodyLimits = key(BodyLimits(), help="per-provider answer bounds (default: defaults.limits)")
    # The type's own keys (its spec's options dataclass); repr=False: they may
    # hold credentials (aws_secret_access_key).
    options: ProviderOptions = field(default_factory=NoOptions, repr=False)


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float = key(0.0, positive=False, help="USD per million prompt tokens")
    output_per_mtok: float = key(0.0, positive=False, help="USD per million completion tokens")
    cached_input_per_mtok: float | None = key(None, kind="number", positive=False,
                                              help="USD per million prompt tokens read from the provider's "
                                                   "prompt cache (default: input_per_mtok)")

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """USD; ``cached_tokens`` are part of ``prompt_tokens`` (OpenAI's and our usage shape)."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_rate = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        return ((prompt_tokens - cached) * self.input_per_mtok + cached * cached_rate
                + completion_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failures: int = key(5, help="consecutive failures that open the breaker")
    failure_ratio: float = key(0.5, max=1, help="...or this share of failures over `window`")
    min_requests: int = key(20, help="...once the window holds at least this many outcomes")
    window: float = key(30.0, help="seconds of outcomes failure_ratio looks at")
    cooldown: float = key(30.0, help="seconds open before probing")
    half_open_probes: int = key(1, help="requests let through at once while half-open")
    # An upstream's Retry-After 999999 must not bench a deployment for days.
    max_retry_after: float = key(300.0, help="longest a Retry-After (or retry-after-ms, or an HTTP-date) "
                                              "keeps the deployment cooling, seconds")
    when_all_open: str = key("route_oldest", kind="enum", choices=WHEN_ALL_OPEN,
                             help="when every usable deployment is out only by an open breaker: "
                                  "route_oldest sends to the one opened first (Envoy's panic routing), "
                                  "fail_fast answers 503")


@dataclass(frozen=True, slots=True)
class RetryConfig:
    retries: int = key(2, positive=False, help="extra attempts within a model group")
    backoff: float = key(0.1, positive=False, help="first backoff before retrying the same deployment, seconds")
    max_backoff: float = key(2.0, positive=False, help="longest backoff, seconds")
    budget_ratio: float = key(0.2, positive=False, help="retries allowed per request over the budget window")
    budget_min: int = key(10, positive=False, help="retries always allowed per budget window")
    budget_window: float = key(10.0, help="seconds the retry budget counts over")


HEALTH_CHECK_KINDS = ("models", "chat")


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    """A background probe of one deployment (server/health_checks.py)."""

    # None: decided by the provider type. A probe of a paid provider costs a
    # request (kind: chat costs tokens), so only the free, in-process mock
    # is probed unless the config asks.
    enabled: bool | None = key(None, kind="bool",
                               help="probe the deployment in the background (default: on for type: mock, "
                                    "off for every paid provider)")
    interval: float = key(30.0, help="seconds from the end of one probe to the start of the next")
    timeout: float = key(5.0, help="seconds one probe may take (connect, first byte and total)")
    kind: str = key("models", kind="enum", choices=HEALTH_CHECK_KINDS,
                    help="models: the provider's models-list endpoint (no tokens); chat: a one-token chat "
                         "completion")

    def active(self, provider_type: str) -> bool:
        return self.enabled if self.enabled is not None else provider_type == "mock"


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    id: str = key(kind="str", help="stable id for breaker and latency state (default: provider/model)")
    provider: ProviderConfig = key(kind="manual", shape="str", required=True, view=lambda p: p.name,
                                   help="a name under providers:")
    model: str = key(kind="str", required=True, help="the model name the provider knows")
    weight: float = key(1.0, help="share of traffic (weighted strategy)")
    timeouts: Timeouts = key(Timeouts(), help="per-deployment timeouts (default: its provider's)")
    # For providers that require one (Anthropic) when the client sends neither
    # max_tokens nor max_completion_tokens.
    max_tokens: int | None = key(None, kind="int", help="default max_tokens where the provider needs one")
    priority: int = key(0, positive=False, help="lower tiers first; higher only when all lower are unusable")
    max_concurrency: int | None = key(None, kind="int", help="requests in flight at once (default: no bound)")
    queue_timeout: float = key(5.0, positive=False,
                               help="seconds to wait for a slot / a cooling deployment "
                                    "(default: defaults.queue_timeout)")
    rpm: int | None = key(None, kind="int", help="requests per minute")
    tpm: int | None = key(None, kind="int", help="tokens per minute (estimated before, settled after)")
    price: Price | None = key(None, kind="section", cls=Price, help="for the cost strategy and spend metrics")
    breaker: BreakerConfig = key(BreakerConfig(), help="per-deployment breaker (default: defaults.breaker)")
    health_check: HealthCheckConfig = key(HealthCheckConfig(),
                                          help="per-deployment active health check (default: defaults.health_check)")
    unsupported_params: str = key("error", kind="enum", choices=UNSUPPORTED_PARAMS,
                                  help="an OpenAI parameter this provider cannot take: error (a 400 naming "
                                       "it) or drop (sent without it, listed in x-llmproxy-dropped-params) "
                                       "(default: defaults.unsupported_params)")
    # Made from a wildcard model's deployment (router/wildcard.py): that
    # deployment's id, which metrics label with (a bounded set, not the
    # names clients invent). None for a deployment of the config.
    pattern_id: str | None = None

    @property
    def label(self) -> str:
        """The deployment label of metrics: a config id, never a client's string."""
        return self.pattern_id or self.id

    def limits(self) -> tuple[object, ...]:
        """What must agree when one deployment id serves several models."""
        return (self.provider, self.model, self.max_concurrency, self.rpm, self.tpm, self.breaker,
                self.timeouts, self.health_check)


@dataclass(frozen=True, slots=True)
class ModelCache:
    """A model's ``cache:``: ``false`` turns the cache off for it, ``{ttl: N}``
    overrides ``cache.ttl`` (parsed by ``Validator.model_cache``)."""

    enabled: bool = True
    ttl: float | None = None  # None: cache.ttl


def _model_cache_view(c: ModelCache) -> Any:
    return False if not c.enabled else ({"ttl": c.ttl} if c.ttl is not None else None)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    deployments: tuple[DeploymentConfig, ...] = key(kind="manual", shape="list", required=True,
                                                    help="a non-empty list of deployments (below)")
    strategy: str = key("weighted", check=_check_strategy,
                        help="how a deployment is picked: " + ", ".join(sorted(STRATEGIES)))
    fallbacks: tuple[str, ...] = key((), kind="list", what="a list of model names",
                                     help="models tried, in order, when this one fails")
    retry: RetryConfig = key(RetryConfig(), help="per-model retries (default: defaults.retry)")
    # Where sticky / consistent_hash find the session key.
    session_header: str = key("x-session-id", yaml="session_key.header", lower=True,
                              help="request header holding the session key (sticky, consistent_hash)")
    session_field: str | None = key("user", kind="str", yaml="session_key.field", nullable=True,
                                    help="body field holding the session key; null: none")
    cache: ModelCache = key(kind="manual", shape="false or {ttl}", factory=ModelCache, view=_model_cache_view,
                            help="false: never cache this model's answers; {ttl: seconds}: its own cache.ttl")
    wildcard_names: int = key(DEFAULT_WILDCARD_NAMES,
                              help="a wildcard model (\"openai/*\"): distinct requested names that get "
                                   "breaker and limit state of their own; later names share the wildcard "
                                   "deployment's")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"  # from ``listen:``
    port: int = 8080
    max_body_size: int = key(DEFAULT_MAX_BODY, kind="size", help="largest request body")
    drain_timeout: float = key(30.0, positive=False, help="seconds in-flight requests get on SIGTERM")
    api_keys: frozenset[str] = key(frozenset(), kind="list", secret=True,
                                   help="client keys accepted as 'Authorization: Bearer'; empty: no auth")
    header_timeout: float = key(10.0, help="seconds for the whole request head")
    body_timeout: float = key(15.0, help="longest silence while a request body is read, seconds")
    keepalive_timeout: float = key(75.0, help="seconds an idle keep-alive connection is kept")
    cors_origins: tuple[str, ...] = key(
        (), kind="list", items=(ORIGIN, "an origin such as https://app.example.com or \"*\""),
        help="browser origins allowed to call the proxy (\"*\": any); empty: none")
    allowed_hosts: tuple[str, ...] = key(
        (), kind="list", items=(HOST_NAME, "a host name such as proxy.internal (no port) or \"*\""),
        help="Host names accepted besides loopback ones while listening on loopback (DNS-rebinding "
             "guard); \"*\": any")


@dataclass(frozen=True, slots=True)
class AdminConfig:
    token: str | None = key(None, kind="str", secret=True,
                            help="Bearer token for /admin/* (and the data of /ui); without one, admin answers "
                                 "loopback clients only")
    request_log: int = key(1000, positive=False, max=100_000,
                           help="recent requests kept in memory for GET /admin/requests and /ui (0: off)")
    request_log_bodies: bool = key(False, help="keep each logged request's body too (redacted, truncated)")
    config_history: int = key(20, max=1000,
                              help="applied configs kept for GET /admin/config/history, diffs and rollback")


@dataclass(frozen=True, slots=True)
class ReloadConfig:
    enabled: bool = key(True, help="watch the config file's directory")
    debounce: float = key(0.1, positive=False, help="seconds a burst of file events is gathered for")
    poll_interval: float = key(5.0, help="safety-net content-hash check, seconds")


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = key("info", kind="enum", choices=("debug", "info", "warning", "error"), lower=True,
                     help="--log-level / $LLMPROXY_LOG_LEVEL win over it")
    format: str = key("json", kind="enum", choices=("json", "text"), help="log line format")
    access_log: bool = key(True, help="one line per request on llmproxy.access")
    redact_emails: bool = key(False, help="mask e-mail addresses in logs")
    redact_cards: bool = key(False, help="mask card numbers in logs")
    log_bodies: bool = key(False, help="prompts and completions in logs: only if this is true")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = key(True, help="GET /metrics on the main port")
    listen: str | None = key(None, kind="str", check=_check_listen,
                             help="HOST:PORT to also serve /metrics on (e.g. 0.0.0.0:9464)")


RESPONSE_STORE_BACKENDS = ("auto", "memory", "redis")


@dataclass(frozen=True, slots=True)
class ResponsesConfig:
    store_backend: str = key("auto", kind="enum", choices=RESPONSE_STORE_BACKENDS,
                             help="where stored responses live: auto (redis when state.redis is set, else "
                                  "memory), memory (this process), redis (state.redis, shared by every "
                                  "process); chosen at start-up")
    store_max: int = key(10000, help="memory store: stored responses kept for previous_response_id and GET "
                                     "/v1/responses/{id} (translated providers; the oldest go first)")
    store_ttl: float = key(3600.0, help="seconds a stored response is kept")
    store_max_entry_bytes: int = key(8 * 1024 * 1024, kind="size",
                                     help="redis store: largest stored response with its conversation "
                                          "(encoded, before compression); a bigger one is not stored, and a "
                                          "follow-up to it says so")


def _check_redis_url(value: str) -> str | None:
    if not re.match(r"^(redis|rediss|unix)://", value):
        return "must be a redis://[user:password@]host:port/db (or rediss://, unix://) URL"
    from ..state.redis import redis_package_missing  # the check, declared where the client lives

    return redis_package_missing()


# budget.period: the fixed windows a budget counts over (seconds), aligned on
# the Unix epoch, so every process and every restart agrees on where a window
# starts without a calendar (a "30d" window is not a calendar month).
BUDGET_PERIODS: Mapping[str, int] = MappingProxyType({"1h": 3600, "1d": 86400, "7d": 7 * 86400,
                                                       "30d": 30 * 86400})


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    usd: float = key(0.0, kind="number", required=True, help="spend cap in USD")
    period: str | None = key(None, kind="enum", choices=tuple(BUDGET_PERIODS), nullable=True,
                             help="window the cap counts over (epoch-aligned); omitted: lifetime")

    @property
    def seconds(self) -> int:
        """The window's length; 0 for a lifetime budget."""
        return 0 if self.period is None else BUDGET_PERIODS[self.period]


KEY_GIVEN = "hashed"


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """One virtual key (``keys:``): who a caller is and what it may do.

    The plaintext key is never kept: ``key`` and ``key_file`` are hashed
    while the config is validated, and only ``key_sha256`` stays.
    """

    name: str = key(kind="str", required=True,
                    help="unique; shown in logs, metrics and /admin/keys (never the key itself)")
    key_sha256: str | None = key(None, kind="manual", shape="str", secret=True,
                                 help="hex sha256 of the key (llmproxy key new NAME prints one)")
    # Never the plaintext: it is hashed into key_sha256 at load, and this says
    # only that the entry gave one (KEY_GIVEN; the admin view masks it).
    key_text: str | None = key(None, kind="manual", yaml="key", shape="str", secret=True,
                               help="the key itself (e.g. ${VAR}); hashed at load, never kept")
    key_file: str | None = key(None, kind="manual", shape="str",
                               help="file holding the key (relative to the config's directory); hashed at load")
    models: tuple[str, ...] = key((), kind="list", what="a list of model names or globs",
                                  help="public model names or fnmatch globs (\"claude-*\") this key may use; "
                                       "empty: all")
    rpm: int | None = key(None, kind="int", help="requests per minute for this key")
    tpm: int | None = key(None, kind="int", help="tokens per minute for this key (estimated before, settled after)")
    max_parallel: int | None = key(None, kind="int", help="this key's requests in flight at once")
    budget: BudgetConfig | None = key(None, kind="section", cls=BudgetConfig, help="spend cap")
    metadata: Mapping[str, str] = key(kind="map", factory=lambda: MappingProxyType({}),
                                      help="free-form strings, shown in /admin/keys and the access line")
    role: str | None = key(None, kind="enum", choices=("admin",), nullable=True,
                           help="admin: this key may also use /admin/*")


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where state that outlives a request lives: spend, shared limits, cache."""

    path: str | None = key(DEFAULT_STATE_PATH, kind="str", nullable=True,
                           help="embedded SQLite store of key spend (relative to the config's directory; "
                                "opened only when keys: is set); null: memory only")
    redis: str | None = key(None, kind="str", nullable=True, secret=True, check=_check_redis_url,
                            help="share limits, spend and the cache across processes and pods")


# Signature algorithms auth.jwt may accept: public-key ones only. HS* (a
# shared secret) is never accepted: with a JWKS of public keys it is the
# classic key-confusion forgery, and "none" is no signature at all.
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def _check_http_url(value: str) -> str | None:
    return None if re.match(r"^https?://[^/\s]+", value) else "must be an http:// or https:// URL"


@dataclass(frozen=True, slots=True)
class JwtConfig:
    """Callers authenticated by a signed JWT (Bearer) instead of a key."""

    issuer: str = key("", kind="str", required=True, help="the `iss` every token must carry")
    audience: str = key("", kind="str", required=True, help="the `aud` every token must carry (one of its values)")
    jwks_file: str | None = key(None, kind="str", nullable=True,
                                help="JWKS of the issuer's public keys (relative to the config's directory)")
    jwks_url: str | None = key(None, kind="str", nullable=True, url=True, check=_check_http_url,
                               help="JWKS fetched from the issuer (with jwks_file: the union of both)")
    algorithms: tuple[str, ...] = key(("RS256", "ES256", "EdDSA"), kind="list",
                                      what="a list of JWS algorithms",
                                      help="accepted `alg`s, of " + ", ".join(JWT_ALGORITHMS)
                                           + " (never none or HS*)")
    key_claim: str = key("sub", help="the claim whose value names the `keys:` entry (its policy) of the caller")
    leeway: float = key(30.0, positive=False, max=600, help="seconds of clock skew allowed on exp, nbf and iat")
    jwks_refresh: float = key(300.0, help="seconds a fetched JWKS is used before it is fetched again")
    jwks_refresh_min: float = key(10.0, positive=False,
                                  help="seconds between fetches that an unknown `kid` may trigger")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    jwt: JwtConfig | None = key(None, kind="section", cls=JwtConfig, help="JWT bearer tokens (off without it)")
CACHE_BACKENDS = ("memory", "redis")
CACHE_SCOPES = ("key", "global")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The exact-match response cache (llmproxy/cache/)."""

    enabled: bool = key(False, help="serve repeated identical requests from the cache")
    ttl: float = key(600.0, help="seconds an answer is served from the cache (per model: models.<name>.cache.ttl)")
    max_bytes: int = key(64 * 1024 * 1024, kind="size", help="memory backend: total size, least recently used go first")
    max_entry_bytes: int = key(1024 * 1024, kind="size", help="largest answer stored (bigger ones are not cached)")
    backend: str = key("memory", kind="enum", choices=CACHE_BACKENDS,
                       help="memory (this process) or redis (state.redis, shared by every process)")
    scope: str = key("key", kind="enum", choices=CACHE_SCOPES,
                     help="key: one cache per caller (virtual key or API key); global: shared by all callers")
    wait: float = key(30.0, help="seconds a request waits for an identical one in flight before calling "
                                 "upstream itself")


@dataclass(frozen=True, slots=True)
class TracingConfig:
    enabled: bool = key(False, help="needs the otel extra: pip install 'llmproxy[otel]'")
    endpoint: str | None = key(None, kind="str", help="OTLP/HTTP, e.g. http://otel-collector:4318/v1/traces")
    service_name: str = key("llmproxy", help="service.name of the spans")
    sample_ratio: float = key(1.0, positive=False, max=1, help="share of requests traced")
    headers: Mapping[str, str] = key(kind="map", secret=True, factory=lambda: MappingProxyType({}),
                                     help="headers sent to the collector (values are never shown)")


@dataclass(frozen=True, slots=True)
class UpstreamPoolConfig:
    limit: int = key(1000, positive=False, help="connections to all upstreams at once (0: no bound)")
    limit_per_host: int = key(0, positive=False, help="connections to one host at once (0: no bound)")
    keepalive_timeout: float = key(30.0, help="seconds an idle upstream connection is kept")


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = key(kind="section", cls=ServerConfig, help="the client side")
    providers: Mapping[str, ProviderConfig] = key(kind="manual", shape="mapping", required=True,
                                                  help="name → provider (below)")
    models: Mapping[str, ModelConfig] = key(kind="manual", shape="mapping", required=True,
                                            help="name → model (below)")
    timeouts: Timeouts = key(kind="section", cls=Timeouts, yaml="defaults.timeouts", help="")
    pool: UpstreamPoolConfig = key(kind="section", cls=UpstreamPoolConfig, yaml="defaults.upstream", help="")
    limits: BodyLimits = key(BodyLimits(), yaml="defaults.limits", help="")
    retry: RetryConfig = key(RetryConfig(), yaml="defaults.retry", help="")
    breaker: BreakerConfig = key(BreakerConfig(), yaml="defaults.breaker", help="")
    health_check: HealthCheckConfig = key(HealthCheckConfig(), yaml="defaults.health_check", help="")
    queue_timeout: float = key(5.0, yaml="defaults.queue_timeout", positive=False,
                               help="deployments' queue_timeout unless they set one, seconds")
    unsupported_params: str = key("error", kind="enum", choices=UNSUPPORTED_PARAMS,
                                  yaml="defaults.unsupported_params",
                                  help="deployments' unsupported_params unless they set one")
    aliases: Mapping[str, str] = key(kind="manual", shape="mapping", factory=lambda: MappingProxyType({}),
                                     help="public name → a model name (or a name a wildcard model "
                                          "matches); listed in /v1/models")
    listen: str = key(DEFAULT_LISTEN, kind="manual", shape="str", help="HOST:PORT the proxy listens on")
    admin: AdminConfig = key(AdminConfig(), help="")
    reload: ReloadConfig = key(ReloadConfig(), help="")
    logging: LoggingConfig = key(LoggingConfig(), help="")
    metrics: MetricsConfig = key(MetricsConfig(), help="")
    tracing: TracingConfig = key(TracingConfig(), help="")
    responses: ResponsesConfig = key(ResponsesConfig(), help="")
    state: StateConfig = key(StateConfig(), help="")
    auth: AuthConfig = key(AuthConfig(), help="")
    keys: tuple[KeyConfig, ...] = key((), kind="manual", shape="list",
                                      help="virtual keys: a list of entries (below); server.api_keys are "
                                           "keys without a policy")
    prices_file: str | None = key(None, kind="manual", shape="str",
                                  help="LiteLLM model_prices_and_context_window.json: prices of deployments "
                                       "without price: (relative to the config's directory)")
    cache: CacheConfig = key(CacheConfig(), help="")
    source: str = "<memory>"
    sha256: str = ""

    def deployments(self) -> list[DeploymentConfig]:
        """Every deployment once, in config order."""
        seen: dict[str, DeploymentConfig] = {}
        for model in self.models.values():
            for dep in model.deployments:
                seen.setdefault(dep.id, dep)
        return list(seen.values())


# The load API (config/load.py), importable from here as it always was.
from .load import load_config as load_config  # noqa: E402
from .load import parse_config as parse_config  # noqa: E402
from .load import read_config_bytes as read_config_bytes  # noqa: E402
from .load import read_litellm as read_litellm  # noqa: E402

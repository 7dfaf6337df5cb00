"""LiteLLM's response cache (``litellm_settings.cache``, ``cache_params``) → ``cache:`` and ``state.redis``.

What LiteLLM's proxy does with them (proxy_server.py, ``load_config``; docs
"Caching" and "Cache Settings"):
- ``cache: true`` turns the cache on; its type is ``cache_params.type``,
  ``redis`` when not given (the proxy's default, unlike the SDK's ``local``);
- a Redis cache without ``host``/``port``/``password`` reads ``REDIS_HOST``,
  ``REDIS_PORT``, ``REDIS_PASSWORD`` (or ``REDIS_URL``) from the environment;
  ``os.environ/VAR`` values are read from the environment too;
- the cache key is the model, the messages and the parameters, not the
  caller's key: one cache for every key (llmproxy's ``scope: global``);
- ``mode: default_off`` caches only the requests that ask for it.

Pure: ``convert_cache`` reads the section and writes rows through ``row``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from .litellm_common import APPROX, MAPPED, NOT_MAPPED, env_ref, number, redis_url

# LiteLLM cache types llmproxy has no backend for → what stands in, and how it differs.
_STAND_INS: Mapping[str, tuple[str, str]] = {
    "redis-semantic": ("redis", "exact match only: llmproxy has no semantic cache, a request hits only when it "
                                "is the same request"),
    "valkey-semantic": ("redis", "exact match only, on state.redis: llmproxy has no semantic cache"),
    "qdrant-semantic": ("memory", "exact match only, in memory: llmproxy has no semantic cache or Qdrant backend"),
    "s3": ("memory", "llmproxy has no S3 backend: the memory one (per process, lost on restart)"),
    "gcs": ("memory", "llmproxy has no GCS backend: the memory one (per process, lost on restart)"),
    "azure-blob": ("memory", "llmproxy has no Azure Blob backend: the memory one (per process, lost on restart)"),
    "disk": ("memory", "llmproxy has no disk backend: the memory one (per process, lost on restart)"),
}
_REDIS_PARAMS = ("url", "host", "port", "password", "username", "ssl", "db")
_TTLS = ("ttl", "default_in_memory_ttl", "default_in_redis_ttl")
_WHY: Mapping[str, str] = {
    "namespace": "approximated: llmproxy's keys live under llmproxy:cache:<model>: (flush one model with "
                 "DELETE /admin/cache?model=NAME)",
    "supported_call_types": "approximated: llmproxy caches chat completions, Anthropic messages, Responses "
                            "without server-side state and embeddings alike (not legacy completions, "
                            "transcriptions or rerank); a model opts out with models.<name>.cache: false",
    "max_connections": "the state.redis pool holds at most 128 connections",
    "socket_timeout": "state.redis commands time out after 0.5 s (a Redis down is a cache miss, never an error)",
    "redis_startup_nodes": "llmproxy connects to one Redis (no cluster)",
    "service_name": "llmproxy connects to one Redis (no sentinel)",
    "sentinel_nodes": "llmproxy connects to one Redis (no sentinel)",
    "similarity_threshold": "llmproxy has no semantic cache",
    "redis_semantic_cache_embedding_model": "llmproxy has no semantic cache",
    "redis_flush_size": "llmproxy writes each entry at once",
}


class CacheImport(NamedTuple):
    cache: dict[str, Any] | None  # llmproxy's cache: section, or None (left off)
    redis: str | None  # the state.redis URL the cache needs (None: keep what there is)


def convert_cache(settings: Mapping[str, Any], redis: str | None,
                  row: Callable[[str, str, str], None]) -> CacheImport:
    """``settings`` is ``litellm_settings``; ``redis`` the state.redis already
    mapped from router_settings (llmproxy has one Redis for everything)."""
    where = "litellm_settings.cache_params"
    params = settings.get("cache_params")
    if params is not None and not isinstance(params, dict):
        row(where, NOT_MAPPED, "not a mapping")
        params = None
    params = params or {}
    on = settings.get("cache")
    if on not in (True, "true", "True"):
        if "cache" in settings:
            row("litellm_settings.cache", MAPPED, "cache off, llmproxy's default")
        if params:
            row(where, NOT_MAPPED, "cache is not true: LiteLLM does not use these either")
        return CacheImport(None, None)
    if env_ref(params.get("mode")) == "default_off":
        row("litellm_settings.cache", NOT_MAPPED,
            "cache_params.mode default_off caches only requests that ask for it; llmproxy has no opt-in mode, "
            "so the cache is left off (cache.enabled: true caches every request; a client opts out with "
            "Cache-Control: no-store)")
        row(where, NOT_MAPPED, "the cache is left off (mode: default_off)")
        return CacheImport(None, None)
    kind = env_ref(params.get("type", "redis"))
    if kind == "local":
        backend, outcome, how = "memory", MAPPED, "cache.backend: memory (this process)"
    elif kind == "redis":
        backend, outcome, how = "redis", MAPPED, "cache.backend: redis (on state.redis, shared by every process)"
    elif isinstance(kind, str) and kind in _STAND_INS:
        backend, how = _STAND_INS[kind]
        outcome, how = APPROX, f"cache.backend: {backend} ({how})"
    else:
        row(f"{where}.type", NOT_MAPPED, f"{kind!r} is not a LiteLLM cache type llmproxy knows; the cache is left off")
        row("litellm_settings.cache", NOT_MAPPED, "no cache type to map")
        return CacheImport(None, None)
    cache: dict[str, Any] = {"enabled": True, "backend": backend, "scope": "global"}
    row("litellm_settings.cache", MAPPED,
        "cache.enabled: true, scope: global (LiteLLM's cache is shared by every key; scope: key gives each "
        "caller its own)")
    row(f"{where}.type" + ("" if "type" in params else " (default redis)"), outcome, how)
    _ttl(cache, params, backend, where, row)
    url = _redis(params, redis, where, row) if backend == "redis" else None
    if backend != "redis":
        for key in _REDIS_PARAMS:
            if key in params:
                row(f"{where}.{key}", NOT_MAPPED, f"the {backend} backend uses no Redis")
    for key in params:
        if key in ("type", "mode", *_TTLS, *_REDIS_PARAMS):
            continue
        why = _WHY.get(key, "no llmproxy equivalent")
        if why.startswith("approximated: "):
            row(f"{where}.{key}", APPROX, why.removeprefix("approximated: "))
        else:
            row(f"{where}.{key}", NOT_MAPPED, why)
    return CacheImport(cache, url)


def _ttl(cache: dict[str, Any], params: Mapping[str, Any], backend: str, where: str,
         row: Callable[[str, str, str], None]) -> None:
    chosen = "ttl" if "ttl" in params else ("default_in_redis_ttl" if backend == "redis" else "default_in_memory_ttl")
    for key in _TTLS:
        if key not in params:
            continue
        if key != chosen:
            row(f"{where}.{key}", APPROX, "ttl wins" if "ttl" in params else f"does not apply to the {backend} backend")
            continue
        t = number(params[key])
        if t is None or t <= 0:
            row(f"{where}.{key}", NOT_MAPPED, "not a positive number of seconds; cache.ttl keeps its default, 600")
        else:
            cache["ttl"] = t
            row(f"{where}.{key}", MAPPED, "cache.ttl (seconds)")
    if chosen not in params and backend == "redis":
        row(f"{where}.ttl", APPROX, "not set: LiteLLM's Redis entries never expire; llmproxy's cache.ttl "
                                   "default, 600 s, applies")


def _redis(params: Mapping[str, Any], redis: str | None, where: str,
           row: Callable[[str, str, str], None]) -> str | None:
    given = [k for k in _REDIS_PARAMS if k in params]
    if "url" in params:
        url: str | None = str(env_ref(params["url"]))
        for key in given:
            row(f"{where}.{key}", MAPPED if key == "url" else APPROX,
                "state.redis" if key == "url" else "url wins (state.redis)")
    elif given:
        ssl = params.get("ssl") in (True, "true", "True")
        url = redis_url(params.get("host", "localhost"), params.get("port", 6379), params.get("password"),
                        username=params.get("username"), ssl=ssl, db=params.get("db", 0))
        for key in given:
            row(f"{where}.{key}", MAPPED, "state.redis" + (" (rediss://)" if key == "ssl" and ssl else ""))
    else:
        url = None
    if redis is not None:
        if url is not None and url != redis:
            row(where, APPROX, "llmproxy has one Redis (state.redis) for limits, the cache and stored "
                               "responses: router_settings' redis_host is used, not this one")
        elif url is None:
            row(f"{where}.host", APPROX, "not set: LiteLLM would read $REDIS_HOST; llmproxy has one Redis "
                                        "(state.redis), router_settings' redis_host")
        return None
    if url is None:
        row(f"{where}.host", APPROX,
            "not set: state.redis from $REDIS_HOST, $REDIS_PORT (6379) and $REDIS_PASSWORD, as LiteLLM reads "
            "them (if you set REDIS_URL instead, write state.redis: ${REDIS_URL})")
        url = "redis://:${REDIS_PASSWORD:-}@${REDIS_HOST}:${REDIS_PORT:-6379}/0"
    return url

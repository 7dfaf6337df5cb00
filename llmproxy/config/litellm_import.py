"""A LiteLLM proxy config → an llmproxy config, with a report of every setting.

``convert(doc)`` takes the parsed LiteLLM YAML (``model_list``,
``router_settings``, ``litellm_settings``, ``general_settings``) and returns
the llmproxy document and one ``Row`` per setting it read: ``mapped`` (same
behaviour), ``approximated`` (the nearest llmproxy behaviour, the detail says
how it differs) or ``not mapped`` (with the reason). Pure: no files, no
environment; ``os.environ/VAR`` is written as ``${VAR}`` and read when the
result is loaded. ``to_yaml`` renders the document. Credentials never
appear in a row's detail.

Each ``model_list`` entry is one deployment of the model named by its
``model_name``; entries with the same provider prefix, ``api_base``,
``api_key`` and provider options share one provider. The provider prefix of
``litellm_params.model`` picks the type: OpenAI-compatible services become
``type: openai`` with their base URL (``PREFIXES``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import yaml

from .litellm_cache import convert_cache
from .litellm_common import APPROX, MAPPED, NOT_MAPPED, Row, env_ref, redis_url
from .litellm_common import number as _number
from .keys_validate import MIN_KEY_LENGTH
from .names import match_wildcard, wildcard_prefix, wildcard_table

# general_settings.master_key becomes this key (role admin).
MASTER_KEY_NAME = "litellm-master-key"

__all__ = ["APPROX", "MAPPED", "NOT_MAPPED", "Row", "convert", "report_text", "to_yaml"]


class Prefix(NamedTuple):
    type: str  # llmproxy provider type
    base_url: str | None  # None: the type's default (or api_base is required)
    key_env: str | None  # the variable LiteLLM reads when api_key is not set


# LiteLLM provider prefix → llmproxy type, base URL and the key's default variable.
PREFIXES: Mapping[str, Prefix] = {
    "openai": Prefix("openai", None, "OPENAI_API_KEY"),
    "azure": Prefix("azure", None, "AZURE_API_KEY"),
    "azure_ai": Prefix("openai", None, "AZURE_AI_API_KEY"),
    "anthropic": Prefix("anthropic", None, "ANTHROPIC_API_KEY"),
    "gemini": Prefix("gemini", None, "GEMINI_API_KEY"),
    "vertex_ai": Prefix("vertex", None, None),
    "bedrock": Prefix("bedrock", None, None),
    "ollama": Prefix("ollama", None, None),
    "ollama_chat": Prefix("ollama", None, None),
    "cohere": Prefix("cohere", None, "COHERE_API_KEY"),
    "cohere_chat": Prefix("cohere", None, "COHERE_API_KEY"),
    "hosted_vllm": Prefix("openai", None, None),
    "groq": Prefix("openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "mistral": Prefix("openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "deepseek": Prefix("deepseek", None, "DEEPSEEK_API_KEY"),
    "together_ai": Prefix("openai", "https://api.together.xyz/v1", "TOGETHERAI_API_KEY"),
    "openrouter": Prefix("openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "fireworks_ai": Prefix("openai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_AI_API_KEY"),
    "xai": Prefix("openai", "https://api.x.ai/v1", "XAI_API_KEY"),
    "perplexity": Prefix("openai", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY"),
    "cerebras": Prefix("openai", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
}
# Prefixes whose type needs api_base (no default URL to fall back on).
NEEDS_BASE = frozenset({"azure", "azure_ai", "hosted_vllm"})

# routing_strategy → (llmproxy strategy, outcome, how it differs).
STRATEGIES: Mapping[str, tuple[str, str, str]] = {
    "simple-shuffle": ("random", MAPPED, "weighted random pick"),
    "least-busy": ("least_connections", MAPPED, "fewest requests in flight"),
    "latency-based-routing": ("least_latency", MAPPED, "lowest latency average (time to first token for streams)"),
    "cost-based-routing": ("cost", APPROX, (
        "cheapest by each deployment's price: from input_cost_per_token/output_cost_per_token where given, "
        "else LiteLLM's price map is not known here and unpriced deployments come last")),
    "usage-based-routing": ("weighted", APPROX, (
        "no lowest-usage pick: traffic by weight, and each deployment's rpm/tpm are enforced as limits "
        "(a full one is skipped)")),
    "usage-based-routing-v2": ("weighted", APPROX, (
        "no lowest-usage pick: traffic by weight, and each deployment's rpm/tpm are enforced as limits")),
}

# Deployment settings read from litellm_params, besides model / api_base / api_key.
_PROVIDER_PARAMS = ("api_version", "organization", "aws_region_name", "aws_access_key_id",
                    "aws_secret_access_key", "aws_session_token", "vertex_project", "vertex_location",
                    "extra_headers")
_DEPLOYMENT_PARAMS = ("rpm", "tpm", "weight", "order", "timeout", "max_parallel_requests",
                      "input_cost_per_token", "output_cost_per_token")


class _Converter:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.providers: dict[str, dict[str, Any]] = {}
        self._provider_keys: dict[tuple[Any, ...], str] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self._ids: set[str] = set()
        self.defaults: dict[str, Any] = {}
        self.out: dict[str, Any] = {}
        self._router: dict[str, Any] = {}  # router_settings (litellm_settings defers to it)

    def row(self, setting: str, outcome: str, detail: str) -> None:
        self.rows.append(Row(setting, outcome, detail))

    # -- model_list

    def model_list(self, node: Any) -> None:
        if node is None:
            self.row("model_list", NOT_MAPPED, "missing: a LiteLLM proxy config lists its models there")
            return
        if not isinstance(node, list):
            self.row("model_list", NOT_MAPPED, "must be a list of {model_name, litellm_params}")
            return
        for i, entry in enumerate(node):
            self.entry(entry, f"model_list[{i}]")

    def entry(self, entry: Any, path: str) -> None:
        if not isinstance(entry, dict):
            self.row(path, NOT_MAPPED, "not a mapping")
            return
        name = entry.get("model_name")
        params = entry.get("litellm_params")
        if not isinstance(name, str) or not name or not isinstance(params, dict):
            self.row(path, NOT_MAPPED, "needs model_name and litellm_params")
            return
        model = params.get("model")
        if not isinstance(model, str) or not model:
            self.row(f"{path}.litellm_params.model", NOT_MAPPED, "missing")
            return
        prefix, _, upstream = model.partition("/")
        if not upstream:
            if model == "*":
                self.row(f"{path}.litellm_params.model", NOT_MAPPED,
                         "a bare '*' lets LiteLLM guess each name's provider; llmproxy routes a wildcard to "
                         "configured providers: write one entry per provider, such as openai/*")
                return
            prefix, upstream = "openai", model
            self.row(f"{path}.litellm_params.model", APPROX,
                     f"{model!r} has no provider prefix; taken as openai/{model}")
        spec = PREFIXES.get(prefix)
        if spec is None:
            self.row(f"{path}.litellm_params.model", NOT_MAPPED,
                     f"provider prefix {prefix!r} has no llmproxy provider type; known: "
                     + ", ".join(sorted(PREFIXES)))
            return
        if prefix == "bedrock":
            for route in ("converse/", "invoke/"):
                upstream = upstream.removeprefix(route)
        if prefix == "vertex_ai" and not upstream.startswith("gemini"):
            self.row(f"{path}.litellm_params.model", NOT_MAPPED,
                     f"vertex_ai/{upstream}: llmproxy's vertex type speaks Gemini's API only")
            return
        wild = wildcard_prefix(name) is not None
        if "*" in name and not wild:
            self.row(f"{path}.model_name", NOT_MAPPED, "a wildcard name has one '*', at its end")
            return
        if "*" in upstream and not wild:
            self.row(f"{path}.litellm_params.model", NOT_MAPPED, "'*' in the model needs a wildcard model_name")
            return
        provider = self.provider(prefix, spec, params, path)
        if provider is None:
            return
        dep: dict[str, Any] = {"provider": provider, "model": upstream}
        self.row(f"{path}.litellm_params.model", MAPPED,
                 f"model {name!r} → provider {provider} ({self.providers[provider]['type']}), model {upstream!r}"
                 + (" (the '*' becomes what the wildcard matched)" if "*" in upstream else ""))
        self.deployment_params(dep, params, entry, path)
        info = entry.get("model_info")
        dep_id = info.get("id") if isinstance(info, dict) else None
        if isinstance(dep_id, str) and dep_id:
            self.row(f"{path}.model_info.id", MAPPED, "deployment id")
        else:
            dep_id = f"{provider}/{upstream}"
        base_id, n = dep_id, 1
        while dep_id in self._ids:  # each LiteLLM entry is a deployment of its own
            n += 1
            dep_id = f"{base_id}-{n}"
        self._ids.add(dep_id)
        if dep_id != f"{provider}/{upstream}":
            dep["id"] = dep_id
        for key in params:
            if key not in ("model", "api_base", "api_key", *_PROVIDER_PARAMS, *_DEPLOYMENT_PARAMS):
                self.row(f"{path}.litellm_params.{key}", NOT_MAPPED, _unknown_param(key))
        for key in entry:
            if key not in ("model_name", "litellm_params", "model_info", "rpm", "tpm"):
                self.row(f"{path}.{key}", NOT_MAPPED, "no llmproxy equivalent")
        self.models.setdefault(name, {"deployments": []})["deployments"].append(dep)

    def provider(self, prefix: str, spec: Prefix, params: dict[str, Any], path: str) -> str | None:
        p: dict[str, Any] = {"type": spec.type}
        base = env_ref(params.get("api_base"))
        if base is not None:
            if not isinstance(base, str):
                self.row(f"{path}.litellm_params.api_base", NOT_MAPPED, "not a string")
                return None
            p["base_url"] = base.rstrip("/")
            self.row(f"{path}.litellm_params.api_base", MAPPED, "provider base_url")
        elif prefix == "azure":
            p["base_url"] = "${AZURE_API_BASE}"
            self.row(f"{path}.litellm_params.api_base", APPROX, "not set: read from $AZURE_API_BASE, as LiteLLM does")
        elif prefix in NEEDS_BASE:
            self.row(f"{path}.litellm_params.api_base", NOT_MAPPED, f"{prefix}/ needs api_base (no default URL)")
            return None
        elif spec.base_url is not None:
            p["base_url"] = spec.base_url
        key = env_ref(params.get("api_key"))
        if key is not None:
            p["api_key"] = str(key)
            how = "from the environment" if str(key).startswith("${") else "copied as written (better: os.environ/VAR)"
            self.row(f"{path}.litellm_params.api_key", MAPPED, f"provider api_key, {how}")
        elif spec.key_env is not None:
            p["api_key"] = "${" + spec.key_env + "}"
            self.row(f"{path}.litellm_params.api_key", MAPPED,
                     f"not set: ${spec.key_env}, the variable LiteLLM reads for {prefix}/")
        self.provider_params(prefix, p, params, path)
        identity = tuple(sorted((k, repr(v)) for k, v in p.items()))
        name = self._provider_keys.get(identity)
        if name is None:
            name, n = prefix.replace("_", "-"), 1
            while name in self.providers:
                n += 1
                name = f"{prefix.replace('_', '-')}-{n}"
            self._provider_keys[identity] = name
            self.providers[name] = p
        return name

    def provider_params(self, prefix: str, p: dict[str, Any], params: dict[str, Any], path: str) -> None:
        where = f"{path}.litellm_params"
        version = env_ref(params.get("api_version"))
        if version is not None:
            if prefix == "azure":
                p["api_version"] = str(version)
                self.row(f"{where}.api_version", MAPPED, "azure api_version (the deployments URL form)")
            else:
                self.row(f"{where}.api_version", NOT_MAPPED, f"only azure/ takes an api_version here, not {prefix}/")
        elif prefix == "azure":
            self.row(f"{where}.api_version", APPROX, "not set: llmproxy's azure uses the /openai/v1 API without one")
        org = env_ref(params.get("organization"))
        if org is not None:
            if p["type"] == "openai":
                p["organization"] = str(org)
                self.row(f"{where}.organization", MAPPED, "OpenAI-Organization header")
            else:
                self.row(f"{where}.organization", NOT_MAPPED, f"only for openai/, not {prefix}/")
        pairs = {"aws_region_name": "region", "aws_access_key_id": "aws_access_key_id",
                 "aws_secret_access_key": "aws_secret_access_key", "aws_session_token": "aws_session_token",
                 "vertex_project": "project", "vertex_location": "location"}
        for theirs, ours in pairs.items():
            if theirs not in params:
                continue
            fits = (prefix == "bedrock") == theirs.startswith("aws_") and prefix in ("bedrock", "vertex_ai")
            if fits:
                p[ours] = str(env_ref(params[theirs]))
                self.row(f"{where}.{theirs}", MAPPED, f"provider {ours}")
            else:
                self.row(f"{where}.{theirs}", NOT_MAPPED, f"does not apply to {prefix}/")
        if prefix == "bedrock" and "aws_region_name" not in params:
            self.row(f"{where}.aws_region_name", APPROX, "not set: the region comes from $AWS_REGION at load")
        headers = params.get("extra_headers")
        if isinstance(headers, dict) and all(isinstance(k, str) for k in headers):
            p["headers"] = {k: str(env_ref(v)) for k, v in headers.items()}
            self.row(f"{where}.extra_headers", MAPPED, "provider headers")
        elif headers is not None:
            self.row(f"{where}.extra_headers", NOT_MAPPED, "not a mapping of header names")

    def deployment_params(self, dep: dict[str, Any], params: dict[str, Any], entry: dict[str, Any],
                          path: str) -> None:
        where = f"{path}.litellm_params"
        for key, ours in (("rpm", "rpm"), ("tpm", "tpm"), ("max_parallel_requests", "max_concurrency")):
            for at, node in ((where, params), (path, entry)):
                if key in node:
                    value = _number(node[key])
                    if value is None or value <= 0 or value != int(value):
                        self.row(f"{at}.{key}", NOT_MAPPED, "not a positive whole number")
                    else:
                        dep[ours] = int(value)
                        self.row(f"{at}.{key}", MAPPED, f"deployment {ours}")
        if "weight" in params:
            w = _number(params["weight"])
            if w is None or w <= 0:
                self.row(f"{where}.weight", NOT_MAPPED, "not a positive number")
            else:
                dep["weight"] = w
                self.row(f"{where}.weight", MAPPED, "deployment weight")
        if "order" in params:
            order = _number(params["order"])
            if order is None or order < 0 or order != int(order):
                self.row(f"{where}.order", NOT_MAPPED, "not a whole number")
            else:
                dep["priority"] = int(order)
                self.row(f"{where}.order", MAPPED, "deployment priority (lower first; higher only when all "
                                                   "lower are unusable)")
        if "timeout" in params:
            t = _number(params["timeout"])
            if t is None or t <= 0:
                self.row(f"{where}.timeout", NOT_MAPPED, "not a positive number of seconds")
            else:
                dep["timeouts"] = {"total": t}
                self.row(f"{where}.timeout", MAPPED, "deployment timeouts.total")
        price = {}
        for key, ours in (("input_cost_per_token", "input_per_mtok"), ("output_cost_per_token", "output_per_mtok")):
            if key in params:
                c = _number(params[key])
                if c is None or c < 0:
                    self.row(f"{where}.{key}", NOT_MAPPED, "not a number")
                else:
                    price[ours] = round(c * 1e6, 6)
                    self.row(f"{where}.{key}", MAPPED, f"deployment price.{ours} (per million tokens)")
        if price:
            dep["price"] = price

    # -- the settings sections

    def router_settings(self, node: dict[str, Any], litellm: dict[str, Any]) -> None:
        strategy = node.get("routing_strategy", "simple-shuffle")
        found = STRATEGIES.get(strategy) if isinstance(strategy, str) else None
        if found is None:
            self.row("router_settings.routing_strategy", APPROX,
                     f"{strategy!r} has no llmproxy strategy; weighted is used")
            ours = "weighted"
        else:
            ours, outcome, how = found
            where = "router_settings.routing_strategy" + ("" if "routing_strategy" in node else " (default)")
            self.row(where, outcome, f"strategy: {ours} on every model ({how})")
        for model in self.models.values():
            model["strategy"] = ours
        retries = node.get("num_retries", litellm.get("num_retries"))
        for section, d in (("router_settings", node), ("litellm_settings", litellm)):
            if "num_retries" in d:
                if section == "litellm_settings" and "num_retries" in node:
                    self.row(f"{section}.num_retries", APPROX, "router_settings.num_retries wins, as in LiteLLM")
                    continue
                n = _number(retries)
                if n is None or n < 0 or n != int(n):
                    self.row(f"{section}.num_retries", NOT_MAPPED, "not a whole number")
                else:
                    self.defaults.setdefault("retry", {})["retries"] = int(n)
                    self.row(f"{section}.num_retries", MAPPED, "defaults.retry.retries (extra attempts in a model)")
        self.fallbacks(node.get("fallbacks"), "router_settings.fallbacks")
        if "fallbacks" in litellm:
            self.fallbacks(litellm["fallbacks"], "litellm_settings.fallbacks")
        if "allowed_fails" in node:
            n = _number(node["allowed_fails"])
            if n is None or n < 0 or n != int(n):
                self.row("router_settings.allowed_fails", NOT_MAPPED, "not a whole number")
            else:
                self.defaults.setdefault("breaker", {})["failures"] = int(n) + 1
                self.row("router_settings.allowed_fails", APPROX,
                         f"defaults.breaker.failures: {int(n) + 1} (the breaker opens after that many consecutive "
                         "failures, or a failure ratio over its window; LiteLLM counts failures per minute)")
        if "cooldown_time" in node:
            t = _number(node["cooldown_time"])
            if t is None or t <= 0:
                self.row("router_settings.cooldown_time", NOT_MAPPED, "not a positive number of seconds")
            else:
                self.defaults.setdefault("breaker", {})["cooldown"] = t
                self.row("router_settings.cooldown_time", MAPPED, "defaults.breaker.cooldown (seconds open)")
        if "timeout" in node:
            self.timeout(node["timeout"], "router_settings.timeout")
        self.redis(node)
        aliases = node.get("model_group_alias")
        if isinstance(aliases, dict):
            out = self.out.setdefault("aliases", {})
            for alias, target in aliases.items():
                if isinstance(target, dict):
                    target = target.get("model")
                if isinstance(alias, str) and isinstance(target, str):
                    out[alias] = target
        handled = {"routing_strategy", "num_retries", "fallbacks", "allowed_fails", "cooldown_time", "timeout",
                   "redis_host", "redis_port", "redis_password", "model_group_alias"}
        for key in node:
            if key not in handled:
                self.row(f"router_settings.{key}", NOT_MAPPED, _unknown_setting(key))

    def fallbacks(self, node: Any, where: str) -> None:
        if node is None:
            return
        if not isinstance(node, list):
            self.row(where, NOT_MAPPED, "must be a list of {model: [fallbacks]}")
            return
        for i, item in enumerate(node):
            if not isinstance(item, dict):
                self.row(f"{where}[{i}]", NOT_MAPPED, "must be a {model: [fallbacks]} mapping")
                continue
            for name, targets in item.items():
                targets = [targets] if isinstance(targets, str) else targets
                model = self.models.get(name) if isinstance(name, str) else None
                if model is None or not isinstance(targets, list):
                    self.row(f"{where}[{i}].{name}", NOT_MAPPED, f"{name!r} is not a model of model_list")
                    continue
                chain = model.setdefault("fallbacks", [])
                for t in targets:
                    if t == name or t not in self.models or wildcard_prefix(str(t)) is not None:
                        self.row(f"{where}[{i}].{name}", NOT_MAPPED, f"fallback {t!r} is not another model "
                                                                      "with one upstream model")
                    elif t not in chain:
                        chain.append(t)
                self.row(f"{where}[{i}].{name}", MAPPED, f"models.{name}.fallbacks: {chain}")

    def timeout(self, value: Any, where: str) -> None:
        t = _number(value)
        if t is None or t <= 0:
            self.row(where, NOT_MAPPED, "not a positive number of seconds")
            return
        self.defaults.setdefault("timeouts", {})["total"] = t
        self.row(where, MAPPED, "defaults.timeouts.total (seconds for a whole attempt)")

    def redis(self, node: dict[str, Any]) -> None:
        if "redis_host" not in node:
            for key in ("redis_port", "redis_password"):
                if key in node:
                    self.row(f"router_settings.{key}", NOT_MAPPED, "no redis_host")
            return
        password = node.get("redis_password")
        self.out["state"] = {"redis": redis_url(node["redis_host"], node.get("redis_port", 6379),
                                                password if password else None)}
        for key in ("redis_host", "redis_port", "redis_password"):
            if key in node:
                self.row(f"router_settings.{key}", MAPPED,
                         "state.redis (the Redis the cache and stored Responses share across processes)")

    def litellm_settings(self, node: dict[str, Any]) -> None:
        if "request_timeout" in node:
            if "timeout" in self._router:
                self.row("litellm_settings.request_timeout", APPROX, "router_settings.timeout wins")
            else:
                self.timeout(node["request_timeout"], "litellm_settings.request_timeout")
        if "drop_params" in node:
            if node["drop_params"] in (True, "true", "True"):
                self.defaults["unsupported_params"] = "drop"
                self.row("litellm_settings.drop_params", MAPPED,
                         "defaults.unsupported_params: drop (dropped fields are listed in "
                         "x-llmproxy-dropped-params)")
            else:
                self.row("litellm_settings.drop_params", MAPPED, "defaults.unsupported_params: error (the default)")
        state = self.out.get("state")
        cache, url = convert_cache(node, state["redis"] if state else None, self.row)
        if cache is not None:
            self.out["cache"] = cache
        if url is not None:
            self.out["state"] = {"redis": url}
        for key in node:
            if key not in ("request_timeout", "drop_params", "cache", "cache_params", "num_retries", "fallbacks"):
                self.row(f"litellm_settings.{key}", NOT_MAPPED, _unknown_setting(key))

    def general_settings(self, node: dict[str, Any]) -> None:
        if "master_key" in node:
            key = str(env_ref(node["master_key"]))
            if key.startswith("${") or len(key) >= MIN_KEY_LENGTH:
                self.out["keys"] = [{"name": MASTER_KEY_NAME, "key": key, "role": "admin"}]
                self.row("general_settings.master_key", MAPPED,
                         f"keys: {MASTER_KEY_NAME}, role admin: sent as Bearer as before, and it may use "
                         "/admin/* as LiteLLM's master key its admin API; the virtual keys made with it are in "
                         "LiteLLM's database, not this file: recreate them under keys:")
            else:
                self.out.setdefault("server", {})["api_keys"] = [key]
                self.row("general_settings.master_key", APPROX,
                         f"server.api_keys: shorter than the {MIN_KEY_LENGTH} characters keys: needs, so a "
                         "plain client key without the admin role; better: a longer one from os.environ/VAR")

        for key in node:
            if key != "master_key":
                self.row(f"general_settings.{key}", NOT_MAPPED, _unknown_setting(key))


def _section(doc: dict[str, Any], name: str, conv: _Converter) -> dict[str, Any]:
    node = doc.get(name)
    if node is None:
        return {}
    if not isinstance(node, dict):
        conv.row(name, NOT_MAPPED, "not a mapping")
        return {}
    return node


def _unknown_param(key: str) -> str:
    if key in ("stream_timeout",):
        return "llmproxy bounds streams by defaults.timeouts first_byte and idle"
    if key in ("max_retries", "num_retries"):
        return "retries are per model in llmproxy (retry.retries)"
    if key == "vertex_credentials":
        return "the vertex type takes an OAuth2 access token as api_key / api_key_file, not a service account"
    return "no llmproxy equivalent"


_NOT_YET = {
    "database_url": "LiteLLM's database (virtual keys, teams, budgets, spend) is not read: recreate each key "
                    "under keys: (llmproxy key new NAME prints the entry; models, rpm, tpm, max_parallel, budget "
                    "per key); spend starts at 0 in state.path",
    "alerting": "llmproxy has no alerting; use its Prometheus metrics",
    "success_callback": "llmproxy has no callbacks; use its access log, metrics and traces",
    "failure_callback": "llmproxy has no callbacks; use its access log, metrics and traces",
    "callbacks": "llmproxy has no callbacks; use its access log, metrics and traces",
    "max_budget": "llmproxy's budgets are per key (keys[].budget: {usd, period}); there is no proxy-wide one",
    "budget_duration": "llmproxy's budgets are per key (keys[].budget.period: 1h, 1d, 7d or 30d)",
    "max_internal_user_budget": "llmproxy's budgets are per key (keys[].budget)",
    "default_max_internal_user_budget": "llmproxy's budgets are per key (keys[].budget)",
    "context_window_fallbacks": "llmproxy does not classify errors by context window; use fallbacks",
    "content_policy_fallbacks": "llmproxy does not classify errors by content policy; use fallbacks",
    "enable_pre_call_checks": "no pre-call context window check",
    "set_verbose": "use --log-level DEBUG",
}


def _unknown_setting(key: str) -> str:
    return _NOT_YET.get(key, "no llmproxy equivalent")


def convert(doc: Any) -> tuple[dict[str, Any], list[Row]]:
    """The llmproxy document for LiteLLM document ``doc``, and the report."""
    conv = _Converter()
    if not isinstance(doc, dict):
        conv.row("", NOT_MAPPED, "a LiteLLM config is a mapping with model_list")
        return {}, conv.rows
    router = _section(doc, "router_settings", conv)
    litellm = _section(doc, "litellm_settings", conv)
    general = _section(doc, "general_settings", conv)
    conv._router = router
    conv.model_list(doc.get("model_list"))
    conv.router_settings(router, litellm)
    conv.litellm_settings(litellm)
    conv.general_settings(general)
    for key in doc:
        if key not in ("model_list", "router_settings", "litellm_settings", "general_settings"):
            detail = ("set these in the environment" if key == "environment_variables" else "no llmproxy equivalent")
            conv.row(str(key), NOT_MAPPED, detail)
    out: dict[str, Any] = {}
    if "server" in conv.out:
        out["server"] = conv.out["server"]
    if "state" in conv.out:
        out["state"] = conv.out["state"]
    if "cache" in conv.out:
        out["cache"] = conv.out["cache"]
    if "keys" in conv.out:
        out["keys"] = conv.out["keys"]
    if conv.defaults:
        out["defaults"] = conv.defaults
    out["providers"] = conv.providers
    out["models"] = conv.models
    table = wildcard_table(conv.models)
    aliases = {}
    for alias, target in conv.out.get("aliases", {}).items():
        if alias in conv.models or "*" in alias or not (
                (target in conv.models and wildcard_prefix(target) is None) or match_wildcard(table, target)):
            conv.row(f"router_settings.model_group_alias.{alias}", NOT_MAPPED,
                     "an alias must be a new name for a model of model_list")
        else:
            aliases[alias] = target
            conv.row(f"router_settings.model_group_alias.{alias}", MAPPED, f"aliases: {alias} → {target}")
    if aliases:
        out["aliases"] = aliases
    return out, conv.rows


def to_yaml(doc: Mapping[str, Any], source: str, rows: Sequence[Row] = ()) -> str:
    """The YAML text, headed by what was approximated or not mapped (as comments)."""
    head = (f"# llmproxy config imported from the LiteLLM config {source}\n"
            "# (llmproxy import-litellm; check it with: llmproxy check FILE)\n")
    for r in rows:
        if r.outcome != MAPPED:
            head += f"# {r.outcome}: {r.setting}: {r.detail}".replace("\n", " ") + "\n"
    return head + yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, width=100)


def report_text(rows: Sequence[Row]) -> str:
    width = max((len(r.setting) for r in rows), default=10)
    lines = [f"{r.setting:<{width}}  {r.outcome:<12}  {r.detail}" for r in rows]
    counts = {o: sum(r.outcome == o for r in rows) for o in (MAPPED, APPROX, NOT_MAPPED)}
    lines.append(f"{counts[MAPPED]} mapped, {counts[APPROX]} approximated, {counts[NOT_MAPPED]} not mapped")
    return "\n".join(lines)

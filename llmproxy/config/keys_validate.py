"""``keys:`` and ``prices_file:``: the cross-field part of their validation.

Each entry's plain keys are walked from ``KeyConfig``'s declarations like
every other section; what is checked here needs more than one field: the
key material (exactly one of ``key_sha256``, ``key``, ``key_file``, or none
for a policy that only JWT callers select), unique names, no key given
twice (``server.api_keys`` included), model names that exist and globs that
parse. The plaintext of ``key`` / ``key_file`` is hashed here and dropped:
a ``Config`` never holds it.

``prices_file`` is LiteLLM's ``model_prices_and_context_window.json``
(``input_cost_per_token``, ``output_cost_per_token``,
``cache_read_input_token_cost``, USD per token); a deployment without
``price:`` takes the entry named by its ``model``, else by
``<provider type>/<model>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .schema import did_you_mean, kind_of, show
from .tree import KEY_GIVEN, DeploymentConfig, KeyConfig, ModelConfig, Price

if TYPE_CHECKING:
    from .validate import Validator

HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}")
MIN_KEY_LENGTH = 16  # a guessable client key is worse than none: it looks like protection
MAX_KEYS = 10_000  # keys are label values of three metrics: a bound on their series
MAX_PRICES_FILE = 32 * 1024 * 1024  # LiteLLM's file is about 1.5 MB
_GLOB = re.compile(r"[*?\[]")


def key_hash(plaintext: str) -> str:
    """The hex sha256 a key is stored and compared as."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def is_glob(pattern: str) -> bool:
    return _GLOB.search(pattern) is not None


def glob_problem(pattern: str) -> str | None:
    """fnmatch takes almost anything; an unclosed ``[`` is a typo, not a literal."""
    depth = 0
    for ch in pattern:
        if ch == "[":
            if depth:
                return "has '[' inside a '[...]' set"
            depth = 1
        elif ch == "]" and depth:
            depth = 0
    return "has an unclosed '[' (a glob set); write [[] for a literal '['" if depth else None


def virtual_keys(v: Validator, node: Any, models: Mapping[str, ModelConfig],
                 api_keys: frozenset[str], routes: Callable[[str], bool] | None = None) -> tuple[KeyConfig, ...]:
    """``routes``: whether a name the client may send routes (models,
    aliases, names a wildcard matches); default: the model names."""
    if node is None:
        return ()
    if not isinstance(node, list):
        v.fail("keys", f"must be a list of keys, got {kind_of(node)}")
        return ()
    if len(node) > MAX_KEYS:
        v.fail("keys", f"has {len(node)} entries; at most {MAX_KEYS}")
        return ()
    out: list[KeyConfig] = []
    names: dict[str, int] = {}
    hashes: dict[str, str] = {key_hash(k): "server.api_keys" for k in api_keys}
    for i, entry in enumerate(node):
        path = f"keys[{i}]"
        values = v.walk([KeyConfig], entry, path)
        if values is None:
            continue
        k = values[0]
        name = k.get("name")
        if not isinstance(name, str) or not name:
            continue  # reported by the walk (required)
        if not KEY_NAME.fullmatch(name):
            v.fail(f"{path}.name", f"must be letters, digits and ._:@/- (at most 64, not starting with "
                                   f"punctuation), got {show(name)}")
            continue
        if name.startswith("api-key-"):
            v.fail(f"{path}.name", "names starting with 'api-key-' are what server.api_keys entries are called; "
                                   "choose another")
            continue
        if name in names:
            v.fail(f"{path}.name", f"duplicate key name {show(name)} (also keys[{names[name]}])")
            continue
        names[name] = i
        digest = _material(v, k, path)
        if digest is not None:
            other = hashes.get(digest)
            if other is not None:
                v.fail(path, f"the same key as {other}; each key must be given once")
                continue
            hashes[digest] = f"keys[{i}] ({name})"
        for j, pattern in enumerate(k["models"]):
            mpath = f"{path}.models[{j}]"
            if is_glob(pattern):
                if (problem := glob_problem(pattern)) is not None:
                    v.fail(mpath, f"{show(pattern)} {problem}")
            elif not (routes(pattern) if routes is not None else pattern in models):
                v.fail(mpath, f"unknown model {show(pattern)}{did_you_mean(pattern, models)}")
        budget = k["budget"]
        if budget is not None and budget.usd is None:
            budget = None
        out.append(KeyConfig(**{
            **k, "key_sha256": digest, "budget": budget,
            "key_text": KEY_GIVEN if k.get("key_text") is not None else None,
            "key_file": k["key_file"] if isinstance(k.get("key_file"), str) else None,
        }))
    return tuple(out)


def _material(v: Validator, k: dict[str, Any], path: str) -> str | None:
    """The entry's key as its sha256, or None (no key: a policy for JWT callers)."""
    given = [name for name in ("key_sha256", "key_text", "key_file") if k.get(name) is not None]
    if len(given) > 1:
        shown = [n if n != "key_text" else "key" for n in given]
        v.fail(path, f"set one of key_sha256, key or key_file, not {' and '.join(shown)}")
        return None
    if not given:
        return None
    if given[0] == "key_sha256":
        text = v.string(k["key_sha256"], f"{path}.key_sha256", required=True)
        if text is None:
            return None
        digest = text.strip().lower()
        if not HEX_SHA256.fullmatch(digest):
            v.fail(f"{path}.key_sha256", f"must be 64 hex digits (a sha256), got {len(text)} characters"
                   + ("" if re.fullmatch(r"[0-9a-fA-F]*", text.strip()) else " that are not all hex"))
            return None
        return digest
    if given[0] == "key_text":
        plain = v.string(k["key_text"], f"{path}.key", required=True)
        where = f"{path}.key"
    else:
        plain = v.secret_file(k["key_file"], f"{path}.key_file")
        where = f"{path}.key_file"
    if not plain:
        return None
    if len(plain) < MIN_KEY_LENGTH:
        v.fail(where, f"the key has {len(plain)} characters; use at least {MIN_KEY_LENGTH} "
                      "(llmproxy key new NAME makes one)")
        return None
    return key_hash(plain)


def prices_file(v: Validator, node: Any) -> dict[str, Price]:
    """Model name → Price from a LiteLLM price file (empty when not set)."""
    if node is None:
        return {}
    fpath = v.string(node, "prices_file", required=True)
    if not fpath:
        return {}
    resolved = Path(fpath) if os.path.isabs(fpath) else v.base_dir / fpath
    try:
        with resolved.open("rb") as f:
            raw = f.read(MAX_PRICES_FILE + 1)
    except OSError as exc:
        v.fail("prices_file", f"cannot read {fpath[:200]}: {exc.strerror or exc}")
        return {}
    if len(raw) > MAX_PRICES_FILE:
        v.fail("prices_file", f"{fpath[:200]} is larger than {MAX_PRICES_FILE // (1024 * 1024)} MiB")
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        v.fail("prices_file", f"{fpath[:200]} is not valid JSON: {exc}")
        return {}
    if not isinstance(doc, dict):
        v.fail("prices_file", f"{fpath[:200]} must be a JSON object of model names, got {kind_of(doc)}")
        return {}
    out: dict[str, Price] = {}
    for name, entry in doc.items():
        if not isinstance(entry, dict):
            continue
        rates = [entry.get(f) for f in ("input_cost_per_token", "output_cost_per_token",
                                        "cache_read_input_token_cost")]
        if not all(r is None or (isinstance(r, (int, float)) and not isinstance(r, bool) and 0 <= r < 1)
                   for r in rates):
            continue  # LiteLLM's "sample_spec" documents the fields with strings
        if rates[0] is None and rates[1] is None:
            continue  # priced per image, per second, per character: not a token model
        out[name] = Price(input_per_mtok=(rates[0] or 0.0) * 1e6, output_per_mtok=(rates[1] or 0.0) * 1e6,
                          cached_input_per_mtok=None if rates[2] is None else rates[2] * 1e6)
    return out


def apply_prices(models: dict[str, ModelConfig], prices: Mapping[str, Price]) -> dict[str, ModelConfig]:
    """Every deployment without ``price:`` priced from ``prices`` where it names one."""

    def priced(dep: DeploymentConfig) -> DeploymentConfig:
        if dep.price is not None:
            return dep
        price = prices.get(dep.model) or prices.get(f"{dep.provider.type}/{dep.model}")
        return dep if price is None else dataclasses.replace(dep, price=price)

    return {name: dataclasses.replace(m, deployments=tuple(priced(d) for d in m.deployments))
            for name, m in models.items()}

"""The public names a config answers to: models, wildcard models, aliases.

How a requested name resolves (``router.routing.Router.group``), in order:
1. a model of that exact name;
2. an alias (``aliases: {gpt4: gpt-4o}``), which names one model or a name a
   wildcard model matches; aliases do not chain;
3. the wildcard model with the longest prefix that the name starts with
   (``"openai/*"`` matches ``openai/gpt-4.1-nano``; ``"*"`` matches any name).

The checks here make that order unambiguous at load time: a wildcard is one
``*`` at the end of a model name; only a wildcard model's deployments may
say ``model: "*"`` (it becomes the part of the name the ``*`` matched); no
alias shadows a model, points at an alias, or at a wildcard pattern itself;
no model falls back to a wildcard pattern (it has no one upstream model).
Pure functions; problems go to the validator's ``fail``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .schema import did_you_mean, show
from .schema import kind_of as _kind

Fail = Callable[[str, str], None]
# A model name and its wildcard part: far beyond any real model id, and a
# bound on what a client's name can make a key of.
MAX_NAME = 256


def wildcard_prefix(name: str) -> str | None:
    """``"openai/"`` for ``"openai/*"``; None for an exact name."""
    if name.endswith("*") and name.count("*") == 1:
        return name[:-1]
    return None


def match_wildcard(prefixes: list[tuple[str, str]], name: str) -> tuple[str, str] | None:
    """(pattern, what ``*`` matched) of the longest prefix ``name`` starts with.

    ``prefixes`` is (prefix, pattern) sorted longest prefix first. The
    matched part must be non-empty, without ``*``, and the name at most
    ``MAX_NAME`` characters.
    """
    if len(name) > MAX_NAME or "*" in name:
        return None
    for prefix, pattern in prefixes:
        if len(name) > len(prefix) and name.startswith(prefix):
            return pattern, name[len(prefix):]
    return None


def wildcard_table(models: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(prefix, pattern) of every wildcard model, longest prefix first."""
    table = [(p, name) for name in models if (p := wildcard_prefix(name)) is not None]
    return sorted(table, key=lambda t: len(t[0]), reverse=True)


def check_models(models: Mapping[str, Any], fail: Fail) -> None:
    """Wildcard shapes and ``*`` in deployments' models; fallbacks to wildcards."""
    for name, model in models.items():
        path = _join("models", name)
        if "*" in name and wildcard_prefix(name) is None:
            fail(path, "a wildcard model name has one '*', at its end (such as \"openai/*\")")
        wild = wildcard_prefix(name) is not None
        for i, dep in enumerate(model.deployments):
            if "*" in dep.model and not wild:
                fail(f"{path}.deployments[{i}].model",
                     f"{show(dep.model)} has a '*', which only a wildcard model's deployments may use")
            elif dep.model.count("*") > 1:
                fail(f"{path}.deployments[{i}].model", "may hold one '*' (what the wildcard matched)")
        for i, fb in enumerate(model.fallbacks):
            if fb in models and wildcard_prefix(fb) is not None:
                fail(f"{path}.fallbacks[{i}]",
                     f"{show(fb)} is a wildcard model, which has no one upstream model to fall back to")


def routable(models: Mapping[str, Any], aliases: Mapping[str, str]) -> Callable[[str], bool]:
    """Whether a name routes: a model, an alias, or a name a wildcard model matches."""
    table = wildcard_table(models)

    def routes(name: str) -> bool:
        return name in models or name in aliases or match_wildcard(table, name) is not None

    return routes


def aliases(node: Any, models: Mapping[str, Any], fail: Fail) -> dict[str, str]:
    """``aliases:`` checked against ``models``: public name → target name."""
    if node is None:
        return {}
    if not isinstance(node, dict):
        fail("aliases", f"must be a mapping of public names to model names, got {_kind(node)}")
        return {}
    table = wildcard_table(models)
    out: dict[str, str] = {}
    for alias, target in node.items():
        path = _join("aliases", alias)
        if not _is_name(alias):
            fail(path, f"alias names must be non-empty strings, got {show(alias)}")
            continue
        alias = str(alias)
        if not _is_name(target):
            fail(path, f"must be a model name, got {_kind(target)}")
            continue
        target = str(target)
        if "*" in alias:
            fail(path, "an alias is one name: no '*' (a wildcard is a model: models: {\"prefix/*\": ...})")
        elif alias in models:
            fail(path, f"shadows the model {show(alias)}; an alias must be a name no model has")
        elif target in node and target not in models:
            fail(path, f"points at the alias {show(target)}; aliases do not chain: name its model")
        elif target in models and wildcard_prefix(target) is not None:
            fail(path, f"points at the wildcard pattern {show(target)}; name a model it matches, "
                       f"such as {show(target[:-1] + 'some-model')}")
        elif target not in models and match_wildcard(table, target) is None:
            fail(path, f"unknown model {show(target)}{did_you_mean(target, models)}")
        else:
            out[alias] = target
    return out


def _is_name(node: Any) -> bool:
    # YAML makes ``4:`` an int; a 5,000-digit one is no name (and str() refuses it).
    if isinstance(node, int) and not isinstance(node, bool):
        return node.bit_length() <= 64
    return isinstance(node, str) and 0 < len(node) <= MAX_NAME


def _join(path: str, key: object) -> str:
    text = key if isinstance(key, str) else show(key)
    if len(text) > 64:
        text = text[:61] + "..."
    return f"{path}.{text}"

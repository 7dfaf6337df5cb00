"""Credentials of a config that was *rejected*, masked out of its problems.

The log redactor knows only the serving config's secrets, so a reload that
fails on a newly rotated key would otherwise quote that key in the 422 body,
the ERROR line and ``/admin/config``'s ``last_error``. The validator already
never quotes a value under a secret-named key (``config_validate.show``);
this is the second line: every string under such a key (or under any
``headers:``), its ``${VAR}`` expansion and URL passwords are masked out of
the problems before anyone sees them.

Could merge with ``redact.config_secrets`` (which reads a valid ``Config``)
once both exist on one branch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from .redact import MASK

# Key names whose values are credentials: api_key, api_keys, token,
# aws_secret_access_key, aws_session_token, password, Authorization...
SECRET_KEY = re.compile(r"key|secret|token|passw|credential|auth", re.IGNORECASE)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_URL_PASSWORD = re.compile(r"://[^/\s:@]*:([^/\s@]+)@")
MIN_LEN = 4  # shorter values would mask ordinary words of the messages
_MAX_NODES = 100_000  # the document is already bounded (size, alias budget); belt and braces


def is_secret_key(key: object) -> bool:
    # api_key_file names where the secret is, not the secret.
    return isinstance(key, str) and SECRET_KEY.search(key) is not None and not key.endswith("_file")


def rejected_secrets(doc: Any, env: Mapping[str, str]) -> set[str]:
    """Every credential-looking string of a parsed (possibly invalid) document."""
    found: set[str] = set()
    for value in _secret_strings(doc):
        found.add(value)
        for m in _ENV_REF.finditer(value):
            found.add(env.get(m.group(1), m.group(2) or ""))
        found.add(_ENV_REF.sub(lambda m: env.get(m.group(1), m.group(2) or ""), value))
    return {s for s in found if len(s) >= MIN_LEN}


def _secret_strings(doc: Any) -> Iterator[str]:
    # Iterative and by identity: aliases make the document a DAG (or a cycle).
    stack: list[tuple[Any, bool]] = [(doc, False)]
    seen: set[int] = set()
    while stack and len(seen) < _MAX_NODES:
        node, secret = stack.pop()
        if isinstance(node, str):
            if secret:
                yield node
            yield from _URL_PASSWORD.findall(node)
            continue
        if not isinstance(node, (dict, list)) or id(node) in seen:
            if secret and isinstance(node, (int, float)) and not isinstance(node, bool):
                yield str(node) if abs(node) < 10**40 else ""
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            for k, v in node.items():
                stack.append((v, secret or is_secret_key(k) or k == "headers"))
        else:
            stack.extend((v, secret) for v in node)


def redact_problems(problems: list[str], doc: Any, env: Mapping[str, str]) -> list[str]:
    """``problems`` with the rejected document's credentials masked."""
    secrets = sorted(rejected_secrets(doc, env), key=len, reverse=True)
    if not secrets:
        return list(problems)
    out = []
    for p in problems:
        for s in secrets:
            if s in p:
                p = p.replace(s, MASK)
        out.append(p)
    return out

"""Credentials of a config that was *rejected*, masked out of its problems.

The log redactor knows only the serving config's secrets, so a reload that
fails on a newly rotated key would otherwise quote that key in the 422 body,
the ERROR line and ``/admin/config``'s ``last_error``. Two lines of defence:
the validator never quotes a value under a secret-named key
(``is_secret_key``, used by ``config.validate.show``'s callers), and every
credential the rejected document holds (``redact.secrets_in_raw_config``:
the one walker of raw documents) is masked out of the problems before
anyone sees them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..observe.redact import MASK, secrets_in_raw_config

# Key names whose values are never quoted in a problem: api_key, api_keys,
# token, aws_secret_access_key, password, Authorization... Broader than what
# the redactor masks (it also catches session_key): a value left unquoted
# costs nothing, a credential quoted costs a rotation.
SECRET_KEY = re.compile(r"key|secret|token|passw|credential|auth", re.IGNORECASE)
MIN_LEN = 4  # shorter values would mask ordinary words of the messages


def is_secret_key(key: object) -> bool:
    # api_key_file names where the secret is, not the secret.
    return isinstance(key, str) and SECRET_KEY.search(key) is not None and not key.endswith("_file")


def redact_problems(problems: list[str], doc: Any, env: Mapping[str, str]) -> list[str]:
    """``problems`` with the rejected document's credentials masked."""
    secrets = sorted((s for s in secrets_in_raw_config(doc, env) if len(s) >= MIN_LEN), key=len, reverse=True)
    if not secrets:
        return list(problems)
    out = []
    for p in problems:
        for s in secrets:
            if s in p:
                p = p.replace(s, MASK)
        out.append(p)
    return out

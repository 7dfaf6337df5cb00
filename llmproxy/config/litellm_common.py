"""What every part of ``import-litellm`` shares: the report's rows and outcomes,
and how a LiteLLM value is read (``os.environ/VAR`` → ``${VAR}``, numbers
written as strings). Pure: no files, no environment."""

from __future__ import annotations

import re
from typing import Any, NamedTuple


class Row(NamedTuple):
    setting: str  # where in the LiteLLM config, e.g. model_list[2].litellm_params.rpm
    outcome: str  # mapped | approximated | not mapped
    detail: str


MAPPED, APPROX, NOT_MAPPED = "mapped", "approximated", "not mapped"

_ENV = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")


def env_ref(value: Any) -> Any:
    """``os.environ/VAR`` → ``${VAR}``; anything else as it is."""
    if isinstance(value, str) and (m := _ENV.fullmatch(value.strip())):
        return "${" + m.group(1) + "}"
    return value


def number(value: Any) -> float | None:
    value = env_ref(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def redis_url(host: Any, port: Any = 6379, password: Any = None, *, username: Any = None, ssl: bool = False,
              db: Any = 0) -> str:
    """A ``state.redis`` URL from LiteLLM's separate Redis settings (each may be a ``${VAR}``)."""
    user = "" if username is None else str(env_ref(username))
    auth = f"{user}:{env_ref(password)}@" if password is not None else (f"{user}@" if user else "")
    return f"{'rediss' if ssl else 'redis'}://{auth}{env_ref(host)}:{env_ref(port)}/{env_ref(db)}"

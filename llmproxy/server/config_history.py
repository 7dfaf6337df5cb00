"""The last applied configs: what ran when, their diffs, and rollback's source.

Each entry keeps the secret-free view (``config.views.redacted_view``) and,
for rollback only, the raw bytes that were applied. The raw bytes may hold
credentials: they stay in this process's memory and are never served;
everything served is a view or a unified diff of two views (secrets masked
on both sides, so a changed key shows as a changed line of ``***``).

Bounded by ``admin.config_history`` entries (the oldest go first).
"""

from __future__ import annotations

import difflib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from ..config.tree import Config
from ..config.views import redacted_view

# Where an applied config came from (the reload's reason → the history's source).
SOURCES = {
    "file changed": "file watch", "periodic check": "file watch", "SIGHUP": "SIGHUP",
    "POST /admin/reload": "admin", "rollback": "rollback", "start": "start",
}
MIN_PREFIX = 7
MAX_DIFF_LINES = 5000


@dataclass(frozen=True)
class Applied:
    sha256: str
    applied_at: float  # unix time
    source: str
    view: dict[str, Any]
    # The bytes that were applied, for rollback; None for a config not read
    # from a file. Never served (repr=False keeps them out of any log too).
    raw: bytes | None = field(default=None, repr=False)

    def summary(self, current_sha: str) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.applied_at)),
            "source": self.source,
            "current": self.sha256 == current_sha,
            "rollback": self.raw is not None,
        }


class ConfigHistory:
    def __init__(self, size: int) -> None:
        self.entries: deque[Applied] = deque(maxlen=max(size, 1))

    def record(self, config: Config, raw: bytes | None, reason: str) -> Applied:
        if len(self.entries) and self.entries.maxlen != max(config.admin.config_history, 1):
            self.entries = deque(self.entries, maxlen=max(config.admin.config_history, 1))
        entry = Applied(config.sha256, time.time(), SOURCES.get(reason, reason), redacted_view(config), raw)
        self.entries.append(entry)
        return entry

    def newest_first(self) -> list[Applied]:
        return list(reversed(self.entries))

    def find(self, ref: str) -> Applied | None:
        """The newest entry whose sha256 is ``ref`` or starts with it (at least
        ``MIN_PREFIX`` hex digits); ValueError for a prefix two shas share."""
        ref = ref.strip().lower()
        if len(ref) < MIN_PREFIX:
            raise ValueError(f"give at least {MIN_PREFIX} hex digits of a sha256, got {ref[:80]!r}")
        found = [e for e in reversed(self.entries) if e.sha256.startswith(ref)]
        if len({e.sha256 for e in found}) > 1:
            raise ValueError(f"{ref!r} is the start of more than one config's sha256; give more digits")
        return found[0] if found else None


def view_text(view: dict[str, Any]) -> str:
    return yaml.safe_dump(view, sort_keys=False, allow_unicode=True, default_flow_style=False)


def unified_diff(old: Applied, new: Applied) -> str:
    lines = list(difflib.unified_diff(
        view_text(old.view).splitlines(keepends=True), view_text(new.view).splitlines(keepends=True),
        fromfile=f"sha256:{old.sha256[:12]} ({old.source})", tofile=f"sha256:{new.sha256[:12]} ({new.source})",
    ))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... ({len(lines) - MAX_DIFF_LINES} more lines)\n"]
    return "".join(lines)


CONFIG_HISTORY = web.AppKey("llmproxy.config_history", ConfigHistory)

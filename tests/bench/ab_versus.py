"""No regression against older code, measured side by side in one run: the
llmproxy of git revision REV ("base") against the current tree ("new").

    bash tests/bench/run.sh --versus REV [--ab-rounds 8] [--ab-seconds 4] [--ab-sessions 2] [--ab-turns]

- **base**: REV checked out into a temporary ``git worktree add --detach``
  (removed at the end, also on errors), run as ``<venv python> -m llmproxy``
  with ``PYTHONPATH=<worktree>``;
- **new**: the current tree (uncommitted changes included), the same way with
  ``PYTHONPATH=<repo root>``.

Both get the bench's default proxy config and ``--log-level WARNING``, and
run from the work dir (so ``-m`` does not put the repo root first on
sys.path); a one-off ``import llmproxy`` under each environment shows where
each imports from. The method is side_by_side.py's; the ratios are new/base.
After each session the script checks that both answered every request (no
non-2xx, no socket errors, right answer sizes) and logged no ERROR record.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import ROOT, BenchError, free_port, log, write_proxy_conf
from side_by_side import SideBySide

LOG_LEVEL = "WARNING"


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


class VersusAB(SideBySide):
    VARIANTS = ("base", "new")
    OUT_NAME = "ab-versus"
    LIMIT = None  # a measurement, not a verdict: read the ratio and its range

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.rev: str = args.versus
        self.worktree: Path | None = None
        self.trees: dict[str, Path] = {"new": ROOT}
        self.envs: dict[str, dict[str, str]] = {}
        self.TITLE = f"versus {self.rev}: base vs new"

    # -- setup

    def prepare(self) -> None:
        found = git("rev-parse", "--verify", "--quiet", f"{self.rev}^{{commit}}")
        if found.returncode != 0:
            raise BenchError(f"--versus {self.rev}: not a commit in {ROOT}")
        commit = found.stdout.strip()
        head = git("rev-parse", "HEAD").stdout.strip()
        dirty = git("status", "--porcelain", "--", "llmproxy").stdout.strip()
        self.TITLE = (f"versus {self.rev} ({commit[:9]}): base vs new "
                      f"(HEAD {head[:9]}{', uncommitted changes' if dirty else ''})")
        self.worktree = Path(tempfile.mkdtemp(prefix="llmproxy-versus-"))
        added = git("worktree", "add", "--detach", str(self.worktree), commit)
        if added.returncode != 0:
            raise BenchError(f"git worktree add {self.worktree} {commit[:9]} failed:\n{added.stderr}")
        log(f"base: {self.rev} = {commit[:12]} checked out in {self.worktree}")
        changes = (f"uncommitted changes under llmproxy/:\n{dirty}" if dirty
                   else "no uncommitted changes under llmproxy/)")
        log(f"new: the current tree {ROOT} (HEAD {head[:12]}, {changes}")
        self.trees["base"] = self.worktree
        self.results["ab"]["versus"] = {"rev": self.rev, "base_commit": commit, "new_head": head,
                                        "new_uncommitted_llmproxy_changes": dirty.splitlines(), "imports": {}}
        for variant in self.VARIANTS:
            env = dict(os.environ)
            env["PYTHONPATH"] = str(self.trees[variant])
            self.envs[variant] = env
            self.check_imports(variant)
            self.check_config(variant)

    def run_here(self, variant: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``<venv python> *args`` under ``variant``'s environment, from the work dir."""
        return subprocess.run([sys.executable, *args], env=self.envs[variant], cwd=self.tmp,
                              capture_output=True, text=True, timeout=60)

    def check_imports(self, variant: str) -> None:
        p = self.run_here(variant, "-c", "import llmproxy; print(llmproxy.__file__)")
        where = p.stdout.strip()
        want = self.trees[variant] / "llmproxy" / "__init__.py"
        log(f"{variant}: PYTHONPATH={self.trees[variant]} imports llmproxy from {where or '(nothing)'}")
        self.results["ab"]["versus"]["imports"][variant] = where
        if p.returncode != 0 or Path(where).resolve() != want.resolve():
            raise BenchError(f"{variant}: llmproxy imports from {where or '(nothing)'}, not {want}:\n{p.stderr}")

    def check_config(self, variant: str) -> None:
        """Both must accept the bench's config: ``llmproxy check`` it before anything starts."""
        conf = write_proxy_conf(self.tmp, free_port(), self.upstream_port, name=f"check-{variant}")
        p = self.run_here(variant, "-m", "llmproxy", "check", str(conf))
        if p.returncode != 0:
            raise BenchError(
                f"{variant} ({self.rev if variant == 'base' else 'current tree'}) does not accept the bench's "
                f"proxy config ({conf}; a key it does not know?): 'llmproxy check' exited {p.returncode}:\n"
                f"{(p.stderr or p.stdout).strip()[-2000:]}")

    def launch_variant(self, variant: str, name: str, port: int) -> Any:
        try:
            return self.launch_proxy(name, port, LOG_LEVEL, command=[sys.executable, "-m", "llmproxy"],
                                     env=self.envs[variant], cwd=self.tmp)
        except BenchError as exc:
            raise BenchError(f"{variant} ({self.trees[variant]}) did not start with the bench's config: "
                             f"{exc}") from None

    # -- checks

    def verify_session(self) -> None:
        """Both answered every request; neither logged an ERROR record."""
        time.sleep(1.0)  # the last cut-off requests finish and anything about them is logged
        rows = [r for r in self.results["ab"]["rounds"] if r["session"] == self.session]
        for variant in self.VARIANTS:
            failed = sum(v["failed"] for r in rows for k, v in r.items() if k.endswith(f"_{variant}"))
            log(f"session {self.session}: {variant} completed {self.answered[variant]:,} requests "
                f"(warm-up and checks included), {failed} failed")
        for variant, errors in self.session_log_errors().items():
            listed = "; ".join(f"{n} x {what}" for what, n in errors.items())
            self.problems.append(f"session {self.session}: {variant} logged ERROR records: {listed}")

    def close(self) -> None:
        super().close()
        if self.worktree is None:
            return
        removed = git("worktree", "remove", "--force", str(self.worktree))
        if removed.returncode != 0:
            shutil.rmtree(self.worktree, ignore_errors=True)
            git("worktree", "prune")
        log(f"removed the worktree {self.worktree}")
        self.worktree = None

"""Command line: ``llmproxy serve``, ``check``, ``key new`` and ``import-litellm``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Sequence

from . import __version__
from .config.tree import Config, ConfigError, load_config
from .config.views import describe_routes, summarize

DEFAULT_CONFIG = "configs/llmproxy.yaml"
LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def _load_or_report(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"llmproxy: {path} is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    if args.explain:
        from .config.views import explain_text

        print(explain_text())
        return 0
    if args.config is None:
        print("llmproxy check: give a config file (or --explain)", file=sys.stderr)
        return 2
    config = _load_or_report(args.config)
    if config is None:
        return 1
    print(f"{args.config}: OK ({summarize(config)})")
    print(describe_routes(config))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    path = args.config or os.environ.get("LLMPROXY_CONFIG") or DEFAULT_CONFIG
    config = _load_or_report(path)
    if config is None:
        return 1
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    level = getattr(args, "log_level", None) or os.environ.get("LLMPROXY_LOG_LEVEL") or config.logging.level

    from .server.workers import WorkerInfo, parse_workers, run_supervisor

    try:
        workers = parse_workers(args.workers)
    except ValueError:
        print(f"llmproxy: --workers must be a positive number or 'auto', got {args.workers!r}", file=sys.stderr)
        return 2
    if workers > 1:
        from .observe.logs import setup_logging as setup_supervisor_logging
        from .observe.logs import Redactor

        setup_supervisor_logging(level, config.logging.format, Redactor(), exclusive=True)
        return run_supervisor(path, host, port, workers, config.server.drain_timeout,
                              getattr(args, "log_level", None))

    from .observe.logs import REDACTOR, setup_logging
    from .server.app import create_app, serve

    worker = WorkerInfo.from_env()
    app = create_app(config, config_path=path, worker=worker)
    setup_logging(level, config.logging.format, app[REDACTOR], exclusive=True)
    if worker is not None:
        keys_shared = "shared on state.redis (divided only while Redis is down)" if config.state.redis \
            else "divided too; budgets are summed through the state.path file"
        logging.getLogger("llmproxy.workers").info(
            "worker %d of %d: deployment rpm/tpm/max_concurrency are divided by %d (each worker enforces "
            "its share); per-key rpm/tpm/max_parallel are %s", worker.index, worker.count, worker.count, keys_shared)
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        loop_factory = None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(app, host, port))
    except OSError as exc:
        print(f"llmproxy: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def cmd_key_new(args: argparse.Namespace) -> int:
    """A fresh client key, its sha256 and the ``keys:`` entry to paste.

    The key is printed once and kept nowhere: the config holds its hash.
    """
    import hashlib
    import secrets

    from .config.keys_validate import KEY_NAME

    name = args.name
    if not KEY_NAME.fullmatch(name) or name.startswith("api-key-"):
        print(f"llmproxy key new: {name[:80]!r} is not a key name: letters, digits and ._:@/- "
              "(at most 64, not starting with punctuation or 'api-key-')", file=sys.stderr)
        return 2
    key = "sk-llmp-" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    print(f"key:    {key}")
    print(f"sha256: {digest}")
    print()
    print("# Give the key to its user once; put this entry under keys: in the config:")
    print(f"  - name: {name}")
    print(f"    key_sha256: {digest}")
    return 0


def cmd_import_litellm(args: argparse.Namespace) -> int:
    """A LiteLLM proxy config → llmproxy YAML (stdout or -o), the report on stderr."""
    from pathlib import Path

    from .config.litellm_import import convert, report_text, to_yaml
    from .config.tree import parse_config, read_litellm

    try:
        doc = read_litellm(Path(args.path))
    except ConfigError as exc:
        print(f"llmproxy import-litellm: {exc.problems[0]}", file=sys.stderr)
        return 1
    out, rows = convert(doc)
    text = to_yaml(out, args.path, rows)
    # What is written must load: every ${VAR} stands in for its value here
    # (check runs without the secrets), so only a structural problem fails.
    placeholders = {name: "https://placeholder.invalid" for name in re.findall(r"\$\{(\w+)\}", text)}
    try:
        parse_config(text, env={**os.environ, **placeholders}, source=args.output or "<output>",
                     base_dir=Path(args.path).parent)
    except ConfigError as exc:
        print(report_text(rows), file=sys.stderr)
        print("llmproxy import-litellm: the result does not load:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    print(report_text(rows), file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmproxy", description="OpenAI-compatible LLM sidecar proxy")
    parser.add_argument("--version", action="version", version=f"llmproxy {__version__}")
    parser.add_argument(
        "--log-level", default=None, choices=LEVELS, type=str.upper,
        help="log level (default: $LLMPROXY_LOG_LEVEL, else logging.level in the config, else INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help=f"YAML config (default: $LLMPROXY_CONFIG or {DEFAULT_CONFIG})")
    serve.add_argument("--host", help="listen address (default: from 'listen:' in the config, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: from 'listen:', else 8080)")
    serve.add_argument("--workers", default="1", metavar="N",
                       help="worker processes sharing the port (SO_REUSEPORT); 'auto': the usable cores "
                            "(CPU affinity and cgroup quota). Default 1: one process, no supervisor")
    # Also accepted after the subcommand: `llmproxy serve --log-level debug`.
    serve.add_argument("--log-level", default=argparse.SUPPRESS, choices=LEVELS, type=str.upper)
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check", help="validate a config and print its routing table")
    check.add_argument("config", nargs="?", help="YAML config to check")
    check.add_argument("--explain", action="store_true",
                       help="print every config key with its kind, default and help, and exit")
    check.set_defaults(func=cmd_check)
    key = sub.add_parser("key", help="client keys (keys: in the config)")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    new = key_sub.add_parser("new", help="print a fresh key, its sha256 and a keys: entry")
    new.add_argument("name", help="the key's name (keys[].name)")
    new.set_defaults(func=cmd_key_new)
    imp = sub.add_parser("import-litellm", help="convert a LiteLLM proxy config; prints what was not mapped")
    imp.add_argument("path", help="the LiteLLM config.yaml")
    imp.add_argument("-o", "--output", help="write the llmproxy YAML here (default: stdout)")
    imp.set_defaults(func=cmd_import_litellm)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `serve` installs the redacting JSON/text handler once it has its config;
    # until then (and for `check`) plain lines on stderr.
    logging.basicConfig(
        level=args.log_level or os.environ.get("LLMPROXY_LOG_LEVEL", "INFO").upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

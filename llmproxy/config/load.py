"""Loading a config: bytes in (bounded, alias bombs refused), a ``Config`` out.

The dataclasses the result is made of, and what the loader may accept, are
``config.tree``'s; ``parse_config`` hands the parsed document to the one
generic validator (``config.validate``) and raises ``ConfigError`` with
every problem it found.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .tree import MAX_ALIAS_NODES, MAX_CONFIG_BYTES, Config, ConfigError



def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, expand and validate the YAML file at ``path``."""
    p = Path(path)
    try:
        raw = read_config_bytes(p)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    return parse_config(raw, env=env, source=str(path), base_dir=p.parent)


def read_litellm(path: Path) -> Any:
    """A LiteLLM config file parsed as our own are (bounded size, no alias bombs)."""
    try:
        raw = read_config_bytes(path)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB; refused"])
    loader = _ConfigLoader(raw)
    try:
        return loader.get_single_data()
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise ConfigError([_yaml_problem(str(path), exc)]) from None
    finally:
        loader.dispose()


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes, at most one past ``MAX_CONFIG_BYTES`` (so /dev/zero
    or a runaway generator is refused by ``parse_config``, not read whole)."""
    with path.open("rb") as f:
        return f.read(MAX_CONFIG_BYTES + 1)


class _ConfigLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses alias bombs.

    PyYAML shares an aliased node rather than copying it, but everything that
    walks the result (merge keys, a repr, a validator) pays for the expanded
    tree: each alias is charged the expanded size of what it names.
    """

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._alias_nodes += _expanded_size(target, self._sizes, set())
                if self._alias_nodes > MAX_ALIAS_NODES:
                    raise yaml.composer.ComposerError(
                        None, None,
                        f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)",
                        event.start_mark,
                    )
        return super().compose_node(parent, index)


def _expanded_size(node: yaml.Node, memo: dict[int, int], open_: set[int]) -> int:
    """Nodes in ``node`` with every shared child counted each time it appears.

    A node still being composed (a recursive alias) counts what it holds so
    far; the budget then bounds the recursion's use.
    """
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_ or not isinstance(node, yaml.CollectionNode):
        return 1
    open_.add(key)
    total = 1
    for item in node.value:
        for child in item if isinstance(item, tuple) else (item,):
            total += _expanded_size(child, memo, open_)
            if total > MAX_ALIAS_NODES:
                break
    open_.discard(key)
    memo[key] = total
    return total


def _yaml_problem(source: str, exc: BaseException) -> str:
    # Only PyYAML's own short phrases and the position: str(exc) quotes the
    # offending line, which may hold a credential.
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
    elif isinstance(exc, RecursionError):
        where, problem = "", "nested too deeply"
    else:  # ValueError from int(): an integer of thousands of digits
        where, problem = "", "a number is too large"
    return f"{source}: invalid YAML: {where}{problem[:200]}"


def parse_config(
    text: bytes | str,
    env: Mapping[str, str] | None = None,
    source: str = "<memory>",
    base_dir: Path | None = None,
) -> Config:
    """Parse and validate; CPU-bound, so a running proxy calls it off the loop."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{source}: the config file is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB; "
                           "refused without parsing it"])
    loader = _ConfigLoader(raw)
    try:
        doc = loader.get_single_data()
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError) as exc:
        raise ConfigError([_yaml_problem(source, exc)]) from None
    finally:
        loader.dispose()
    from .secrets import redact_problems  # here: both import this module's dataclasses
    from .validate import Validator

    environ = os.environ if env is None else env
    v = Validator(environ, base_dir or Path.cwd())
    config = v.config(doc, source, hashlib.sha256(raw).hexdigest())
    if v.problems:
        problems = redact_problems(v.problems, doc, environ)
        if v.dropped:
            problems.append(f"... and {v.dropped} more problems")
        raise ConfigError(problems)
    assert config is not None
    return config


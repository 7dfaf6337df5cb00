"""How a config key is declared: once, on its dataclass field.

``key(default, help=...)`` returns a ``dataclasses.field`` whose metadata says
everything else needs about the key (the way mitmproxy's
``loader.add_option(name, type, default, help)`` does): its YAML name, its
kind, its bounds, whether its value is a secret. The validator
(``config.validate.Validator.walk``), the admin view
(``config.views.redacted_view``) and ``llmproxy check --explain`` all read
the fields, so a new key is one declaration.

A field without this metadata is not a YAML key (a name taken from the
mapping key, a value filled in by a cross-field check).

This module is a leaf (no imports from the package) so ``config`` and the
provider modules can use it; it also holds the bounded value rendering every
message goes through.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# Kinds: bool, int, number, size ("20MiB"), str, enum (one of ``choices``),
# list (of strings), map (str → str), section (a nested dataclass), and
# manual (declared and documented here, parsed by an explicit check).
KINDS = frozenset({"bool", "int", "number", "size", "str", "enum", "list", "map", "section", "manual"})
_MISSING: Any = dataclasses.MISSING


def key(
    default: Any = _MISSING,
    *,
    help: str,
    kind: str | None = None,
    yaml: str | None = None,
    secret: bool = False,
    positive: bool = True,
    max: float | None = None,
    choices: Iterable[str] = (),
    lower: bool = False,
    nullable: bool = False,
    check: Callable[[Any], str | None] | None = None,
    items: tuple[re.Pattern[str], str] | None = None,
    what: str = "a list of strings",
    cls: type | None = None,
    required: bool = False,
    nonempty: bool = False,
    shape: str = "",
    factory: Callable[[], Any] | None = None,
    view: Callable[[Any], Any] | None = None,
    url: bool = False,
) -> Any:
    """A dataclass field that is a config key.

    ``yaml`` is the key's name (dotted: under a sub-mapping) when it differs
    from the field's; ``positive`` (numbers: > 0, else >= 0) and ``max``
    bound numbers; ``nullable`` str keys turn ``null`` or ``""`` into None;
    ``check`` returns a problem for a parsed value; ``items`` is a (pattern,
    description) every list item must match; ``cls`` is the dataclass of a
    section whose default is None; ``view`` renders the value for the admin
    view; ``url`` values have their userinfo masked there. ``required``
    keys must be present, ``nonempty`` strings must not be ``""``; ``shape``
    is what ``--explain`` calls a manual key's kind.
    """
    if kind is None:
        kind = _infer_kind(default if factory is None else factory())
    assert kind in KINDS, kind
    meta = {
        "kind": kind, "help": help, "yaml": yaml, "secret": secret, "positive": positive, "max": max,
        "choices": tuple(choices), "lower": lower, "nullable": nullable, "check": check, "items": items,
        "what": what, "cls": cls, "required": required, "nonempty": nonempty, "shape": shape, "view": view, "url": url,
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    if secret:
        return dataclasses.field(default=default, metadata=meta, repr=False)
    return dataclasses.field(default=default, metadata=meta)


def _infer_kind(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return "str"
    if dataclasses.is_dataclass(default):
        return "section"
    raise TypeError(f"say the kind of a key whose default is {default!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    """One config key of a dataclass: its field and what ``key()`` declared."""

    field: dataclasses.Field[Any]
    path: tuple[str, ...]  # YAML names from the section's mapping down to the key

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def meta(self) -> Any:
        return self.field.metadata

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def secret(self) -> bool:
        return bool(self.meta["secret"])

    def default(self) -> Any:
        f = self.field
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None

    def section_class(self) -> type | None:
        if self.kind != "section":
            return None
        cls = self.meta["cls"]
        return cls if cls is not None else type(self.default())


_KEYS: dict[type, tuple[Key, ...]] = {}


def keys_of(cls: type) -> tuple[Key, ...]:
    """The config keys of dataclass ``cls``, in declaration order."""
    found = _KEYS.get(cls)
    if found is None:
        found = tuple(
            Key(f, tuple((f.metadata["yaml"] or f.name).split(".")))
            for f in dataclasses.fields(cls)
            if "kind" in f.metadata
        )
        _KEYS[cls] = found
    return found


def explain(cls: type, prefix: str = "", note: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(dotted path, kind, default, help) of every key under ``cls``."""
    for k in keys_of(cls):
        path = ".".join(k.path)
        path = f"{prefix}.{path}" if prefix else path
        sub = k.section_class()
        if sub is not None:
            yield from explain(sub, path, note)
            continue
        kind = k.meta["shape"] or k.kind
        if kind == "enum":
            kind = "one of " + ", ".join(k.meta["choices"])
        elif kind == "int" and k.meta["positive"] is False:
            kind = "int >= 0"
        elif kind == "number" and k.meta["max"] is not None:
            kind = f"number {'>' if k.meta['positive'] else '>='} 0, <= {k.meta['max']:g}"
        elif kind == "number":
            kind = f"number {'>' if k.meta['positive'] else '>='} 0"
        if k.secret:
            kind += ", secret"
        f = k.field
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            default = "required" if k.meta["required"] else "-"
        else:
            default = _plain_default(k.default())
        yield path, kind, default, k.meta["help"] + note


def _plain_default(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list, frozenset)):
        return "[]" if not value else "[" + ", ".join(sorted(map(str, value))) + "]"
    if hasattr(value, "keys") and not dataclasses.is_dataclass(value):
        return "{}" if not len(value) else str(dict(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --------------------------------------------------------------------------- rendering values

_MAX_KEY = 64
_SHOW = 80


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, else ``""``."""
    if len(value) > _MAX_KEY:  # difflib is quadratic; no real key is this long
        return ""
    hint = difflib.get_close_matches(value, sorted(choices), n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def kind_of(node: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(node), type(node).__name__
    )


def one_of(choices: Iterable[str]) -> str:
    """``a, b or c``."""
    c = list(choices)
    return c[0] if len(c) == 1 else ", ".join(c[:-1]) + " or " + c[-1]


class _Lit(str):
    """A piece of punctuation in ``show``'s walk, not a value to quote."""


def show(value: Any, limit: int = _SHOW) -> str:
    """A repr of ``value`` cut at ``limit`` characters, built without ever
    materialising the whole repr: an alias-shared YAML structure can stand
    for billions of nodes, and a string can be megabytes."""
    out: list[str] = []
    size = 0
    stack: list[Any] = [value]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, _Lit):
            piece = str(item)
        elif isinstance(item, str):
            piece = repr(item[: limit + 1])
        elif isinstance(item, (dict, list, tuple, set, frozenset)):
            opener, closer = ("{", "}") if isinstance(item, (dict, set, frozenset)) else ("[", "]")
            parts: list[Any] = []
            for i, element in enumerate(item.items() if isinstance(item, dict) else item):
                if i * 2 > limit:
                    parts.append(_Lit("..."))
                    break
                if i:
                    parts.append(_Lit(", "))
                if isinstance(item, dict):
                    parts.extend((element[0], _Lit(": "), element[1]))
                else:
                    parts.append(element)
            stack.append(_Lit(closer))
            stack.extend(reversed(parts))
            piece = opener
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            piece = repr(item)
        elif isinstance(item, int):
            piece = repr(item) if item.bit_length() < 4 * limit else f"<an integer of {item.bit_length()} bits>"
        elif isinstance(item, (bytes, bytearray)):
            piece = repr(bytes(item[: limit + 1]))
        else:
            piece = f"<{type(item).__name__}>"
        out.append(piece)
        size += len(piece)
    text = "".join(out)
    if stack or len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def parse_listen(value: str) -> tuple[str, int] | None:
    """``host:port``, ``[v6]:port`` or ``:port`` → (host, port)."""
    m = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$", value) or re.match(r"^([^:\[\]]*):(\d{1,5})$", value)
    if not m:
        return None
    port = int(m.group(2))
    if not 0 < port < 65536:
        return None
    return (m.group(1) or "0.0.0.0", port)

"""Names of the built-in pieces (data sources, networks, optimizers, schedules, trackers), each
registered by a decorator where the piece is defined.

A module declares an entry with ``@register_network("lenet", image_size=32, help="...")`` (or
``register_source``, ``register_optimizer``, ``register_schedule``, ``register_tracker``) on the
class or function that builds it. The command line's choices, the YAML checks, ``--help`` and
the docs come from the registries, so adding a piece is one new module (and its test).

Listing a registry's names does not import the modules that declare them: the declarations are
read from the modules' source (the decorator's name, a string literal and literal keyword
arguments), so ``train.py --help`` and a configuration error stay free of MindSpore's import.
:meth:`Registry.get` imports the declaring module when an entry is used, and the decorator then
records the object itself. ``tests/test_registries.py`` checks that what is read from the source
is what the decorators register.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

_ROOT = Path(__file__).resolve().parent

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One declared entry: its name, the module that declares it and its literal keywords."""

    name: str
    module: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def help(self) -> str:
        """The entry's one-line description (its ``help=`` keyword), or ``""``."""
        return str(self.info.get("help", ""))


class Registry:
    """The entries of one kind, declared by ``@DECORATOR("name", **literals)`` in ``places``.

    Args:
        kind: What an entry is, in words, for messages (``"network"``).
        decorator: The decorator's name as modules spell it (``"register_network"``).
        places: Modules (``"engine/optim.py"``) or packages (``"networks"``, every module in it
            and in its sub-packages) of ``trainer`` that declare entries.
    """

    def __init__(self, kind: str, decorator: str, *places: str) -> None:
        self.kind, self.decorator, self.places = kind, decorator, places
        self._declared: dict[str, Entry] | None = None
        self._objects: dict[str, Any] = {}

    # ------------------------------------------------------------------ declaring
    def register(self, name: str, **info: Any) -> Callable[[T], T]:
        """The decorator that records ``name`` for the class or function it decorates.

        The keywords are the entry's facts (``help``, ``image_size``, ...); they must be
        literals, since the registry reads them from the source before the module is imported.
        ``rank`` orders the names in lists (lower first, then by module name).
        """
        def record(obj: T) -> T:
            declared = self.entries().get(name)
            if declared is not None and getattr(obj, "__module__", None) != declared.module:
                # A copy of the declaring module's code run elsewhere (MindSpore's O1 conversion
                # executes a rewritten copy of the network's module): the entry stays the
                # declaring module's own.
                return obj
            known = self._objects.get(name)
            if known is not None and known is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._objects[name] = obj
            return obj

        return record

    # ------------------------------------------------------------------ reading
    def entries(self) -> dict[str, Entry]:
        """Every declared entry by name, in the order the modules declare them."""
        if self._declared is None:
            found: dict[str, Entry] = {}
            for path in self._files():
                for entry in _declarations(path, self.decorator):
                    if entry.name in found:
                        raise ValueError(f"{self.kind} {entry.name!r} is declared in "
                                         f"{found[entry.name].module} and {entry.module}")
                    found[entry.name] = entry
            order = sorted(found.values(), key=lambda e: e.info.get("rank", 50))
            self._declared = {e.name: e for e in order}
        return self._declared

    def names(self) -> tuple[str, ...]:
        """The declared names, by ``rank`` and then module name."""
        return tuple(self.entries())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.entries()

    def entry(self, name: str) -> Entry:
        """The declaration of ``name``.

        Raises:
            KeyError: ``name`` is not declared.
        """
        return self.entries()[name]

    def info(self, name: str, key: str, default: Any = None) -> Any:
        """One literal fact of ``name``'s declaration."""
        return self.entries()[name].info.get(key, default)

    def get(self, name: str) -> Any:
        """The class or function registered as ``name``, its module imported first.

        Raises:
            KeyError: ``name`` is not declared, or its module did not register it.
        """
        entry = self.entries()[name]
        if name not in self._objects:
            importlib.import_module(entry.module)
        if name not in self._objects:
            raise KeyError(f"{entry.module} declares {self.kind} {name!r} but did not register "
                           "it")
        return self._objects[name]

    def registered(self) -> dict[str, Any]:
        """What the decorators of the modules imported so far have recorded."""
        return dict(self._objects)

    def describe(self) -> str:
        """``name (help), name (help), ...`` for help texts and messages."""
        return ", ".join(f"{e.name} ({e.help})" if e.help else e.name
                         for e in self.entries().values())

    def _files(self) -> list[Path]:
        files: list[Path] = []
        for place in self.places:
            path = _ROOT / place
            if path.suffix == ".py":
                files.append(path)
            else:
                files += sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        return files


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(_ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _declarations(path: Path, decorator: str) -> list[Entry]:
    """The ``@decorator("name", **literals)`` declarations of one module, read from its source
    (only the decorators' text is parsed, so listing names stays cheap).

    Raises:
        ValueError: a declaration that is not a string literal with literal keywords.
    """
    source = path.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(rf"^[ \t]*@{re.escape(decorator)}\(", source, re.M):
        start = match.end() - 1  # the opening parenthesis
        line = source.count("\n", 0, start) + 1
        where = f"{path.name}:{line}"
        call = _call_text(source, start, where)
        try:
            node = ast.parse(f"f{call}", mode="eval").body
        except SyntaxError:
            raise ValueError(f"{where}: @{decorator}'s arguments cannot be read") from None
        if (not isinstance(node, ast.Call) or len(node.args) != 1
                or not isinstance(node.args[0], ast.Constant)
                or not isinstance(node.args[0].value, str)):
            raise ValueError(f"{where}: @{decorator} takes the name as one string literal")
        try:
            info = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except ValueError:
            raise ValueError(f"{where}: @{decorator}'s keywords must be literals") from None
        found.append(Entry(node.args[0].value, _module_of(path), info))
    return found


def _call_text(source: str, start: int, where: str) -> str:
    """The text from the parenthesis at ``start`` to the one that closes it (strings with
    parentheses inside are skipped)."""
    depth, index, quote = 0, start, ""
    while index < len(source):
        char = source[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return source[start:index + 1]
        index += 1
    raise ValueError(f"{where}: a decorator's parenthesis is never closed")


# The registries. Each lists where its entries are declared.
SOURCES = Registry("data source", "register_source", "data/sources")
NETWORKS = Registry("network", "register_network", "networks")
OPTIMIZERS = Registry("optimizer", "register_optimizer", "engine/optim.py")
SCHEDULES = Registry("learning-rate schedule", "register_schedule", "engine/schedules.py")
TRACKERS = Registry("tracker", "register_tracker", "tracking.py")

register_source = SOURCES.register
register_network = NETWORKS.register
register_optimizer = OPTIMIZERS.register
register_schedule = SCHEDULES.register
register_tracker = TRACKERS.register

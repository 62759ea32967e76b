"""Reading YAML recipes safely: bounded in size, nodes and depth, no duplicate keys, no tags.

``yaml.safe_load`` builds only plain data, but it expands anchors and aliases: a 1 KB document of
nested aliases stands for billions of nodes, and a duplicated key silently keeps the last value.
Here the document is first composed into YAML's node graph (aliases stay references, so this is
linear in the file's size), the graph is checked (expanded node count, depth, duplicate keys, no
recursive aliases), and only then turned into Python values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError
from trainer.limits import RECIPE_MAX_BYTES, RECIPE_MAX_DEPTH, RECIPE_MAX_NODES, describe


def read_recipe(path: str | os.PathLike) -> Any:
    """The plain Python value of a YAML file (usually a mapping of option names to values).

    Raises:
        ConfigError: the file is missing, not a regular file, too large, not UTF-8, not valid
            YAML, or breaks one of the bounds of :mod:`trainer.limits`; the message names the file
            and the fault.
    """
    from trainer.fileio import read_bounded

    path = Path(path)
    name = repr(str(path))
    try:
        raw = read_bounded(path, RECIPE_MAX_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"Config file {name} does not exist. Check the path given to "
                          "--config; the recipes that ship with the tool are in "
                          "configs/.") from None
    except ValueError as exc:
        raise ConfigError(f"Config file {name} cannot be read as a recipe: {exc}. A recipe is "
                          f"a text file of at most {describe(RECIPE_MAX_BYTES)}; pass the path "
                          "of a YAML recipe to --config.") from None
    except OSError as exc:
        raise ConfigError(f"Config file {name} cannot be read ({exc.strerror or exc}). Check "
                          "that it is a readable UTF-8 text file.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Config file {name} cannot be read ({exc}). Check that it is a "
                          "readable UTF-8 text file.") from None
    return parse_recipe(text, name)


def parse_recipe(text: str, name: str = "the recipe") -> Any:
    """Parses YAML text with the checks of :func:`read_recipe`."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, name) from None
    if node is None:
        return None
    _check_graph(node, name)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, name) from None
    finally:
        loader.dispose()


def _syntax_error(exc: Exception, name: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return ConfigError(f"Config file {name} is not valid YAML{where}: {problem}. Fix the syntax "
                       "(indentation, a missing colon or quote).")


_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in (
    "str", "int", "float", "bool", "null", "seq", "map", "merge"))


def _line(node) -> str:
    return f"line {node.start_mark.line + 1}"


def _check_graph(root, name: str) -> None:
    """Counts nodes with aliases expanded (memoised per node, so cheap), and checks depth,
    duplicate keys, recursion and tags."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"Config file {name} has a recursive alias at {_line(node)}; a "
                              "recipe holds plain values. Write the value out.")
        if depth > RECIPE_MAX_DEPTH:
            raise ConfigError(f"Config file {name} is nested more than {RECIPE_MAX_DEPTH} levels "
                              f"deep (at {_line(node)}); a recipe is a flat mapping of options.")
        if node.tag not in _PLAIN_TAGS:
            raise ConfigError(f"Config file {name} uses the tag {node.tag!r} at {_line(node)}; a "
                              "recipe holds plain values (numbers, strings, lists, mappings).")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child, depth + 1)
                _bound(total, node, name)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in seen:
                        raise ConfigError(
                            f"Config file {name} sets {key_node.value!r} twice (at "
                            f"{_line(seen[key_node.value])} and {_line(key_node)}); YAML would "
                            "keep only the last value. Keep one of them.")
                    seen[key_node.value] = key_node
                total += size(key_node, depth + 1) + size(value_node, depth + 1)
                _bound(total, node, name)
        active.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def _bound(total: int, node, name: str) -> None:
    if total > RECIPE_MAX_NODES:
        raise ConfigError(f"Config file {name} stands for more than {RECIPE_MAX_NODES:,} values "
                          f"once its aliases are expanded (the value starting at {_line(node)}); "
                          "a recipe needs a few dozen. Write the values out instead of nesting "
                          "aliases.")

"""The packages depend on each other in the order that docs/architecture.md states.

leaves -> config -> data -> networks -> evaluation -> checkpoint -> callbacks -> tracking ->
serving -> engine -> tune -> cli: every import (also one inside a function, and a lazy one named
in a ``_LAZY`` table) goes to the importer's own layer or one listed before it. The leaf modules
(errors, fileio, limits, logs, extras, plugins, device, registry) import only each other; the
package ``trainer`` itself (its public names) and the earlier import paths stand above all and
nothing inside imports them. ``callbacks`` reaches only the leaves and the checkpoint files, so
each callback works with a plain ``Model``.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEAVES = {"trainer.errors", "trainer.fileio", "trainer.limits", "trainer.logs",
          "trainer.extras", "trainer.plugins", "trainer.device", "trainer.registry"}
#: The public face, above every layer.
TOP = {"trainer"}
#: The layers from the bottom up, as docs/architecture.md lists them: ``leaves`` is LEAVES,
#: ``callbacks`` the package ``callbacks``, every other name ``trainer.<name>`` (a package or a
#: module).
ORDER = ("leaves", "config", "data", "networks", "evaluation", "checkpoint", "callbacks",
         "tracking", "serving", "engine", "tune", "cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _trees() -> dict[str, ast.Module]:
    """Every project module's syntax tree, parsed once for all the tests here."""
    paths = [*ROOT.glob("trainer/**/*.py"), *ROOT.glob("callbacks/**/*.py")]
    return {_module_name(path): ast.parse(path.read_text()) for path in paths}


def _lazy_targets(tree: ast.Module) -> set[str]:
    """The modules a package's ``_LAZY`` table names, imported when one of its names is read."""
    found = set()
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)):
            found |= {v.value for v in node.value.values
                      if isinstance(v, ast.Constant) and isinstance(v.value, str)}
    return found


@functools.cache
def _imports() -> dict[str, set[str]]:
    """Every project module and the project modules it imports (also inside functions).

    ``from package import module`` counts as an import of the module, not of the package's
    ``__init__``.
    """
    trees = _trees()
    modules = set(trees)
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        found = _lazy_targets(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {t for t in found if t in modules} - {name}
    return graph


def _package(module: str) -> str:
    if module in LEAVES or module in ("trainer",):
        return "leaf"
    parts = module.split(".")
    return parts[0] if parts[0] == "callbacks" else ".".join(parts[:2])


def _layer(module: str) -> str:
    """The name of the layer ``module`` belongs to in ORDER (``top`` for TOP)."""
    if module in TOP:
        return "top"
    if module in LEAVES:
        return "leaves"
    parts = module.split(".")
    return parts[0] if parts[0] == "callbacks" else parts[1]


def test_every_module_has_a_layer_in_the_documented_order():
    unplaced = sorted(m for m in _imports() if _layer(m) not in (*ORDER, "top"))
    assert not unplaced, (f"{unplaced} belong to no layer of ORDER: place the new package in "
                          "tests/test_layering.py and docs/architecture.md")


def test_imports_go_only_to_the_same_or_a_lower_layer():
    rank = {layer: i for i, layer in enumerate(ORDER)}
    upward = []
    for module, targets in sorted(_imports().items()):
        if module in TOP:
            continue
        for target in sorted(targets):
            if _layer(target) == "top" or rank[_layer(target)] > rank[_layer(module)]:
                upward.append(f"{module} ({_layer(module)}) imports {target} "
                              f"({_layer(target)})")
    assert not upward, "\n".join(upward)


def test_architecture_page_states_this_order():
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert " -> ".join(ORDER) in page


def test_the_final_test_and_serving_share_evaluate_network_below_the_engine():
    defining = sorted(
        name for name, tree in _trees().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "evaluate_network")
    assert defining == ["trainer.evaluation"]
    graph = _imports()
    for user in ("trainer.engine.final_test", "trainer.serving.evaluate"):
        assert "trainer.evaluation" in graph[user], user


def test_training_reaches_serving_only_through_trainer_evaluate():
    """The engine's one way into serving is ``Trainer.evaluate`` (a checkpoint's report); no
    part of a training run, the final test included, imports a serving module."""
    for name, tree in _trees().items():
        if _layer(name) != "engine":
            continue
        allowed = {id(node) for fn in ast.walk(tree)
                   if isinstance(fn, ast.FunctionDef) and fn.name == "evaluate"
                   and name == "trainer.engine.trainer" for node in ast.walk(fn)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            serving = [t for t in targets if t.startswith("trainer.serving")]
            assert not serving or id(node) in allowed, f"{name}:{node.lineno} imports {serving}"


def test_callbacks_reach_only_leaves_statistics_and_checkpoint_files():
    allowed = {"leaf", "callbacks", "trainer.checkpoint"}
    for module, targets in _imports().items():
        if module.startswith("callbacks"):
            bad = {t for t in targets if _package(t) not in allowed}
            assert not bad, f"{module} imports {sorted(bad)}"


def test_leaf_modules_import_only_leaves():
    for module in LEAVES:
        bad = {t for t in _imports()[module] if t not in LEAVES}
        assert not bad, f"{module} imports {sorted(bad)}"


def test_no_cycles_between_packages():
    edges: dict[str, set[str]] = {}
    for module, targets in _imports().items():
        if module in TOP:
            continue
        for target in targets:
            a, b = _package(module), _package(target)
            if a != b and b != "leaf" and target not in TOP:
                edges.setdefault(a, set()).add(b)

    def cycle_from(node, path):
        for nxt in edges.get(node, ()):
            if nxt in path:
                return [*path[path.index(nxt):], nxt]
            found = cycle_from(nxt, [*path, nxt])
            if found:
                return found
        return None

    for start in edges:
        found = cycle_from(start, [start])
        assert found is None, " -> ".join(found)


def test_no_module_level_import_cycles():
    top: dict[str, set[str]] = {}
    for name, tree in _trees().items():
        found = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        top[name] = found
    modules = set(top)
    top = {m: {t for t in ts if t in modules and t != m and not m.startswith(t + ".")}
           for m, ts in top.items()}

    def visit(node, path):
        for nxt in top[node]:
            if nxt in path:
                raise AssertionError(" -> ".join([*path[path.index(nxt):], nxt]))
            visit(nxt, [*path, nxt])

    for module in top:
        visit(module, [module])

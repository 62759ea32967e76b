"""The packages depend on each other in the order of the data flow, without cycles.

config -> data -> networks -> engine -> callbacks -> checkpoint -> serving -> cli, with leaf
modules (errors, fileio, limits, logs, extras, plugins) below all of them; ``callbacks`` never
reaches the engine, the data pipeline, the networks or the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEAVES = {"trainer.errors", "trainer.fileio", "trainer.limits", "trainer.logs",
          "trainer.extras", "trainer.plugins", "trainer.device", "trainer.registry"}
SHIMS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every project module and the project modules it imports (also inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in [*ROOT.glob("trainer/**/*.py"), *ROOT.glob("callbacks/**/*.py")]:
        name = _module_name(path)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t.split(".")[0] in ("trainer", "callbacks")}
        graph[name] = found
    modules = set(graph)
    return {m: {t for t in ts if t in modules} - {m} for m, ts in graph.items()}


def _package(module: str) -> str:
    if module in LEAVES or module in ("trainer",):
        return "leaf"
    parts = module.split(".")
    return parts[0] if parts[0] == "callbacks" else ".".join(parts[:2])


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
        if module in SHIMS or module == "trainer":
            continue
        for target in targets:
            a, b = _package(module), _package(target)
            if a != b and b != "leaf" and target not in SHIMS:
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
    for path in [*ROOT.glob("trainer/**/*.py"), *ROOT.glob("callbacks/**/*.py")]:
        name = _module_name(path)
        found = set()
        for node in ast.parse(path.read_text()).body:
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

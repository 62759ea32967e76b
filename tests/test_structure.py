"""The code stays readable in pieces: no class over 300 lines, no function over 80, and the
README within 250 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_CLASS_LINES, MAX_FUNCTION_LINES, MAX_README_LINES = 300, 80, 250


def _spans():
    for path in [*ROOT.glob("trainer/**/*.py"), *ROOT.glob("callbacks/**/*.py"),
                 ROOT / "train.py", ROOT / "predict.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield (f"{path.relative_to(ROOT)}:{node.name}", isinstance(node, ast.ClassDef),
                       node.end_lineno - node.lineno + 1)


def test_no_class_over_300_lines_and_no_function_over_80():
    too_long = [(where, n) for where, is_class, n in _spans()
                if n > (MAX_CLASS_LINES if is_class else MAX_FUNCTION_LINES)]
    assert not too_long, f"split these into named steps: {too_long}"


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= MAX_README_LINES

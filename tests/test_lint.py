"""The project's own code passes ruff, and so do the Python snippets its documents show.

Only the project's files are linted (a user's file saved in the checkout, such as the README's
callback example, is theirs), and every ```python block of README.md and docs/*.md is linted as
the module a reader would save it as.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ["trainer", "callbacks", "tests", "benchmarks", "examples", "train.py", "predict.py"]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

needs_ruff = pytest.mark.skipif(
    shutil.which("ruff") is None and subprocess.run(
        [sys.executable, "-m", "ruff", "--version"], capture_output=True).returncode != 0,
    reason="ruff is not installed (pip install -e '.[dev]')")


def _ruff(*paths: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                           "--config", str(ROOT / "pyproject.toml"), *paths],
                          capture_output=True, text=True, cwd=cwd)


@needs_ruff
def test_ruff_clean():
    result = _ruff(*PROJECT)
    assert result.returncode == 0, result.stdout + result.stderr


def snippets() -> list[tuple[str, str]]:
    found = []
    for doc in DOCUMENTS:
        for i, match in enumerate(SNIPPET.finditer(doc.read_text(encoding="utf-8"))):
            found.append((f"{doc.stem}_{i}", match.group(1)))
    return found


def test_documents_show_python_snippets():
    assert snippets(), "README.md and docs/ hold no ```python blocks to check"


@needs_ruff
def test_documented_snippets_are_lint_clean(tmp_path):
    for name, code in snippets():
        compile(code, name, "exec")  # each snippet is whole, runnable Python
        (tmp_path / f"{name}.py").write_text(code)
    result = _ruff(str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_ruff
def test_the_lint_ignores_a_users_file_in_the_checkout():
    """What made the old lint test fail: a user's own module saved beside train.py."""
    mine = ROOT / "my_callbacks_lint_probe.py"
    mine.write_text("import os, sys\nx=1\n")  # unsorted, unused: ruff would object
    try:
        result = _ruff(*PROJECT)
    finally:
        mine.unlink()
    assert result.returncode == 0, result.stdout + result.stderr

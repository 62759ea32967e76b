"""Shared fixtures: generated digit data, a place for runs, and running train.py as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from trainer.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# Keep MindSpore's C++ log quiet and decompressed-data caches inside the test's temp folders.
os.environ.setdefault("GLOG_v", "3")
_OWN_CACHE = None
if "MSTRAIN_CACHE" not in os.environ:
    _OWN_CACHE = os.environ["MSTRAIN_CACHE"] = tempfile.mkdtemp(prefix="mstrain-test-cache-")
# The runs keep their data in caches of their own, but share one build of the native kernels
# (tests/networks/test_native_kernels.py builds into caches of its own).
os.environ.setdefault("MSTRAIN_KERNELS_DIR", os.path.join(os.environ["MSTRAIN_CACHE"], "kernels"))


# The files that take longest (minutes of train.py subprocesses), started first so that the two
# test processes finish together.
SLOW_FIRST = ("tune/test_postgres.py", "test_benchmarks.py", "checkpoint/test_resume.py",
              "e2e/test_faults.py", "tune/test_study.py", "engine/test_distributed.py",
              "tracking/test_tracking_e2e.py", "e2e/test_faults_data.py",
              "tracking/test_tracking_server.py", "tracking/test_tracking_bounds.py",
              "e2e/test_train.py", "data/test_mindvision.py", "tune/test_study_folders.py",
              "e2e/test_amp_cli.py")


def pytest_collection_modifyitems(config, items) -> None:
    """Orders the slow files first (the order of tests within a file is kept)."""
    def rank(item) -> int:
        path = item.path.relative_to(ROOT / "tests").as_posix()
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)


def pytest_unconfigure(config) -> None:
    """Removes the session's own cache folder (never one the caller named)."""
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """A learnable MNIST look-alike (1,600 training, 400 test digits), raw IDX files."""
    from trainer.data.synthetic import generate_digits

    return generate_digits(tmp_path_factory.mktemp("digits"), train_size=1600, test_size=400,
                           seed=3)


@pytest.fixture(scope="session")
def digits_gz_dir(tmp_path_factory) -> Path:
    """The same kind of data, gzipped (as MNIST is distributed)."""
    from trainer.data.synthetic import generate_digits

    return generate_digits(tmp_path_factory.mktemp("digits_gz"), train_size=640, test_size=160,
                           seed=4, compress=True)


def run_train(args: list[str], cwd: Path | None = None, timeout: float = 300,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs ``python train.py ARGS`` in a subprocess, as a user would, and returns the result."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "GLOG_v": "3",
                "MSTRAIN_CACHE": str((cwd or ROOT) / ".cache"), **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def train_here(args: list[str], cwd: Path, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess:
    """Runs ``train.py ARGS`` in this process: the same ``trainer.cli.main`` a user's command
    runs, in ``cwd`` with ``env`` added to the environment and ``PYTHONPATH`` entries importable,
    without a new interpreter and MindSpore's import (seconds a run). For what a process adds
    (its exit, signals from outside, its memory), tests use :func:`run_train`.

    Returns what :func:`run_train` returns: the status, and stdout and stderr as text (an
    exception that escapes is printed as the process would print it, with status 1).
    """
    from trainer.cli import main

    return run_here(main, args, cwd, env)


def run_here(main, args: list[str], cwd: Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    """A command's ``main(args)`` in this process, as :func:`train_here` runs train.py's."""
    import contextlib
    import io
    import logging
    import traceback

    # Imported first, so the command takes signals with Python handlers for the run only, never
    # by blocking them in this process for good (its child processes would inherit the mask).
    import mindspore  # noqa: F401

    log = logging.getLogger("mstrain")
    saved_log = (list(log.handlers), log.level, log.propagate)
    extra = {"MSTRAIN_CACHE": str(cwd / ".cache"), **(env or {})}
    paths = [p for p in extra.pop("PYTHONPATH", "").split(os.pathsep) if p]
    saved_env = {k: os.environ.get(k) for k in extra}
    saved_path, saved_modules, here = list(sys.path), set(sys.modules), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(extra)
        sys.path[:0] = [*paths, str(cwd)]  # as for a script run there: its folder is importable
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(args))
            except SystemExit as exc:  # --help, argparse
                status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # what the interpreter would print before exiting with 1
                traceback.print_exc()
                status = 1
    finally:
        os.chdir(here)
        sys.path[:] = saved_path
        log.handlers[:], log.level, log.propagate = saved_log  # as a new process would find it
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        # A user's module written for this run must not answer for another run's.
        for name in set(sys.modules) - saved_modules:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if any(origin.startswith(str(folder)) for folder in [cwd, *map(Path, paths)]):
                del sys.modules[name]
    return subprocess.CompletedProcess([main.__module__, *args], status, out.getvalue(),
                                       err.getvalue())


@pytest.fixture
def train_cli(tmp_path):
    """``train_cli(*args)`` runs train.py in ``tmp_path`` with outputs under ``tmp_path/runs``."""

    def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return run_train(list(args), cwd=tmp_path, **kwargs)

    return _run


def write_yaml(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(func, *args, **kwargs) -> str:
    """Calls ``func`` expecting a ConfigError and returns its message on one line."""
    with pytest.raises(ConfigError) as info:
        func(*args, **kwargs)
    message = " ".join(info.value.paragraph().split())
    assert message.startswith("error: ") and info.value.exit_code == 2
    return message

"""A study and a run never write into each other or outside their folder, and a grid is bounded.

Each user-facing case runs ``python -m trainer.tune`` or ``train.py`` in a subprocess (through
``run_measured``: exit status, output, time and peak memory) and checks the first line of the
message, that no traceback was printed, and that nothing in the other folder changed. One real
study (one trial of one epoch) and one real run are shared by the module; the rules on names and
sizes are checked in-process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, config_error, write_yaml
from tests.e2e.test_faults import NAMESPACES, QUICK, WITH_MINDSPORE, in_namespace, run_measured
from trainer.tune.recipe import load_tune_recipe

pytestmark = pytest.mark.e2e

# A logistic regression trains a trial in about 2 s (see tests/tune/test_study.py).
RECIPE = """
search:
  lr: [0.05, 0.03]
tune:
  trials: 1
  pruner: none
epochs: 1
net: tests.cbkit:Tiny
batch_size: 32
steps_per_launch: 1
save_best: false
log_every: 0
plot: false
progress: false
"""
SUMMARY = "Total params:"


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


def env(cache: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "MSTRAIN_CACHE": str(cache)}


def tune(recipe: Path, data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "trainer.tune", "--config", str(recipe), "--data-dir",
            str(data), *args]


def train(data: Path, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--net", "tests.cbkit:Tiny", "--epochs", "1",
            "--data-dir", str(data), "--no-progress", "--no-plot", "--log-every", "0", *args]


def refused(result, first: str, bounds: tuple[float, float]) -> None:
    """Exit 2 with one paragraph whose first line says ``first``, no traceback, within bounds."""
    out = result.stdout + result.stderr
    assert result.status == 2, out[-3000:]
    assert "Traceback" not in out and result.stderr.count("error:") == 1, out[-3000:]
    assert result.stderr.startswith("error: ") and first in result.message, result.message
    seconds, peak_mb = bounds
    assert result.seconds < seconds and result.peak_mb < peak_mb, (result.seconds,
                                                                   result.peak_mb)


class Made:
    """The module's finished study and run, and where they live."""

    def __init__(self, root: Path, data: Path) -> None:
        self.root, self.data, self.cache = root, data, root / ".cache"
        self.recipe = write_yaml(root, RECIPE, name="s.yaml")
        self.runs = root / "runs"
        self.study = self.runs / "s"
        self.run = self.runs / "exp1"


@pytest.fixture(scope="module")
def made(tmp_path_factory, digits_dir) -> Made:
    """A finished study (one trial) and a finished run, side by side in ``runs/``."""
    m = Made(tmp_path_factory.mktemp("folders"), digits_dir)
    result = run_measured(tune(m.recipe, m.data, "--output-dir", str(m.runs)), m.root,
                          env=env(m.cache), timeout=240)
    out = result.stdout + result.stderr
    assert result.status == 0, out[-3000:]
    m.tune_output = out
    result = run_measured(train(m.data, "--output-dir", str(m.runs), "--run-name", "exp1"),
                          m.root, env=env(m.cache), timeout=240)
    assert result.status == 0, result.stderr[-3000:]
    m.train_output = result.stdout + result.stderr
    return m


# ------------------------------------------------------------------------------ the real ones
def test_a_study_makes_its_own_trial_runs_without_a_summary_each(made):
    # The trials' run directories live inside the study's folder and are ordinary runs.
    assert (made.study / "trial-0000" / "history.json").is_file(), made.tune_output[-3000:]
    assert (made.study / ".ask.lock").is_file() and (made.study / "best.yaml").is_file()
    assert made.tune_output.count(SUMMARY) == 0  # no 20-line model summary per trial
    assert made.train_output.count(SUMMARY) == 1  # a plain run still prints it


# ------------------------------------------------------------------------------ 2. mixing
def test_train_into_a_finished_study_is_refused_and_the_study_is_unchanged(made):
    before = snapshot(made.study)
    result = run_measured(train(made.data, "--output-dir", str(made.runs), "--run-name", "s"),
                          made.root, env=env(made.cache))
    refused(result, "is a study's folder", WITH_MINDSPORE)
    assert snapshot(made.study) == before


def test_a_study_inside_a_run_is_refused_and_the_run_is_unchanged(made):
    before = snapshot(made.run)
    result = run_measured(tune(made.recipe, made.data, "--output-dir", str(made.run),
                               "--study-name", "checkpoints"), made.root, env=env(made.cache))
    refused(result, "would be inside the run directory", QUICK)
    assert snapshot(made.run) == before


# ------------------------------------------------------------------------------ 2. names
def test_a_recipe_named_dot_dot_dot_yaml_writes_nothing_outside_output_dir(made, tmp_path):
    recipe = write_yaml(tmp_path, RECIPE, name="...yaml")
    out = tmp_path / "out" / "runs"
    result = run_measured(tune(recipe, made.data, "--output-dir", str(out)), tmp_path,
                          env=env(made.cache))
    refused(result, "is named after the recipe file", QUICK)
    assert "--study-name" in result.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["...yaml"]


@pytest.mark.parametrize("name", [".", "..", "a/../..", "a\\b", "x" * 201])
def test_a_study_name_is_one_plain_folder(tmp_path, name):
    path = write_yaml(tmp_path, RECIPE)
    message = config_error(load_tune_recipe, path, settings={"study_name": name})
    assert "plain folder name" in message


@pytest.mark.parametrize("file", ["...yaml", "..yaml", ("x" * 210) + ".yaml",
                                  os.fsdecode(b"\xff.yaml")])
def test_a_file_name_that_makes_no_folder_name_is_refused(tmp_path, file):
    path = tmp_path / file
    path.write_text(RECIPE)
    message = config_error(load_tune_recipe, path)
    assert "is named after the recipe file" in message and "--study-name" in message
    assert load_tune_recipe(path, settings={"study_name": "ok"}).study_dir.name == "ok"


@pytest.mark.parametrize("name", ["a?b", "a#b", "a%41b", "a b"])
def test_the_default_database_url_names_the_study_s_own_folder(tmp_path, name):
    from trainer.tune.study import default_storage, sqlite_file

    folder = tmp_path / name
    assert sqlite_file(default_storage(folder)) == (folder / "study.db").resolve()


# ------------------------------------------------------------------------------ 2. read-only
@pytest.mark.parametrize("target", ["s/study.db", "s"])
def test_a_read_only_study_database_is_a_message_and_nothing_changes(made, target):
    before = snapshot(made.study)
    argv = tune(made.recipe, made.data, "--output-dir", str(made.runs), "--trials", "2")
    path = made.runs / target
    if NAMESPACES:
        argv = in_namespace(f'mount --bind "{path}" "{path}" && '
                            f'mount -o remount,bind,ro "{path}"', argv)
    elif os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
    else:
        pytest.skip("no user namespace to make a read-only mount, and root writes anyway")
    try:
        result = run_measured(argv, made.root, env=env(made.cache))
    finally:
        if not NAMESPACES:
            path.chmod(mode)
    refused(result, "cannot be written", QUICK)
    assert "nothing was changed" in result.message
    assert snapshot(made.study) == before


# ------------------------------------------------------------------------------ 3. grid size
def test_a_grid_too_large_to_list_is_refused_before_memory_is_spent(tmp_path, digits_dir):
    recipe = write_yaml(tmp_path, """
search:
  lr: {low: 0.0001, high: 1.0, step: 0.0001}
  momentum: {low: 0.0, high: 0.9999, step: 0.0001}
tune: {sampler: grid}
epochs: 1
""")
    result = run_measured(tune(recipe, digits_dir, "--output-dir", str(tmp_path / "runs")),
                          tmp_path, env=env(tmp_path / ".cache"))
    refused(result, "--sampler grid: the grid has 10,000 (lr) x 10,000 (momentum)", QUICK)
    assert "more than the limit of 100,000" in result.message
    assert not (tmp_path / "runs").exists()


def test_the_grid_is_counted_without_listing_it(tmp_path):
    from trainer.limits import TUNE_GRID_MAX_POINTS

    path = write_yaml(tmp_path, "search:\n  batch_size: {low: 1, high: 1000}\n"
                                "  accumulate_steps: {low: 1, high: 100}\ntune: {sampler: grid}\n")
    recipe = load_tune_recipe(path)  # exactly at the limit: accepted
    assert recipe.space.grid_size() == TUNE_GRID_MAX_POINTS
    path.write_text(path.read_text().replace("high: 100}", "high: 101}"))
    assert "100,000" in config_error(load_tune_recipe, path)

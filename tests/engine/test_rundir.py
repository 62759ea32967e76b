"""The run directory: claimed by one process, never overwritten, moved aside on --overwrite."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainer.engine.rundir import (
    LOCK,
    STUDY_LOCK,
    RunDir,
    check_study_dir,
    holds_run,
    study_trials,
)
from trainer.errors import ConfigError, OutputError


def _finished_run(path):
    (path / "checkpoints").mkdir(parents=True)
    (path / "checkpoints" / "epoch-0001-gs00000010.ckpt").write_bytes(b"bundle")
    (path / "config.yaml").write_text("epochs: 1\n")
    (path / "history.json").write_text("{}")
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_a_new_directory_is_created_and_an_unused_one_removed_again(tmp_path):
    run = tmp_path / "runs" / "new"
    claimed = RunDir.claim(run)
    assert (run / LOCK).is_file()
    claimed.release()
    assert not run.exists()  # nothing was written into it: no empty run left behind


def test_a_directory_holding_a_run_is_refused_and_left_as_it_was(tmp_path):
    run = tmp_path / "done"
    before = _finished_run(run)
    with pytest.raises(ConfigError, match="already holds a run") as info:
        RunDir.claim(run)
    assert "--resume auto" in str(info.value) and "--overwrite" in str(info.value)
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*")
            if p.is_file() and p.name != LOCK} == before


def test_resume_claims_a_directory_holding_a_run(tmp_path):
    run = tmp_path / "done"
    _finished_run(run)
    RunDir.claim(run, resume=True).release()
    assert run.is_dir()


def test_overwrite_moves_the_earlier_run_aside_never_deletes_it(tmp_path):
    run = tmp_path / "done"
    before = _finished_run(run)
    claimed = RunDir.claim(run, overwrite=True)
    aside = claimed.replaced
    assert aside.parent == tmp_path and aside.name.startswith("done.replaced-")
    assert {p.relative_to(aside): p.read_bytes() for p in aside.rglob("*")
            if p.is_file() and p.name != LOCK} == before
    assert not holds_run(run)
    claimed.release()


def test_a_second_live_process_is_refused_and_a_killed_one_frees_the_lock(tmp_path):
    run = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time\n"
        "from trainer.engine.rundir import RunDir\n"
        f"held = RunDir.claim({str(run)!r}); print('held', flush=True); time.sleep(600)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=rf"in use by another training process \(pid "
                                              rf"{holder.pid}\)"):
            RunDir.claim(run)
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    RunDir.claim(run).release()  # the kernel dropped the lock with the process


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "runs").write_text("a file")
    with pytest.raises(OutputError, match="output directory .*runs is a file"):
        RunDir.claim(tmp_path / "runs" / "r")


# ------------------------------------------------------------------------------ runs and studies
def _study(path):
    """A folder as mstrain tune leaves it: its lock file, its database, a trial run."""
    path.mkdir(parents=True)
    (path / STUDY_LOCK).touch()
    (path / "study.db").write_bytes(b"SQLite format 3\0")
    _finished_run(path / "trial-0000")
    (path / "trial-0000" / LOCK).touch()
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _claimed_run(path):
    """A run directory as train.py leaves it: its lock file beside its files."""
    before = _finished_run(path)
    (path / LOCK).touch()
    return before


def _files(path):
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_a_study_s_folder_is_not_a_run_directory(tmp_path):
    before = _study(tmp_path / "s")
    with pytest.raises(ConfigError, match=r"s is a study's folder \(it holds \.ask\.lock, "
                                          r"study\.db\), not a run directory"):
        RunDir.claim(tmp_path / "s", overwrite=True)
    assert _files(tmp_path / "s") == before


@pytest.mark.parametrize("inside", ["trial-0007", "sub/run", "trial-0000/x"])
def test_a_run_inside_a_study_or_another_run_is_refused(tmp_path, inside):
    before = _study(tmp_path / "s")
    kind = "run directory" if inside.startswith("trial-0000/") else "study's folder"
    with pytest.raises(ConfigError, match=f"is inside the {kind}"):
        RunDir.claim(tmp_path / "s" / inside)
    assert _files(tmp_path / "s") == before and not (tmp_path / "s" / inside).exists()


def test_only_the_process_running_a_study_claims_its_trial_runs(tmp_path):
    study = tmp_path / "s"
    _study(study)
    with study_trials(tmp_path / "." / "s"):
        RunDir.claim(study / "trial-0001").release()  # a new trial
        RunDir.claim(study / "trial-0000", resume=True).release()  # a retried one
        with pytest.raises(ConfigError, match="is inside the study's folder"):
            RunDir.claim(study / "notes")
    with pytest.raises(ConfigError, match="is inside the study's folder"):
        RunDir.claim(study / "trial-0001")


def test_a_run_directory_holding_a_run_or_a_study_below_is_refused(tmp_path):
    _claimed_run(tmp_path / "runs" / "exp1")
    with pytest.raises(ConfigError, match=r"Run directory .*runs holds the run directory "
                                          r".*exp1 \(it holds config\.yaml"):
        RunDir.claim(tmp_path / "runs")
    _study(tmp_path / "more" / "s")
    with pytest.raises(ConfigError, match="holds the study's folder"):
        RunDir.claim(tmp_path / "more")
    assert not (tmp_path / "runs" / LOCK).exists() and not (tmp_path / "more" / LOCK).exists()


def test_common_file_names_above_are_not_taken_for_a_run_or_a_study(tmp_path):
    # A project folder with its own config.yaml, history.json or study.db holds neither.
    _finished_run(tmp_path)
    (tmp_path / "study.db").write_bytes(b"")
    RunDir.claim(tmp_path / "runs" / "exp1").release()
    check_study_dir(tmp_path / "runs" / "s")


def test_a_study_inside_a_run_or_holding_a_foreign_run_is_refused(tmp_path):
    _claimed_run(tmp_path / "exp1")
    for inside in ("checkpoints", "a/b"):
        with pytest.raises(ConfigError, match=r"would be inside the run directory .*exp1"):
            check_study_dir(tmp_path / "exp1" / inside)
    _study(tmp_path / "s")
    check_study_dir(tmp_path / "s")  # its own trial runs are fine
    _claimed_run(tmp_path / "s" / "mine")
    with pytest.raises(ConfigError, match=r"holds the run directory .*mine .*not one of the "
                                          r"study's trial runs"):
        check_study_dir(tmp_path / "s")
    with pytest.raises(ConfigError, match="is a run directory"):
        check_study_dir(tmp_path / "exp1")

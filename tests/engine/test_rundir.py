"""The run directory: claimed by one process, never overwritten, moved aside on --overwrite."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trainer.engine.rundir import LOCK, RunDir, holds_run
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

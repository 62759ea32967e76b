"""Data faults met the way a user meets them, each a command in a subprocess: paths that are not
regular files, a damaged or redirected cache, derived data kept out of the data folder, generated
digits of other sizes, long predict inputs, and ``mstrain cache``.

Each case checks the exit status, the first line of the message, that no traceback was printed,
a bound on the time and the peak memory (``run_measured``), and that nothing was lost or mixed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_faults import QUICK, TRAINING, WITH_MINDSPORE, Result, run_measured
from trainer.data.idx import SPLIT_FILES, read_idx, write_idx

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TRAIN_IMAGES, TRAIN_LABELS = SPLIT_FILES["train"]
TEST_IMAGES, TEST_LABELS = SPLIT_FILES["test"]


def _train(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *args]


def _predict(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "predict.py"), *args]


def _mstrain(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer.cli.commands", *args]


def _run_args(data: Path, *extra: str) -> list[str]:
    return _train("--data-dir", str(data), "--net", "mlp", "--epochs", "1", "--batch-size", "32",
                  "--no-plot", "--no-progress", "--log-every", "0", "--output-dir", "runs",
                  *extra)


def _shown(result: Result) -> str:
    return (f"status {result.status}\nstdout:\n{result.stdout[-3000:]}\n"
            f"stderr:\n{result.stderr[-3000:]}")


def _user_error(result: Result, first: str, bounds: tuple[float, int] = QUICK) -> None:
    """Exit 2, one ``error:`` paragraph starting with ``first``, no traceback, within bounds."""
    shown = _shown(result)
    assert result.status == 2, shown
    assert "Traceback" not in result.stderr + result.stdout, shown
    assert result.stderr[result.stderr.find("error: "):].startswith("error: "), shown
    assert result.message.startswith(f"error: {first}"), shown
    seconds, megabytes = bounds
    assert result.seconds < seconds and result.peak_mb < megabytes, \
        f"{result.seconds:.1f} s, {result.peak_mb:.0f} MB"


def _ok(result: Result, bounds: tuple[float, int] = TRAINING) -> None:
    shown = _shown(result)
    assert result.status == 0, shown
    assert "Traceback" not in result.stderr + result.stdout, shown
    seconds, megabytes = bounds
    assert result.seconds < seconds and result.peak_mb < megabytes, \
        f"{result.seconds:.1f} s, {result.peak_mb:.0f} MB"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# ------------------------------------------------------- paths that are not regular files
def _special(kind: str, where: Path) -> tuple[Path, str]:
    """A FIFO at ``where`` (made here), or /dev/zero; and how the message names it."""
    if kind == "fifo":
        os.mkfifo(where)
        return where, "a FIFO (named pipe)"
    return Path("/dev/zero"), "a character device"


def _predict_input(work: Path, special: Path, digits: Path) -> list[str]:
    return _predict("--ckpt", "unused.ckpt", str(special))


def _predict_labels(work: Path, special: Path, digits: Path) -> list[str]:
    return _predict("--ckpt", "unused.ckpt", str(digits / "test" / TEST_IMAGES), "--labels",
                    str(special))


def _predict_ckpt(work: Path, special: Path, digits: Path) -> list[str]:
    return _predict("--ckpt", str(special), str(digits / "test" / TEST_IMAGES))


def _train_config(work: Path, special: Path, digits: Path) -> list[str]:
    return _run_args(digits, "--config", str(special))


def _tune_config(work: Path, special: Path, digits: Path) -> list[str]:
    return _mstrain("tune", "--config", str(special))


SURFACES = {  # the surface: its command, and how its message starts
    "predict-input": (_predict_input, "Input {path} is {what}, not a regular file"),
    "predict-labels": (_predict_labels, "Labels file {path} is {what}, not a regular file"),
    "predict-ckpt": (_predict_ckpt, "Checkpoint '{path}' is {what}, not a regular file"),
    "train-config": (_train_config, "Config file '{path}' cannot be read as a recipe: it is "
                                    "{what}, not a regular file"),
    "tune-config": (_tune_config, "Config file '{path}' cannot be read as a recipe: it is "
                                  "{what}, not a regular file"),
}


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_a_path_that_is_not_a_file_is_refused(tmp_path, digits_dir, surface, kind):
    command, first = SURFACES[surface]
    special, what = _special(kind, tmp_path / "named.yaml")
    result = run_measured(command(tmp_path, special, digits_dir), tmp_path, timeout=30)
    _user_error(result, first.format(path=special, what=what))


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_data_file_that_is_not_a_file_is_refused_and_kept(tmp_path, digits_dir, kind):
    data = Path(shutil.copytree(digits_dir, tmp_path / "data"))
    path = data / "train" / TRAIN_LABELS
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
        what = "a FIFO (named pipe)"
    else:
        path.symlink_to("/dev/zero")
        what = "a character device"
    before = sorted(os.listdir(data / "train"))
    result = run_measured(_run_args(data), tmp_path, timeout=30)
    _user_error(result, f"IDX file {path} is {what}, not a regular file")
    assert sorted(os.listdir(data / "train")) == before  # not replaced by a download
    assert path.is_fifo() if kind == "fifo" else path.is_symlink()
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- the cache
@pytest.fixture(scope="module")
def first_run(tmp_path_factory, digits_gz_dir) -> dict:
    """One run on a copy of the gzipped digits, with its own cache: the data folder before and
    after, and the run's history."""
    work = tmp_path_factory.mktemp("cached")
    data = Path(shutil.copytree(digits_gz_dir, work / "data"))
    before = _files(data)
    result = run_measured(_run_args(data, "--run-name", "first"), work)
    return {"work": work, "data": data, "before": before, "result": result,
            "cache": work / ".cache" / "mstrain"}


def _history(work: Path, run: str) -> dict:
    return json.loads((work / "runs" / run / "history.json").read_text())


def test_derived_data_stays_out_of_the_data_folder(first_run):
    _ok(first_run["result"])
    assert _files(first_run["data"]) == first_run["before"]  # no decompressed/ copies
    kinds = {p.name for p in first_run["cache"].iterdir()}
    assert kinds == {"idx", "decoded"}  # the held-out split is rows of the decoded training split


def test_a_damaged_and_a_redirected_cache_are_rebuilt(first_run):
    _ok(first_run["result"])
    work, cache = first_run["work"], first_run["cache"]
    raw = next(p for p in (cache / "idx").iterdir() if (p / "test").is_dir())
    labels = raw / "test" / TEST_LABELS
    good = labels.read_bytes()
    write_idx(labels, ((read_idx(labels).astype(int) + 1) % 10).astype(np.uint8))  # same size
    # The test split's decoded labels pointed at another split's: a link out of the entry.
    test_entry, train_entry = (next(p for p in (cache / "decoded").iterdir()
                                    if json.loads((p / "manifest.json").read_text())["meta"]
                                    ["count"] == count) for count in (160, 640))
    (test_entry / "labels.npy").unlink()
    (test_entry / "labels.npy").symlink_to(train_entry / "labels.npy")
    result = run_measured(_run_args(first_run["data"], "--run-name", "second"), work)
    _ok(result)
    lines = [line for line in result.stdout.splitlines() if line.startswith("Cache entry")]
    assert len(lines) == 2, result.stdout
    # The decoded split is opened first; rebuilding it reads the raw copies, found damaged too.
    assert lines[0].startswith(f"Cache entry {test_entry} is damaged (labels.npy is a link to "
                               f"{train_entry / 'labels.npy'}, outside the entry)")
    assert lines[1] == (f"Cache entry {raw} is damaged (test/{TEST_LABELS} does not "
                        "match its recorded SHA-256); rebuilding it.")
    assert labels.read_bytes() == good and not (test_entry / "labels.npy").is_symlink()
    first, second = _history(work, "first"), _history(work, "second")
    # The same data, seed and machine: the same results as before the damage.
    assert second["history"]["val_accuracy"] == first["history"]["val_accuracy"]
    for which in ("final", "best"):
        assert [second["test"][which][k] for k in ("test_accuracy", "test_loss")] == \
            [first["test"][which][k] for k in ("test_accuracy", "test_loss")]
    assert _files(first_run["data"]) == first_run["before"]


def test_cache_list_and_clear_keep_what_a_run_uses(first_run):
    _ok(first_run["result"])
    work, cache = first_run["work"], first_run["cache"]
    env = {"MSTRAIN_CACHE": str(work / ".cache")}
    listed = run_measured(_mstrain("cache", "list"), work, env=env, timeout=30)
    _ok(listed, QUICK)
    lines = listed.stdout.splitlines()
    assert lines[0] == f"Cache folder: {cache}"
    entries = sorted(p for kind in cache.iterdir() for p in kind.iterdir())
    assert len(lines) == len(entries) + 2 and lines[-1].startswith(f"{len(entries)} entries, ")
    used = next(p for p in entries if p.parent.name == "decoded")
    holder = subprocess.Popen([sys.executable, "-c", (  # a run using the decoded split
        "import fcntl, time\n"
        f"h = open({str(used / '.in-use')!r}, 'a+'); fcntl.flock(h, fcntl.LOCK_SH)\n"
        "print('held', flush=True); time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cleared = run_measured(_mstrain("cache", "clear"), work, env=env, timeout=30)
    finally:
        holder.kill()
        holder.wait()
    _ok(cleared, QUICK)
    assert f"Kept decoded/{used.name}: a run is using or building it" in cleared.stdout
    assert f"Removed {len(entries) - 1} entries" in cleared.stdout
    assert [p for kind in cache.iterdir() for p in kind.iterdir()] == [used]
    with open(used / ".in-use", "a+") as handle:  # the holder's lock went with it
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_long_idx_input_is_summarised(first_run):
    _ok(first_run["result"])
    work, data = first_run["work"], first_run["data"]
    result = run_measured(_predict("--ckpt", str(work / "runs" / "first"),
                                   str(data / "test" / f"{TEST_IMAGES}.gz"), "--labels",
                                   str(data / "test" / f"{TEST_LABELS}.gz")), work)
    _ok(result, WITH_MINDSPORE)
    lines = result.stdout.splitlines()
    assert len(lines) <= 15 and lines[10].startswith("... and 150 more images (--all")
    assert all(line.startswith(str(data / "test")) for line in lines[:10])
    assert lines[-1].startswith("Accuracy: ") and lines[-1].endswith("/160)")


# ---------------------------------------------------------------------- generated digits
def test_generated_digits_of_another_size_are_refused(tmp_path):
    from trainer.data.synthetic import generate_digits

    data = generate_digits(tmp_path / "syn", train_size=40, test_size=20, seed=0)
    before = _files(data)
    result = run_measured(_train("--data-source", "synthetic", "--data-dir", str(data),
                                 "--synthetic-train-size", "30", "--synthetic-test-size", "20",
                                 "--epochs", "1", "--no-progress", "--output-dir", "runs"),
                          tmp_path, timeout=60)
    _user_error(result, f"The data folder {data} holds 40 training and 20 test digits, but "
                        "this run asks for 30 and 20")
    assert "--synthetic-train-size 40" in result.message
    assert _files(data) == before and not (tmp_path / "runs").exists()

"""Bad inputs and faults, each run as a user would: exit status, message, time, memory, no debris.

One table, grouped by the class of fault. Every case runs ``train.py`` or ``predict.py`` in a
subprocess (reaped with ``os.wait4`` for its peak memory) and checks the exit status, the first
line of the message, that no traceback was printed, a bound on the time and the peak memory, and
that nothing with a final name was left half-written. Disk faults use a real small tmpfs, or a
read-only bind mount, inside a user and mount namespace when the machine allows one, and an
injected write failure (``tests/inject.py``) otherwise; the case id says which.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from trainer.data.idx import SPLIT_FILES, read_idx

TESTS = ROOT / "tests"
TRAIN_IMAGES, TRAIN_LABELS = SPLIT_FILES["train"]
TEST_IMAGES, TEST_LABELS = SPLIT_FILES["test"]
# Bounds on a case: before MindSpore is imported, and once it is (its import alone is ~400 MB).
QUICK = (15.0, 150)
WITH_MINDSPORE = (60.0, 900)
TRAINING = (120.0, 1200)


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float

    @property
    def label(self) -> str:
        """How the paragraph starts: ``stopped:`` for a stop the user asked for (status
        130), ``error:`` for a mistake or a fault."""
        return "stopped: " if self.status == 130 else "error: "

    @property
    def message(self) -> str:
        """The paragraph on one line (from its first ``error:`` or ``stopped:``)."""
        text = self.stderr
        start = text.find(self.label)
        return " ".join(text[start:].split()) if start >= 0 else ""


def run_measured(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
                 timeout: float = 300, on_line: Callable[[str, subprocess.Popen], None] | None
                 = None) -> Result:
    """Runs ``argv``, returning its status, output, wall time and peak resident memory (through
    ``tests/measure.py``, which reports the command's own peak)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "GLOG_v": "3",
                "MSTRAIN_CACHE": str(cwd / ".cache"), **(env or {})}
    peak_file = cwd / ".peak-kb"
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(TESTS / "measure.py"), str(peak_file), *argv],
                            cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    out: list[str] = []
    err: list[str] = []

    def pump(stream, sink, watch):
        for line in stream:
            sink.append(line)
            if watch is not None:
                watch(line, proc)

    readers = [threading.Thread(target=pump, args=(proc.stdout, out, on_line)),
               threading.Thread(target=pump, args=(proc.stderr, err, None))]
    for reader in readers:
        reader.start()
    killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    killer.start()
    status = proc.wait()
    killer.cancel()
    for reader in readers:
        reader.join()
    peak_kb = int(peak_file.read_text()) if peak_file.exists() else 0
    peak_file.unlink(missing_ok=True)
    return Result(status, "".join(out), "".join(err), time.monotonic() - start, peak_kb / 1024)


def namespaces_work() -> bool:
    """Whether this machine lets an unprivileged user and mount namespace mount a tmpfs."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null || "
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return probe.returncode == 0


NAMESPACES = namespaces_work()


def in_namespace(mounts: str, argv: list[str]) -> list[str]:
    """``argv`` run after ``mounts`` (shell commands) inside a fresh user and mount namespace."""
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
            f'{mounts} && exec "$@"', "sh", *argv]


# ------------------------------------------------------------------------------ the workspace
@dataclass
class Work:
    """A case's folder and helpers to build its inputs."""

    root: Path
    digits: Path
    made: dict[str, Any] = field(default_factory=dict)
    code: Path = ROOT  # the checkout whose train.py and predict.py run

    def train(self, *args: str) -> list[str]:
        return [sys.executable, str(self.code / "train.py"), *args]

    def predict(self, *args: str) -> list[str]:
        return [sys.executable, str(self.code / "predict.py"), *args]

    def data_copy(self) -> Path:
        if "data" not in self.made:
            self.made["data"] = Path(shutil.copytree(self.digits, self.root / "data"))
        return self.made["data"]


def _train_args(work: Work, *extra: str, data: Path | None = None) -> list[str]:
    return work.train("--data-dir", str(data or work.digits), "--net", "mlp", "--epochs", "1",
                      "--batch-size", "100", "--no-plot", "--no-progress", "--log-every", "0",
                      "--output-dir", "runs", *extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, digits_dir) -> Path:
    """A finished one-epoch MLP run (bundles after step 8 and at the epoch's end): the source
    of checkpoints to damage and runs to reuse."""
    work = Work(tmp_path_factory.mktemp("finished"), digits_dir)
    result = run_measured(_train_args(work, "--run-name", "done", "--save-every-steps", "8",
                                      "--log-every", "8"), work.root)
    assert result.status == 0, result.stderr
    return work.root / "runs" / "done"


def resign(source: Path, target: Path, edit: Callable[[dict], None]) -> Path:
    """Copies a bundle with its metadata edited and its checksum recomputed (an attacker's or a
    buggy tool's edit that the checksum alone would not catch)."""
    import mindspore as ms

    from trainer.checkpoint.bundle import CHECKSUM_KEY, META_KEY, _digest

    raw = ms.load_checkpoint(str(source))
    meta = json.loads(raw.pop(META_KEY))
    raw.pop(CHECKSUM_KEY)
    edit(meta)
    meta_json = json.dumps(meta, sort_keys=True)
    arrays = [(k, v.asnumpy()) for k, v in raw.items()]
    items = [{"name": k, "data": ms.Tensor(a)} for k, a in arrays]
    ms.save_checkpoint(items, str(target),
                       append_dict={META_KEY: meta_json, CHECKSUM_KEY: _digest(arrays, meta_json)})
    return target


def _copy_run(work: Work, finished: Path, name: str = "done") -> Path:
    return Path(shutil.copytree(finished, work.root / "runs" / name))


def _bundle(run: Path) -> Path:
    folder = run / "checkpoints"
    return folder / json.loads((folder / "latest.json").read_text())["file"]


def _png(path: Path, width: int, height: int) -> Path:
    """A valid PNG header for a huge image with a tiny body: a few hundred bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def _idx_header(ndim_dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 8, len(ndim_dims)]) + struct.pack(f">{len(ndim_dims)}I", *ndim_dims)


# --------------------------------------------------------------------------------- the cases
@dataclass
class Case:
    """One bad input or fault: how to cause it and what must follow."""

    id: str
    setup: Callable[[Work, Path], list[str]]  # returns argv; may prepare files
    status: int = 2
    first: str = ""  # a phrase the first line of the message (or of stdout for status 0) holds
    bounds: tuple[float, int] = QUICK
    check: Callable[[Work, Result], None] | None = None
    needs_finished: bool = False
    env: dict[str, str] = field(default_factory=dict)


def _recipe(text: str, name: str = "recipe.yaml"):
    def setup(work: Work, finished: Path) -> list[str]:
        path = work.root / name
        path.write_text(text)
        argv = _train_args(work, "--config", str(path))
        if "net:" in text:  # the recipe names the network: no --net flag over it
            at = argv.index("--net")
            del argv[at:at + 2]
        return argv
    return setup


def _no_file(name: str):
    def check(work: Work, result: Result) -> None:
        assert not (work.root / name).exists(), f"{name} was created: code ran"
    return check


def _args(*extra: str, data: bool = False):
    def setup(work: Work, finished: Path) -> list[str]:
        return _train_args(work, *extra, data=work.data_copy() if data else None)
    return setup


# A: nothing named in a recipe, a flag or a checkpoint runs before it is checked.
EVIL = "import pathlib\npathlib.Path('PWNED').touch()\ndef build(num_classes=10):\n    pass\n"


def _evil_checkpoint(tool: str):
    def setup(work: Work, finished: Path) -> list[str]:
        (work.root / "evilmod.py").write_text(EVIL)
        bad = resign(_bundle(finished), work.root / "evil.ckpt",
                     lambda meta: meta["config"].update(net="evilmod:build"))
        if tool == "predict":
            digit = work.root / "digit.png"
            from PIL import Image
            Image.new("L", (28, 28), 255).save(digit)
            return work.predict("--ckpt", str(bad), str(digit))
        return work.train("--eval-only", "--ckpt", str(bad), "--data-dir", str(work.digits))
    return setup


CODE = [
    Case("recipe-callback-os.system",
         _recipe("callbacks:\n  - class: os.system\n    args: {command: 'touch PWNED'}\n"),
         first="not a mindspore.train.Callback subclass", bounds=WITH_MINDSPORE,
         check=_no_file("PWNED")),
    Case("flag-callback-subprocess.run",
         _args("--callback", "subprocess:run(args=['touch', 'PWNED'])"),
         first="the function subprocess.run", bounds=WITH_MINDSPORE, check=_no_file("PWNED")),
    Case("flag-callback-subprocess.Popen",
         _args("--callback", "subprocess:Popen(args=['touch', 'PWNED'])"),
         first="the class subprocess.Popen", bounds=WITH_MINDSPORE, check=_no_file("PWNED")),
    Case("flag-net-os.system", _args("--net", "os:system"), first="so it was not called",
         bounds=WITH_MINDSPORE),
    Case("recipe-net-subprocess.Popen", _recipe("net: subprocess:Popen\n", "net.yaml"),
         first="so it was not called", bounds=WITH_MINDSPORE),
    Case("checkpoint-names-code-eval", _evil_checkpoint("eval"),
         first="never makes the tool import code", bounds=WITH_MINDSPORE,
         check=_no_file("PWNED"), needs_finished=True),
    Case("checkpoint-names-code-predict", _evil_checkpoint("predict"),
         first="never makes the tool import code", bounds=WITH_MINDSPORE,
         check=_no_file("PWNED"), needs_finished=True),
]


# B: a run is never overwritten or mixed.
def _rerun(work: Work, finished: Path) -> list[str]:
    run = _copy_run(work, finished)
    work.made["before"] = {str(p): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    return _train_args(work, "--run-name", "done")


def _unchanged(work: Work, result: Result) -> None:
    run = work.root / "runs" / "done"
    assert {str(p): p.read_bytes() for p in run.rglob("*") if p.is_file()} == work.made["before"]


def _held(work: Work, finished: Path) -> list[str]:
    """A live process holds the run directory (its lock)."""
    run = work.root / "runs" / "busy"
    run.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"h = open({str(run / '.lock')!r}, 'a+'); fcntl.flock(h, fcntl.LOCK_EX)\n"
        "print('held', flush=True); time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    work.made["holder"] = holder
    return _train_args(work, "--run-name", "busy")


def _freed_by_sigkill(work: Work, result: Result) -> None:
    holder = work.made["holder"]
    holder.kill()
    holder.wait()
    run = work.root / "runs" / "busy"
    with open(run / ".lock", "a+") as handle:  # the kernel dropped the lock with the process
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


RUNS = [
    Case("rerun-finished-run-name", _rerun, first="already holds a run",
         bounds=WITH_MINDSPORE, check=_unchanged, needs_finished=True),
    Case("second-live-process", _held, first="in use by another training process",
         bounds=WITH_MINDSPORE, check=_freed_by_sigkill),
]


# C: every size is bounded before it is read.
def _alias_bomb() -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    return "\n".join(lines) + "\nepochs: 1\n"


def _dev_zero(work: Work, finished: Path) -> list[str]:
    return _train_args(work, "--config", "/dev/zero")


def _huge_recipe(work: Work, finished: Path) -> list[str]:
    path = work.root / "big.yaml"
    path.write_text("# " + "x" * (22 << 20) + "\nepochs: 1\n")
    return _train_args(work, "--config", str(path))


def _gz_past_header(work: Work, finished: Path) -> list[str]:
    data = work.data_copy()
    path = data / "train" / TRAIN_IMAGES
    count = len(read_idx(path))
    path.unlink()
    with gzip.open(path.with_name(TRAIN_IMAGES + ".gz"), "wb") as out:
        out.write(_idx_header((count, 28, 28)))
        zeros = b"\0" * (1 << 20)
        for _ in range(256):  # 256 MB past the 1.25 MB the header declares
            out.write(zeros)
    return _train_args(work, data=data)


def _overflowing_header(work: Work, finished: Path) -> list[str]:
    data = work.data_copy()
    (data / "train" / TRAIN_IMAGES).write_bytes(_idx_header((2**32 - 1,) * 3) + b"\0" * 64)
    return _train_args(work, data=data)


def _million_tiny_images(tool: str):
    def setup(work: Work, finished: Path) -> list[str]:
        data = work.data_copy()
        path = data / "train" / TRAIN_IMAGES
        path.unlink()
        gz = path.with_name(TRAIN_IMAGES + ".gz")
        with gzip.open(gz, "wb") as out:
            out.write(_idx_header((5_000_000, 1, 1)) + b"\x80" * 5_000_000)
        if tool == "predict":
            return work.predict("--ckpt", str(_bundle(finished)), str(gz))
        return _train_args(work, data=data)
    return setup


def _huge_png(work: Work, finished: Path) -> list[str]:
    return work.predict("--ckpt", str(_bundle(finished)), str(_png(work.root / "x.png", 60000,
                                                                    60000)))


SIZES = [
    Case("yaml-alias-bomb", _recipe(_alias_bomb()), first="more than 10,000 values"),
    Case("config-dev-zero", _dev_zero, first="not a regular file"),
    Case("recipe-22MB", _huge_recipe, first="more than the limit of 1,048,576"),
    Case("gz-idx-past-its-header", _gz_past_header, first="followed by trailing bytes"),
    Case("idx-header-overflows", _overflowing_header, first="more than the limit of 300,000"),
    Case("train-5M-1x1-images-gz", _million_tiny_images("train"),
         first="more than the limit of 300,000"),
    Case("predict-5M-1x1-images-gz", _million_tiny_images("predict"),
         first="more than the limit of 300,000", needs_finished=True),
    Case("predict-png-3.6-gigapixels", _huge_png, first="larger than the limit of 40,000,000",
         needs_finished=True),
    Case("epochs-100M", _args("--epochs", "100000000"), first="at most 100000"),
    Case("steps-past-the-schedule-limit", _args("--epochs", "100000", "--batch-size", "16"),
         first="more than the limit of 5,000,000", bounds=WITH_MINDSPORE),
]


# D: disk and permission faults are messages, not tracebacks, and not blamed on a callback.
def _output_is_a_file(work: Work, finished: Path) -> list[str]:
    (work.root / "runs").write_text("not a folder")
    return _train_args(work, "--run-name", "r")


def _read_only(target: str, fault: str):
    """``target`` (relative to the case folder) made read-only, or the injected ``fault``."""
    def setup(work: Work, finished: Path) -> list[str]:
        folder = work.root / target
        folder.mkdir(parents=True, exist_ok=True)
        argv = _train_args(work, "--run-name", "r")
        if NAMESPACES:
            return in_namespace(f'mount --bind "{folder}" "{folder}" && '
                                f'mount -o remount,bind,ro "{folder}"', argv)
        return [argv[0], str(TESTS / "inject.py"), fault, *argv[1:]]
    return setup


def _stale_staging(work: Work, finished: Path) -> list[str]:
    """What a SIGKILL during the cache build leaves: a staging folder with an unheld lock."""
    decoded = work.root / ".cache" / "mstrain" / "decoded"
    staging = decoded / ".train-28-0123456789abcdef.a1b2c3.tmp"
    staging.mkdir(parents=True)
    (staging / ".building").touch()
    (staging / "images.npy").write_bytes(b"\0" * (1 << 20))
    work.made["staging"] = staging
    return _train_args(work, "--run-name", "r")


def _staging_removed(work: Work, result: Result) -> None:
    assert not work.made["staging"].exists()


def _full_disk(size_kb: int, fault: str):
    def setup(work: Work, finished: Path) -> list[str]:
        runs = work.root / "runs"
        runs.mkdir()
        argv = _train_args(work, "--run-name", "r", "--save-every-steps", "4")
        if NAMESPACES:
            return in_namespace(f'mount -t tmpfs -o size={size_kb}k tmpfs "{runs}"', argv)
        return [argv[0], str(TESTS / "inject.py"), fault, *argv[1:]]
    return setup


def _no_callback_blamed(work: Work, result: Result) -> None:
    assert "fix the callback" not in result.message
    assert not [p for p in (work.root / "runs").rglob("*") if ".tmp" in p.name and p.is_file()]


DISK = [
    Case("output-dir-is-a-file", _output_is_a_file, first="is a file, not a folder",
         bounds=WITH_MINDSPORE),
    Case("output-dir-read-only", _read_only("runs", "erofs-mkdir"),
         first="Read-only file system", bounds=WITH_MINDSPORE),
    Case("checkpoints-read-only", _read_only("runs/r/checkpoints", "erofs-checkpoints"),
         first="Read-only file system", bounds=TRAINING, check=_no_callback_blamed),
    Case("disk-full-at-start", _full_disk(4, "enospc-config"), first="No space left on device",
         bounds=WITH_MINDSPORE, check=_no_callback_blamed),
    Case("disk-full-mid-run", _full_disk(900, "enospc-checkpoint-2"),
         first="No space left on device", bounds=TRAINING, check=_no_callback_blamed),
]


# E: every field read back from a file is validated.
def _damaged(edit: Callable[[dict], None], name: str = "bad.ckpt"):
    def setup(work: Work, finished: Path) -> list[str]:
        bad = resign(_bundle(finished), work.root / name, edit)
        return work.train("--eval-only", "--ckpt", str(bad), "--data-dir", str(work.digits))
    return setup


def _pointer(content: str | None):
    def setup(work: Work, finished: Path) -> list[str]:
        run = _copy_run(work, finished)
        pointer = run / "checkpoints" / "latest.json"
        pointer.unlink()
        if content is None:  # a folder: --resume auto passes over it to the periodic bundles
            pointer.mkdir()
            return _train_args(work, "--run-name", "done", "--resume", "auto", "--epochs", "2")
        pointer.write_text(content)
        return work.train("--eval-only", "--ckpt", str(pointer), "--data-dir", str(work.digits))
    return setup


def _newest_damaged(work: Work, finished: Path) -> list[str]:
    run = _copy_run(work, finished)
    newest = _bundle(run)
    resign(newest, newest.with_name("edited.ckpt"), _set("epoch", "1"))
    os.replace(newest.with_name("edited.ckpt"), newest)
    return _train_args(work, "--run-name", "done", "--resume", "auto")


def _resumed_mid_epoch(work: Work, result: Result) -> None:
    assert "Skipping a damaged checkpoint" in result.stdout and "field 'epoch'" in result.stdout
    assert "step-0001-gs00000008.ckpt (epoch 0 + 8 steps" in result.stdout, result.stdout


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(meta: dict) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


FIELDS = [
    Case("meta-epoch-a-string", _damaged(_set("epoch", "1")), first="field 'epoch' is '1'",
         bounds=WITH_MINDSPORE, needs_finished=True),
    Case("meta-epoch-negative", _damaged(_set("epoch", -1)), first="field 'epoch' is -1",
         bounds=WITH_MINDSPORE, needs_finished=True),
    Case("meta-global-step-fractional", _damaged(_set("global_step", 16.5)),
         first="field 'global_step' is 16.5", bounds=WITH_MINDSPORE, needs_finished=True),
    Case("meta-global-step-huge", _damaged(_set("global_step", 10**18)),
         first="field 'global_step' is 1000000000000000000", bounds=WITH_MINDSPORE,
         needs_finished=True),
    Case("meta-callbacks-a-list", _damaged(_set("callbacks", [1, 2])),
         first="field 'callbacks' is [1, 2]", bounds=WITH_MINDSPORE, needs_finished=True),
    Case("meta-config-net-a-number", _damaged(_set("config.net", 5)),
         first="field 'config.net' is 5", bounds=WITH_MINDSPORE, needs_finished=True),
    Case("pointer-file-a-number", _pointer('{"file": 5}'), first="latest.json is damaged",
         bounds=WITH_MINDSPORE, needs_finished=True),
    Case("pointer-is-a-folder", _pointer(None), status=0, first="Resumed from",
         bounds=TRAINING, needs_finished=True),
    Case("newest-bundle-damaged-resume-falls-back", _newest_damaged, status=0,
         first="Resumed from", bounds=TRAINING, check=_resumed_mid_epoch, needs_finished=True),
]


# F: signals at any moment.
def _signal_during_cache_build(work: Work, finished: Path) -> list[str]:
    return _train_args(work, "--run-name", "r", data=work.data_copy())


def _term_when_decoding(line: str, proc: subprocess.Popen) -> None:
    # Once: a run decodes several splits (validation, test, training), and a second SIGTERM
    # means "stop at once", another case.
    if line.startswith("Decoding ") and not getattr(proc, "termed", False):
        proc.termed = True
        os.kill(proc.pid, signal.SIGTERM)


def _nothing_left(work: Work, result: Result) -> None:
    cache = work.root / ".cache"
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name], "staging left behind"
    runs = work.root / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "an empty run directory was left"


def _self_signal(hook: str, signals: str, *extra: str, **where: int):
    def setup(work: Work, finished: Path) -> list[str]:
        spec = ", ".join([f"hook={hook!r}", f"signals={signals.split(',')!r}",
                          *(f"{k}={v}" for k, v in where.items())])
        return _train_args(work, "--run-name", "r", "--callback",
                           f"userpkg.signals:SelfSignal({spec})", *extra)
    return setup


def _complete(work: Work, result: Result) -> None:
    history = json.loads((work.root / "runs" / "r" / "history.json").read_text())["rows"]
    assert [row["epoch"] for row in history] == [1]
    # Said as it is when the signal arrives: no step is left to stop, nothing more to save.
    assert "SIGTERM received after the last training step" in result.stdout + result.stderr
    assert "saving a checkpoint" not in result.stdout + result.stderr


def _partial_epoch_said(work: Work, result: Result) -> None:
    # The stopped epoch's summary says it is partial; no line reads like a whole epoch's.
    assert "Epoch:[ 0/ 3] stopped after step " in result.stdout, result.stdout
    assert "\nEpoch time:" not in result.stdout, result.stdout


def _one_line_and_clean(work: Work, result: Result) -> None:
    assert [line for line in result.stderr.splitlines() if line.startswith(result.label)] \
        == result.stderr.strip().splitlines()[-1:], result.stderr
    assert not (work.root / "rank_0").exists(), "MindSpore's graph dump reached the folder"


SIGNALS = [
    Case("sigterm-during-cache-build", _signal_during_cache_build, status=130,
         first="interrupted by SIGTERM while the run was being prepared", bounds=WITH_MINDSPORE,
         check=_nothing_left),
    Case("sigterm-during-last-validation", _self_signal("on_eval_begin", "SIGTERM"), status=0,
         first="SIGTERM arrived after the last training step", bounds=TRAINING, check=_complete,
         env={"PYTHONPATH": str(TESTS)}),
    Case("ctrl-c-reported-as-ctrl-c", _self_signal("on_train_step_end", "SIGINT",
                                                   "--epochs", "3", "--log-every", "4"),
         status=130, first="interrupted by Ctrl-C (SIGINT)", bounds=TRAINING,
         check=_partial_epoch_said, env={"PYTHONPATH": str(TESTS)}),
    Case("stale-cache-staging-after-sigkill", _stale_staging, status=0, first="Training mlp",
         bounds=TRAINING, check=_staging_removed),
    Case("second-ctrl-c-while-compiling", _self_signal("on_train_begin", "SIGINT,SIGINT",
                                                       gap=0.2),
         status=130, first="stopped: at once by a second Ctrl-C", bounds=TRAINING,
         check=_one_line_and_clean, env={"PYTHONPATH": str(TESTS)}),
]


# G: no silent wrong answers.
WRONG = [
    Case("duplicate-yaml-key", _recipe("epochs: 1\nlr: 0.1\nepochs: 5\n"),
         first="sets 'epochs' twice"),
    Case("weight-decay-inf", _args("--weight-decay", "inf"), first="must be a finite number"),
    Case("seed-beyond-64-bits", _args("--seed", str(2**64 + 1)), first="at most 4294967295"),
    Case("epochs-1e12", _args("--epochs", "1e12"), first="invalid int value"),
    # Valid Python floats that float32, the step's precision, turns into 0 or infinity.
    Case("clip-grad-norm-1e-300", _args("--clip-grad-norm", "1e-300"),
         first="is 1e-300, which is 0 in float32"),
    Case("clip-grad-norm-1e300", _args("--clip-grad-norm", "1e300"),
         first="is 1e+300, which is infinity in float32"),
    # 1,600 generated digits less a tenth held out: 14 steps of 100 in the one epoch.
    Case("accumulate-beyond-the-run", _args("--accumulate-steps", "15"), bounds=WITH_MINDSPORE,
         first="'accumulate_steps' is 15, but the run has only 14 training step(s)",
         check=lambda work, result: _nothing_trained(work)),
]

def _nothing_trained(work: Work) -> None:
    assert not list(work.root.glob("runs/*/checkpoints/*.ckpt")), "a run was trained"


CASES = [*CODE, *RUNS, *SIZES, *DISK, *FIELDS, *SIGNALS, *WRONG]


def _case_id(case: Case) -> str:
    disk = case in DISK[1:]
    return f"{case.id}[{'tmpfs' if NAMESPACES else 'injected'}]" if disk else case.id


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_fault(case: Case, tmp_path, digits_dir, request):
    finished = request.getfixturevalue("finished") if case.needs_finished else None
    work = Work(tmp_path, digits_dir)
    try:
        _check_case(case, work, finished, tmp_path, request)
    finally:
        holder = work.made.get("holder")
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()


def _check_case(case: Case, work: Work, finished: Path | None, tmp_path: Path, request) -> None:
    argv = case.setup(work, finished)
    watch = _term_when_decoding if case.id == "sigterm-during-cache-build" else None
    seconds, megabytes = case.bounds
    result = run_measured(argv, tmp_path, case.env, timeout=seconds * 3, on_line=watch)
    shown = (f"status {result.status}\nstdout:\n{result.stdout[-3000:]}\n"
             f"stderr:\n{result.stderr[-3000:]}")
    assert result.status == case.status, shown
    assert "Traceback" not in result.stderr + result.stdout, shown
    if case.status == 0:
        assert case.first in result.stdout, shown
    else:
        first_line = result.stderr[result.stderr.find(result.label):].splitlines()[0]
        assert first_line.startswith(result.label), shown
        assert "error: " not in result.stderr or result.status != 130, shown
        assert case.first in result.message, shown
    assert result.seconds < seconds, f"took {result.seconds:.1f} s"
    assert result.peak_mb < megabytes, f"peak {result.peak_mb:.0f} MB"
    for path in tmp_path.rglob("*"):
        assert not (path.name.startswith(".") and ".tmp" in path.name and path.is_file()), \
            f"half-written {path}"
    if case.check is not None:
        case.check(work, result)
    request.node.user_properties.append(("peak_mb", round(result.peak_mb)))
    request.node.user_properties.append(("seconds", round(result.seconds, 1)))

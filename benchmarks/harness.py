"""Running a command the way a user would and reading its time, peak memory and probe lines."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    """One finished command."""

    wall: float  # seconds from launch to exit
    peak_rss_mb: float  # the command's peak resident set (its own, from wait4)
    returncode: int
    stdout: str
    stderr: str
    events: dict[str, list[list[str]]] = field(default_factory=dict)

    def first(self, event: str) -> float | None:
        """The first value of the first ``BENCH event`` line, if any."""
        rows = self.events.get(event)
        return float(rows[0][0]) if rows else None


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT,
        check: bool = True, terminal: bool = False) -> Result:
    """Runs ``cmd``, timing it and reading ``BENCH`` lines (see :mod:`benchmarks.probes`).

    With ``terminal``, the command's stderr is a pseudo-terminal, as in a user's shell, so
    whatever draws only on a terminal (the progress bar) draws and costs what it costs there.
    """
    full_env = {**os.environ, "GLOG_v": "3", "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env["MSTRAIN_BENCH_T0"] = repr(time.time())
    master = follower = None
    if terminal:
        import pty

        master, follower = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=follower if terminal else subprocess.PIPE, text=True)
    streams: dict[str, str] = {}

    def pump(name: str, stream) -> None:
        streams[name] = stream.read()

    def pump_terminal() -> None:
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        streams["err"] = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")

    if terminal:
        os.close(follower)
        err_pump = threading.Thread(target=pump_terminal)
    else:
        err_pump = threading.Thread(target=pump, args=("err", proc.stderr))
    pumps = [threading.Thread(target=pump, args=("out", proc.stdout)), err_pump]
    for thread in pumps:
        thread.start()
    # wait4 rather than Popen.wait: it also reports this child's own peak memory.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    for thread in pumps:
        thread.join()
    if master is not None:
        os.close(master)
    out, err = streams["out"], streams["err"]
    events: dict[str, list[list[str]]] = {}
    for line in err.splitlines():
        if line.startswith("BENCH "):
            name, *values = line.split()[1:]
            events.setdefault(name, []).append(values)
    result = Result(wall, usage.ru_maxrss / 1024, proc.returncode, out, err, events)
    if check and proc.returncode != 0:
        sys.stderr.write(err[-3000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return result


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")

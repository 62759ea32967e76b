"""Callbacks the benchmarks add to ``train.py`` to read times from the outside.

``Clock`` prints one line per event to stderr, ``BENCH <event> <seconds since launch> ...``, where
the launch time comes from the environment variable ``MSTRAIN_BENCH_T0`` (``time.time()`` taken
by the benchmark just before it started the command) or, without it, from the process's start
time in ``/proc``. It adds no per-step work after the first step.

    python train.py --callback benchmarks.probes:Clock ...
"""

from __future__ import annotations

import os
import sys
import time

from mindspore.train import Callback


def launch_time() -> float:
    """When the command started, as ``time.time()``."""
    if os.environ.get("MSTRAIN_BENCH_T0"):
        return float(os.environ["MSTRAIN_BENCH_T0"])
    with open("/proc/self/stat", encoding="ascii") as stat:
        start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat", encoding="ascii") as proc:
        boot = next(int(line.split()[1]) for line in proc if line.startswith("btime"))
    return boot + start_ticks / os.sysconf("SC_CLK_TCK")


class Clock(Callback):
    """Prints the time to the first training step and to the end of every epoch (with the
    validation accuracy of that epoch)."""

    launch_aware = True  # it reads no step counts, so several steps per launch stay on

    def __init__(self) -> None:
        super().__init__()
        self.t0 = launch_time()
        self.first = True

    def _emit(self, *fields) -> None:
        print("BENCH", *fields, file=sys.stderr, flush=True)

    def on_train_step_end(self, run_context) -> None:
        if self.first:
            self.first = False
            self._emit("first_step", f"{time.time() - self.t0:.3f}")

    def on_train_epoch_end(self, run_context) -> None:
        args = run_context.original_args()
        results = getattr(args, "eval_results", None) or {}
        accuracy = results.get("accuracy", float("nan"))
        self._emit("epoch", args.cur_epoch_num, f"{time.time() - self.t0:.3f}", f"{accuracy:.6f}")

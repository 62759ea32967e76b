"""Which process runs a trial, and whether it is still alive, for trials on this machine.

Optuna's heartbeat finds a dead trial anywhere, but only once its grace period has passed: it
cannot tell a dead process from a slow one before. On the machine that ran it, the tool can: each
trial records its process (host, boot, pid namespace, pid and the process's start time, so a
reused pid is not mistaken for it), and a trial whose process is gone is failed at once, through
the same callback that the heartbeat uses.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from functools import lru_cache
from typing import Any

logger = logging.getLogger("mstrain")


@lru_cache(maxsize=1)
def _machine() -> dict[str, str]:
    def read(path: str) -> str:
        try:
            with open(path) as handle:
                return handle.read().strip()
        except OSError:
            return ""

    try:
        pid_space = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_space = ""
    return {"host": socket.gethostname(), "boot": read("/proc/sys/kernel/random/boot_id"),
            "pidns": pid_space}


def start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (None when there is none)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces; the fields after it are fixed.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def identity() -> dict[str, Any]:
    """This process, as a trial records it (JSON-safe)."""
    pid = os.getpid()
    return {**_machine(), "pid": pid, "start": start_time(pid)}


def is_dead(worker: Any) -> bool:
    """Whether ``worker`` (an :func:`identity`) is a process of this machine that has ended.

    A process of another machine, or one that cannot be told apart, is never called dead: the
    heartbeat decides for those.
    """
    if not isinstance(worker, dict):
        return False
    machine = _machine()
    if not machine["boot"] or any(worker.get(k) != machine[k] for k in machine):
        return False
    pid = worker.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or worker.get("start") is None:
        return False
    return start_time(pid) != worker["start"]


def fail_dead_trials(study, on_failed: Callable[[Any, Any], None]) -> list[int]:
    """Fails the running trials of ``study`` whose process on this machine has ended, and calls
    ``on_failed(study, frozen_trial)`` for each (the study's retry callback).

    Returns:
        The numbers of the trials failed.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_dead(trial.user_attrs.get("worker")):
            continue
        try:
            frozen = study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, UpdateFinishedTrialError):
            continue  # another process (or the heartbeat) failed it first, and retries it
        failed.append(trial.number)
        logger.info("Trial %d's process on this machine has ended: failed, and queued again.",
                    trial.number)
        on_failed(study, frozen)
    return failed

"""Runs a command and writes the peak resident memory (KB) of the largest process of its whole
tree: ``tree_peak.py OUT LIMIT_MB CMD...``.

``tests/measure.py`` reads the command's own peak; a command that starts processes of its own
(the MLflow process of ``--report-to mlflow``) is measured whole here. This process adopts the
command's orphans (``PR_SET_CHILD_SUBREAPER``), reaps every descendant, and writes the largest
peak the kernel kept for them (``RUSAGE_CHILDREN``). While the command runs, a process of the
tree whose peak passes LIMIT_MB is killed with the whole tree, so that a regression cannot
exhaust the machine; the peak written is then at least the limit. The exit status is the
command's; SIGINT and SIGTERM are passed on.
"""

import ctypes
import os
import resource
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
POLL_SECONDS = 0.1
ORPHAN_SECONDS = 30  # how long the command's leftover processes may take to end


def descendants(root: int) -> list[int]:
    """Every process below ``root``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def peak_kb(pid: int) -> int:
    """A process's peak resident memory so far (VmHWM), 0 once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def kill_tree() -> None:
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def main() -> int:
    out, limit_mb, *command = sys.argv[1:]
    limit_kb = int(float(limit_mb) * 1024)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    child = subprocess.Popen(command)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: child.send_signal(signum))
    status = None
    sampled = 0
    deadline = None
    while True:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # every descendant has been reaped
        except InterruptedError:
            continue
        if pid == child.pid:
            status = wait_status
            deadline = time.monotonic() + ORPHAN_SECONDS
        if pid:
            continue
        for process in descendants(os.getpid()):
            sampled = max(sampled, peak_kb(process))
        if sampled > limit_kb or (deadline is not None and time.monotonic() > deadline):
            kill_tree()
        time.sleep(POLL_SECONDS)
    child.returncode = 0  # reaped above; keeps Popen from waiting for it again
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, sampled)
    with open(out, "w") as handle:
        handle.write(f"{peak}\n")
    code = os.waitstatus_to_exitcode(status) if status is not None else 1
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())

"""Runs a command and writes its peak resident memory (KB) to a file: measure.py OUT CMD...

A process started straight from pytest inherits the test process's peak memory (Linux keeps a
process's high-water mark across ``exec``), so the fault tests start commands through this small
wrapper and read the command's own peak. Signals sent to the wrapper are passed on; its exit status
is the command's.
"""

import os
import signal
import subprocess
import sys


def main() -> int:
    out, *command = sys.argv[1:]
    child = subprocess.Popen(command)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: child.send_signal(signum))
    while True:
        try:
            _, status, usage = os.wait4(child.pid, 0)
            break
        except InterruptedError:
            continue
    with open(out, "w") as handle:
        handle.write(f"{usage.ru_maxrss}\n")
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())

"""Ending a command-line process without MindSpore's teardown."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import NoReturn


def exit_process(status: int | None) -> NoReturn:
    """Ends the process with ``status`` once the command is done.

    Once MindSpore is loaded, the interpreter's teardown (MindSpore's runtime, thread pools and
    memory pools being destroyed) takes 0.6-0.8 s on a 2-core machine after every command, long
    after its last file is written: checkpoints, histories and results are written atomically and
    closed, trackers are finished, run locks are released by the kernel. So the process flushes
    its logging and its streams, runs the ``atexit`` handlers (temporary folders, MindSpore's
    own) and ends with ``os._exit``. Without MindSpore, or while a thread that is not a daemon
    still runs (the interpreter would wait for it), it exits the normal way.
    """
    status = 0 if status is None else status
    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if "mindspore" not in sys.modules or others:
        sys.exit(status)
    logging.shutdown()
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_handlers is None:  # another Python: keep its normal exit
        sys.exit(status)
    run_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)

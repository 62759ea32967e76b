"""Ending a command-line process without MindSpore's teardown."""

from __future__ import annotations

import _io
import atexit
import gc
import io
import logging
import os
import sys
import threading
from typing import NoReturn


def exit_process(status: int | None) -> NoReturn:
    """Ends the process with ``status`` once the command is done.

    Once MindSpore is loaded, the interpreter's teardown (MindSpore's runtime, thread pools and
    memory pools being destroyed) takes most of a second after every command, long after its last
    file is written. So the process does what a normal exit does for everything a user can see:
    it flushes logging, runs the ``atexit`` handlers and closes every file object still open
    (as the interpreter's finalisation would, so a file a user's callback left open keeps every
    byte), flushes its streams, and ends with ``os._exit``.
    Without MindSpore, or while a thread that is not a daemon still runs (the interpreter would
    wait for it), it exits the normal way.
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
    close_open_files()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)


def _layer(handle: io.IOBase) -> int:
    """Wrappers before what they wrap: text, then Python-level buffered files (gzip, bz2), then
    the C buffered files, then raw file descriptors."""
    if isinstance(handle, io.TextIOBase):
        return 0
    if isinstance(handle, (io.BufferedWriter, io.BufferedRandom, io.BufferedReader,
                           io.BufferedRWPair, io.BytesIO)):
        return 2
    if isinstance(handle, io.BufferedIOBase):
        return 1
    return 3


def close_open_files() -> None:
    """Closes every open file object but the standard streams, outermost first, as the
    interpreter's finalisation does through each object's ``__del__``; a failure to flush one
    (a full disk, a closed pipe) is the same silent loss a normal exit would have."""
    standard = {id(s) for s in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__,
                                sys.__stdout__, sys.__stderr__) if s is not None}
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            standard.add(id(buffer))
            standard.add(id(getattr(buffer, "raw", None)))
    # Unreachable objects not yet collected are listed too, so a file left in a cycle of garbage
    # is closed without a collection. Each type is asked once, against the C base every file
    # class has (io.IOBase is an ABC, whose check is slow), and by type(), since a dead weak
    # proxy raises on __class__.
    objects = gc.get_objects()
    files = {kind for kind in set(map(type, objects)) if issubclass(kind, _io._IOBase)}
    handles = [obj for obj in objects if type(obj) in files and id(obj) not in standard]
    del objects
    for handle in sorted(handles, key=_layer):
        try:
            if not handle.closed:
                handle.close()
        except Exception:  # as at interpreter exit, a failing close is ignored
            pass

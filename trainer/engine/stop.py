"""Signals, turned into the stop request the trainer owns.

A first SIGINT or SIGTERM asks the run to stop: while training, after the current step, with a
checkpoint; while the data are being prepared, at once (nothing is half-written: every file is
written under a temporary name and renamed when complete). A second one ends the process at once
with status 130, without a Python traceback and without MindSpore's compiler trace.

Two ways to receive signals:

* The command line blocks SIGINT and SIGTERM in every thread before MindSpore starts any
  (:func:`block_signals`), and one watcher thread takes them with ``sigwaitinfo``. MindSpore 2.7
  installs its own C-level SIGINT handler before every graph launch, which turns a Ctrl-C into a
  SIGTERM to itself; a blocked SIGINT never reaches that handler, so a Ctrl-C is reported as what
  it is, and a signal that arrives while a graph compiles never raises into the compiler.
* Inside a Python program that imported MindSpore already (``Trainer.fit`` from a notebook or a
  script), Python signal handlers set the same request. After a graph has run, MindSpore then
  delivers a Ctrl-C as SIGTERM.

Processes started while signals are blocked inherit the mask; the tool starts none during a run.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from trainer.errors import EXIT_INTERRUPTED

logger = logging.getLogger("mstrain")

SIGNALS = (signal.SIGINT, signal.SIGTERM)

class StopRequest:
    """Asks a run to stop after the current step: the trainer's public stop flag.

    The trainer's signal handling sets it; a callback may too (``trainer.stop.request("why")``,
    like Keras's ``model.stop_training = True``). :attr:`reason` says who asked.

    Example:
        >>> stop = StopRequest()
        >>> stop.request("SIGTERM")
        >>> bool(stop), stop.reason
        (True, 'SIGTERM')
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        #: Set once the run's last training step is done: a stop asked for after it has no step
        #: left to stop, and the run ends as it would have.
        self.steps_done = False

    def request(self, reason: str) -> None:
        """Asks for a stop; the first reason given is kept."""
        if self.reason is None:
            self.reason = reason

    def clear(self) -> None:
        """Forgets a request (a new run)."""
        self.reason = None
        self.steps_done = False

    def __bool__(self) -> bool:
        return self.reason is not None


_lock = threading.Lock()
_watcher: threading.Thread | None = None
_state: dict[str, object] = {"stop": None, "preparing": False, "count": 0, "watching": False}


def block_signals() -> None:
    """Blocks SIGINT and SIGTERM in this thread and in every thread started after it.

    Call it first thing in a command-line process, before MindSpore is imported; the watcher
    thread of :func:`handling` then receives them. Once MindSpore runs threads of its own, a
    process-wide block is no longer possible, and Python handlers are used instead.
    """
    if threading.current_thread() is threading.main_thread() and "mindspore" not in sys.modules:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        _state["watching"] = True


def _blocked() -> bool:
    return bool(_state.get("watching")) and all(
        s in signal.pthread_sigmask(signal.SIG_BLOCK, []) for s in SIGNALS)


@contextmanager
def handling(stop: StopRequest) -> Iterator[None]:
    """Routes SIGINT/SIGTERM to ``stop`` while inside (see the module docstring).

    Starts in the *preparing* phase, in which a first signal also interrupts the main thread
    (``KeyboardInterrupt``); :func:`training_started` ends it.
    """
    with _lock:
        _state.update(stop=stop, preparing=True, count=0)
    previous = {}
    if _blocked():
        _start_watcher()
    elif threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, _python_handler) for s in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with _lock:
            _state.update(stop=None, preparing=False)


def training_started() -> None:
    """From now on a first signal only requests a stop at the next step end."""
    with _lock:
        _state["preparing"] = False


def _start_watcher() -> None:
    global _watcher
    with _lock:
        if _watcher is None:
            _watcher = threading.Thread(target=_watch, name="mstrain-signals", daemon=True)
            _watcher.start()


def _watch() -> None:
    while True:
        info = signal.sigwaitinfo(SIGNALS)
        _received(signal.Signals(info.si_signo).name, from_watcher=True)


def _python_handler(signum, frame) -> None:
    _received(signal.Signals(signum).name, from_watcher=False)


def _received(name: str, *, from_watcher: bool) -> None:
    with _lock:
        _state["count"] = int(_state["count"]) + 1
        count, stop, preparing = _state["count"], _state["stop"], _state["preparing"]
    what = "Ctrl-C (SIGINT)" if name == "SIGINT" else name
    if count > 1:
        _exit_now(what)
    if stop is None:  # no run is going on: behave like an interrupted command
        _interrupt(from_watcher)
        return
    stop.request(what)
    if preparing:
        logger.warning("%s received while preparing the run: stopping (press it again to stop at "
                       "once).", what)
        _interrupt(from_watcher)
    elif getattr(stop, "steps_done", False):
        logger.warning("%s received after the last training step: the run's checkpoints are "
                       "complete; finishing its last validation and test (press it again to stop "
                       "at once).", what)
    else:
        logger.warning("%s received: finishing the current step and saving a checkpoint (press it "
                       "again to stop at once).", what)


def _interrupt(from_watcher: bool) -> None:
    if from_watcher:
        import _thread

        _thread.interrupt_main()
    else:
        raise KeyboardInterrupt


def _exit_now(what: str) -> None:
    """Ends the process at once: a second signal must not wait for anything."""
    try:
        sys.stdout.flush()
        sys.stderr.write(f"stopped: at once by a second {what}; the newest complete "
                         "checkpoint of the run is kept (resume with --resume auto).\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_INTERRUPTED)

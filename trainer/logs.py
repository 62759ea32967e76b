"""Logging set-up: loss lines on stdout that never collide with a progress bar."""

from __future__ import annotations

import logging
import sys


class TqdmHandler(logging.StreamHandler):
    """Writes records through ``tqdm.write`` so an active bar is redrawn below the line.

    Args:
        to_stderr: Write to standard error instead of standard output. The stream is looked up
            at every record, so a redirected ``sys.stdout`` (a notebook, pytest) is honoured.
            Defaults to `False`.
    """

    def __init__(self, to_stderr: bool = False) -> None:
        super().__init__()
        self.to_stderr = to_stderr

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr if self.to_stderr else sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property decides
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # logging must never raise into training
            self.handleError(record)


def setup_logging(level: int = logging.INFO, prefix: str = "",
                  to_stderr: bool = False) -> logging.Logger:
    """Sends the ``mstrain`` logger's messages to stdout (or stderr), once (idempotent).

    Args:
        level: The lowest level shown. Defaults to `logging.INFO`.
        prefix: Put before every line, e.g. ``"[worker 1] "`` in a data-parallel run, whose
            workers other than rank 0 call this again with ``logging.WARNING`` so that they stay
            quiet except for warnings and errors. Defaults to `""`.
        to_stderr: Log to standard error, for commands whose standard output is data (such as
            ``predict.py --json``). Defaults to `False`.
    """
    logger = logging.getLogger("mstrain")
    handlers = [h for h in logger.handlers if isinstance(h, TqdmHandler)]
    if not handlers:
        handlers = [TqdmHandler()]
        logger.addHandler(handlers[0])
    for handler in handlers:
        handler.to_stderr = to_stderr
        handler.setFormatter(logging.Formatter(prefix.replace("%", "%%") + "%(message)s"))
    logger.setLevel(level)
    logger.propagate = False
    return logger

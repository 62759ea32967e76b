"""Logging set-up: loss lines on stdout that never collide with a progress bar."""

from __future__ import annotations

import logging
import sys


class TqdmHandler(logging.StreamHandler):
    """Writes records through ``tqdm.write`` so an active bar is redrawn below the line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # logging must never raise into training
            self.handleError(record)


def setup_logging(level: int = logging.INFO, prefix: str = "") -> logging.Logger:
    """Sends the ``mstrain`` logger's messages to stdout, once (idempotent).

    Args:
        level: The lowest level shown. Defaults to `logging.INFO`.
        prefix: Put before every line, e.g. ``"[worker 1] "`` in a data-parallel run, whose
            workers other than rank 0 call this again with ``logging.WARNING`` so that they stay
            quiet except for warnings and errors. Defaults to `""`.
    """
    logger = logging.getLogger("mstrain")
    handlers = [h for h in logger.handlers if isinstance(h, TqdmHandler)]
    if not handlers:
        handlers = [TqdmHandler(sys.stdout)]
        logger.addHandler(handlers[0])
    for handler in handlers:
        handler.setFormatter(logging.Formatter(prefix.replace("%", "%%") + "%(message)s"))
    logger.setLevel(level)
    logger.propagate = False
    return logger

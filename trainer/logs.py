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


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    """Sends the ``mstrain`` logger's messages to stdout, once (idempotent)."""
    logger = logging.getLogger("mstrain")
    if not any(isinstance(h, TqdmHandler) for h in logger.handlers):
        handler = TqdmHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger

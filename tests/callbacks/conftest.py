"""Fixtures of the callback tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def clean_logger():
    """Trainer configures the ``mstrain`` logger; put it back for the other tests."""
    logger = logging.getLogger("mstrain")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]

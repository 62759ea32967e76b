"""Errors a user can cause, reported as one readable paragraph and exit status 2."""

from __future__ import annotations

import textwrap

EXIT_USAGE = 2


class UserError(Exception):
    """A mistake the user can fix: bad flag, missing data, wrong checkpoint.

    The message is a complete paragraph: what is wrong, naming the thing (file, key, value), and
    how to fix it. The command line prints it without a traceback and exits with ``exit_code``.

    Args:
        message: The paragraph shown to the user.
        exit_code: Process exit status. Defaults to `2`.
    """

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def paragraph(self, width: int = 100) -> str:
        """The message wrapped to ``width`` columns, prefixed with ``error:``."""
        text = " ".join(str(self).split())
        return textwrap.fill("error: " + text, width=width, break_long_words=False,
                             break_on_hyphens=False)


class ConfigError(UserError):
    """A configuration key or value that is not allowed."""


class DataError(UserError):
    """Training data that is missing, corrupt or cannot be fetched."""


class CheckpointError(UserError):
    """A checkpoint that is missing, damaged or does not match the run."""

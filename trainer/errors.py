"""Errors a user can cause, reported as one readable paragraph and exit status 2."""

from __future__ import annotations

import re
import reprlib
import textwrap

EXIT_USAGE = 2
# The status of a run stopped because the user asked (Ctrl-C, SIGTERM): not a mistake, so its
# paragraph is labelled ``stopped:`` rather than ``error:``.
EXIT_INTERRUPTED = 130

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 6
_SHOWN.maxlevel = 3


def shown(value: object) -> str:
    """``repr(value)`` cut to a readable length, for messages about values from a file or flag:
    a message never formats a huge or deeply nested value whole."""
    return _SHOWN.repr(value)


HIDDEN = "***"
# The user-information part of a URI (``scheme://user:password@``), up to the last "@" before
# the host's end, as HTTP clients split it; and a query parameter whose name says it holds a
# secret (its value is hidden up to the next "&", "#" or blank: too much rather than too little).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#\s]*)@")
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[^=&#\s]*?)(?:pass|pwd|secret|token|key|sig|credential|auth)"
    r"[^=&#\s]*=)[^&#\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the credentials of every URI in it hidden: the password of
    ``scheme://user:password@host`` (a user name alone is hidden whole, since it may be a token)
    and the values of query parameters such as ``password=``, ``token=`` or ``api_key=``.

    Every message, tag and file that shows a URI the user gave (a tracking server's) shows it
    through this.

    Example:
        >>> redact("http://me:s3cret@host:5000/?token=abc&x=1")
        'http://me:***@host:5000/?token=***&x=1'
    """
    def userinfo(match: re.Match) -> str:
        user, colon, _ = match["info"].partition(":")
        shown = f"{user}:{HIDDEN}" if colon and user else HIDDEN
        return f"{match['scheme']}{shown}@"

    return _SECRET_PARAM.sub(lambda m: m["name"] + HIDDEN, _USERINFO.sub(userinfo, text))


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

    @property
    def label(self) -> str:
        """``stopped`` for a stop the user asked for, ``error`` for everything else."""
        return "stopped" if self.exit_code == EXIT_INTERRUPTED else "error"

    def paragraph(self, width: int = 100) -> str:
        """The message wrapped to ``width`` columns, prefixed with ``error:`` (or ``stopped:``
        for an interruption the user asked for)."""
        text = " ".join(str(self).split())
        return textwrap.fill(f"{self.label}: {text}", width=width, break_long_words=False,
                             break_on_hyphens=False)


class ConfigError(UserError):
    """A configuration key or value that is not allowed."""


class DataError(UserError):
    """Training data that is missing, corrupt or cannot be fetched."""


class CheckpointError(UserError):
    """A checkpoint that is missing, damaged or does not match the run."""


class OutputError(UserError):
    """A file or folder the tool must write cannot be written (permissions, a full disk)."""


def os_fault(exc: OSError) -> str:
    """An ``OSError`` in words (``No space left on device``), without Python's decoration."""
    return exc.strerror or str(exc) or type(exc).__name__

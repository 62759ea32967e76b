"""Atomic file writes: a crash leaves the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def default_mode(directory: bool = False) -> int:
    """The mode a new file (or folder) gets under this process's umask."""
    return (0o777 if directory else 0o666) & ~_UMASK


def fsync_dir(folder: str | os.PathLike) -> None:
    """Makes a rename inside ``folder`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it is synced and renamed into place.

    The temporary name starts with a dot and ends in ``.tmp`` plus ``suffix`` (some writers, such as
    MindSpore's ``save_checkpoint``, insist on their own extension), so it is never mistaken for a
    finished file. On an exception the temporary file is removed and ``path`` is untouched.

    Args:
        path: The final name.
        suffix: Extension the temporary file must end with. Defaults to `""`.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix,
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; give them the usual mode
    try:
        yield tmp
        with open(tmp, "rb") as handle:  # the writer may have made it read-only
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_bounded(path: str | os.PathLike, limit: int) -> bytes:
    """Reads a regular file of at most ``limit`` bytes.

    The size is checked before anything is read, and at most ``limit + 1`` bytes are ever read,
    so a device (``/dev/zero``), a FIFO or a file that grows while it is read cannot exhaust
    memory.

    Raises:
        FileNotFoundError: the path does not exist.
        IsADirectoryError: the path is a folder.
        ValueError: the path is not a regular file, or it holds more than ``limit`` bytes; the
            message says which.
        OSError: the file cannot be opened or read.
    """
    import stat

    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(21, "Is a directory", str(path))
    if not stat.S_ISREG(info.st_mode):
        kind = not_regular(path) or "a special file"
        raise ValueError(f"it is {kind}, not a regular file, so it was not opened "
                         "(reading a pipe or a device can wait forever or never end)")
    if info.st_size > limit:
        raise ValueError(f"it holds {info.st_size:,} bytes, more than the limit of {limit:,}")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"it holds more than the limit of {limit:,} bytes")
    return data


def not_regular(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists but is not a regular file (links followed), in words:
    ``"a FIFO (named pipe)"``, ``"a character device"``, ...; None for a regular file or a path
    that does not exist.

    Opening a FIFO for reading waits for a writer, and a device such as ``/dev/zero`` never ends,
    so every path a user names is checked with this before it is opened.
    """
    import stat

    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None  # unreadable: opening it gives the real reason
    if stat.S_ISREG(mode):
        return None
    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def special_file(path: str | os.PathLike, what: str, shown: str | None = None) -> str | None:
    """The first sentence of the message refusing ``path`` when it exists and is neither a
    regular file nor a folder (``"Input x is a FIFO (named pipe), not a regular file, ..."``,
    the path written as ``shown`` when given); None otherwise. Callers check it before opening a
    path a user named, and add the fix."""
    kind = not_regular(path)
    if kind is None or kind == "a folder":
        return None
    return (f"{what} {path if shown is None else shown} is {kind}, not a regular file, so it is "
            "not read (reading a pipe or a device can wait forever or never end).")


def slug(text: str) -> str:
    """``text`` as a file or folder name: letters, digits, ``-`` and ``_`` only."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-") or "run"


def hold_lock(path: str | os.PathLike):
    """Creates ``path`` and holds an exclusive ``flock`` on it until the returned file is closed
    (or the process ends, however it ends)."""
    import fcntl

    handle = open(path, "a+")  # closed by the caller
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def share_lock(path: str | os.PathLike):
    """Opens ``path`` (a lock file, created when missing) and holds a shared ``flock`` on it until
    the returned file is closed; None when it cannot be opened or is not a plain file.

    Shared holders (runs reading a cache entry) keep out an exclusive taker (``mstrain cache
    clear``) without excluding each other. Links are not followed and a FIFO never blocks the
    open, since the lock file sits in a folder others may write to.
    """
    import fcntl
    import stat

    flags = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    for mode in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):  # a read-only cache: a read handle
        try:
            fd = os.open(path, mode | flags, 0o666)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return None
            handle = os.fdopen(fd, "rb", buffering=0)
        except OSError:
            os.close(fd)
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_SH)
        except OSError:
            handle.close()
            return None
        return handle
    return None


# A staging folder or temporary file without a lock is taken as abandoned once it is this old;
# every write the tool stages finishes within seconds.
STALE_SECONDS = 600


def remove_stale_staging(folder: str | os.PathLike, lock_name: str = ".building") -> list[Path]:
    """Deletes the staging leftovers (``.NAME.XXXX.tmp`` files and folders) of processes that
    were killed in ``folder``.

    A staging folder whose ``lock_name`` file is locked belongs to a live process and is kept; one
    whose lock can be taken, or without a lock and older than :data:`STALE_SECONDS`, is removed.

    Returns:
        What was removed.
    """
    import fcntl
    import shutil
    import time

    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]
    except OSError:
        return removed
    for entry in entries:
        try:
            lock = entry / lock_name
            if entry.is_dir() and lock.exists():
                with open(lock, "a+") as handle:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # a build in progress
            elif time.time() - entry.lstat().st_mtime < STALE_SECONDS:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        except OSError:
            continue
    return removed


def cache_root() -> Path:
    """The tool's cache folder: ``$MSTRAIN_CACHE/mstrain``, else ``$XDG_CACHE_HOME/mstrain``, else
    ``~/.cache/mstrain`` (decoded digits, held-out splits, raw copies of gzipped IDX files; see
    :mod:`trainer.data.entries`).

    Its contents can be deleted at any time; they are rebuilt when needed.
    """
    base = os.environ.get("MSTRAIN_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "mstrain"

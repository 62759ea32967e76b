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
        raise ValueError("it is not a regular file (a device, a pipe or a socket)")
    if info.st_size > limit:
        raise ValueError(f"it holds {info.st_size:,} bytes, more than the limit of {limit:,}")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"it holds more than the limit of {limit:,} bytes")
    return data

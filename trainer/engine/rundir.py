"""The run directory is the user's data: claimed by one process at a time, never overwritten.

A training process *claims* its run directory before it writes anything: it takes an exclusive
``flock`` on ``RUN/.lock`` (the kernel drops it when the process ends, also after a SIGKILL, so
it never stays stuck) and refuses a directory another live process holds. A directory that holds
a finished or interrupted run is refused unless the run resumes (``--resume``) or the user asks to
start over (``--overwrite``), which moves the old run aside to ``NAME.replaced-DATE-TIME`` and
never deletes it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from trainer.errors import ConfigError, OutputError, os_fault

LOCK = ".lock"
# What shows that a folder holds a run; a folder with none of them may be claimed as it is.
_RUN_FILES = ("config.yaml", "history.json", "history.csv", "checkpoints")


class RunDir:
    """A claimed run directory; :meth:`release` (or the process's end) gives it back.

    Use :meth:`claim`.
    """

    def __init__(self, path: Path, handle, created: bool) -> None:
        self.path = path
        self._handle = handle
        self._created = created
        self.replaced: Path | None = None  # where --overwrite moved an earlier run

    @classmethod
    def claim(cls, path: str | os.PathLike, *, resume: bool = False,
              overwrite: bool = False) -> RunDir:
        """Claims ``path`` for a training process.

        Args:
            path: The run directory.
            resume: The run continues what the directory holds. Defaults to `False`.
            overwrite: Move an earlier run aside and start afresh. Defaults to `False`.

        Raises:
            OutputError: the directory cannot be created or locked (a file in the way, no
                permission, a full disk), or another live process holds it.
            ConfigError: it holds a run and neither ``resume`` nor ``overwrite`` was asked for.
        """
        path = Path(path)
        claimed = cls._lock(path)
        held = holds_run(path)
        if held and not resume:
            if not overwrite:
                claimed.release()
                raise ConfigError(
                    f"Run directory {path} already holds a run ({held}). Continue it with "
                    f"--resume auto, start it over with --overwrite (the old run is moved to "
                    f"{path.name}.replaced-DATE-TIME beside it, never deleted), or choose another "
                    "--run-name.")
            aside = _aside_name(path)
            try:
                os.rename(path, aside)
            except OSError as exc:
                claimed.release()
                raise OutputError(f"Cannot move the earlier run {path} aside to {aside}: "
                                  f"{os_fault(exc)}. Nothing was changed.") from None
            claimed.release(remove_if_empty=False)
            claimed = cls._lock(path)
            claimed.replaced = aside
        claimed._note_pid()
        return claimed

    @classmethod
    def _lock(cls, path: Path) -> RunDir:
        for folder in (path, *path.parents):
            if folder.exists():
                if not folder.is_dir():
                    what = "run directory" if folder == path else "output directory"
                    raise OutputError(f"The {what} {folder} is a file, not a folder. Remove or "
                                      "rename the file, or choose another --output-dir or "
                                      "--run-name.")
                break
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            handle = open(path / LOCK, "a+")  # held until release()
        except OSError as exc:
            raise OutputError(f"Cannot create the run directory {path}: {os_fault(exc)}. "
                              "Choose an --output-dir you may write to (and with free "
                              "space).") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read(64).strip() or "unknown"
            handle.close()
            raise OutputError(f"Run directory {path} is in use by another training process "
                              f"(pid {holder}); two processes would mix their checkpoints and "
                              "history. Wait for it to finish (or stop it), or choose another "
                              "--run-name.") from None
        except OSError as exc:  # a filesystem without locks
            handle.close()
            raise OutputError(f"Cannot lock the run directory {path}: {os_fault(exc)}. Put "
                              "--output-dir on a local filesystem.") from None
        return cls(path, handle, created)

    def _note_pid(self) -> None:
        """Writes this process's id into the lock file, for another process's message."""
        try:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(f"{os.getpid()}\n")
            self._handle.flush()
        except OSError:
            pass  # the pid only helps a message; the lock is what counts

    def release(self, *, remove_if_empty: bool = True) -> None:
        """Gives the directory back; one this process created and left empty is removed."""
        if self._handle is None:
            return
        if remove_if_empty and self._created and _only_lock(self.path):
            (self.path / LOCK).unlink(missing_ok=True)
            try:
                self.path.rmdir()
            except OSError:
                pass
        self._handle.close()
        self._handle = None


def holds_run(path: Path) -> str:
    """What in ``path`` shows a run (for messages), or ``""`` when it holds none."""
    if not path.is_dir():
        return ""
    found = []
    for name in _RUN_FILES:
        entry = path / name
        if entry.is_dir():
            count = sum(1 for p in entry.iterdir() if p.suffix == ".ckpt")
            if count:
                found.append(f"{count} checkpoint(s)")
        elif entry.exists():
            found.append(name)
    return ", ".join(found)


def _only_lock(path: Path) -> bool:
    try:
        return [p.name for p in path.iterdir()] in ([LOCK], [])
    except OSError:
        return False


def _aside_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.replaced-{stamp}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.replaced-{stamp}-{n}")
        n += 1
    return candidate

"""The run directory is the user's data: claimed by one process at a time, never overwritten.

A training process *claims* its run directory before it writes anything: it takes an exclusive
``flock`` on ``RUN/.lock`` (the kernel drops it when the process ends, also after a SIGKILL, so
it never stays stuck) and refuses a directory another live process holds. A directory that holds
a finished or interrupted run is refused unless the run resumes (``--resume``) or the user asks to
start over (``--overwrite``), which moves the old run aside to ``NAME.replaced-DATE-TIME`` and
never deletes it.

Runs and studies (``mstrain tune``) never hold each other: a run directory is not a study's
folder, not inside a run or a study, and holds no run or study in a subfolder; a study's folder
is not a run, not inside either, and holds no runs but its own trials (``trial-NNNN``), which
only the process running the study's trials may claim (:func:`study_trials`). Folders above or
below are recognised by the lock file each kind keeps (``.lock``, ``.ask.lock``), since names such
as ``config.yaml`` or ``study.db`` are common elsewhere.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import ConfigError, OutputError, os_fault

LOCK = ".lock"
# What shows that a folder holds a run; a folder with none of them may be claimed as it is.
_RUN_FILES = ("config.yaml", "history.json", "history.csv", "checkpoints")
#: The lock file of a study's folder, taken by its workers and made when the study is opened.
STUDY_LOCK = ".ask.lock"
# What shows that a folder holds a study: its lock file and its default SQLite database.
_STUDY_FILES = (STUDY_LOCK, "study.db")
# The run directories a study makes for its trials.
TRIAL_RUN = re.compile(r"trial-\d{4,}")
# Entries of a folder looked at for runs or studies inside it (a study's folder holds one
# folder per trial, at most 100,000 of them).
_SCAN_MAX_ENTRIES = 200_000
# The study folders whose trial runs this process makes (see study_trials).
_TRIAL_FOLDERS: set[Path] = set()


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
        check_run_dir(path)
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
            logging.getLogger("mstrain").info("Moved the earlier run to %s.", aside)
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


def holds_study(path: Path) -> str:
    """What in ``path`` shows a study (for messages), or ``""`` when it holds none."""
    if not os.path.isdir(path):
        return ""
    return ", ".join(name for name in _STUDY_FILES if os.path.exists(path / name))


@dataclass(frozen=True)
class Holder:
    """A folder that holds a run or a study, and what shows it."""

    folder: Path
    kind: str  # "run" or "study"
    evidence: str

    def describe(self) -> str:
        what = "run directory" if self.kind == "run" else "study's folder"
        return f"the {what} {self.folder} (it holds {self.evidence})"


def _held(folder: Path) -> Holder | None:
    """The run or study ``folder`` holds, when its lock file shows one."""
    if os.path.isfile(folder / STUDY_LOCK):
        return Holder(folder, "study", STUDY_LOCK)
    if os.path.isfile(folder / LOCK):
        try:
            held = holds_run(folder)
        except OSError:
            held = ""
        if held:
            return Holder(folder, "run", held)
    return None


def absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute, with links resolved where they exist."""
    path = Path(os.path.abspath(os.path.expanduser(path)))
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a loop of links: the plain absolute path
        return path


def holder_above(path: str | os.PathLike) -> Holder | None:
    """The nearest folder above ``path`` that holds a run or a study, if any."""
    for folder in absolute(path).parents:
        held = _held(folder)
        if held is not None:
            return held
    return None


def holder_below(path: str | os.PathLike,
                 skip: Callable[[str], bool] = lambda name: False) -> Holder | None:
    """A folder directly inside ``path`` (other than those ``skip`` names) that holds a run or a
    study, if any."""
    try:
        with os.scandir(path) as entries:
            for n, entry in enumerate(entries):
                if n >= _SCAN_MAX_ENTRIES:
                    break
                if skip(entry.name) or not entry.is_dir(follow_symlinks=False):
                    continue
                held = _held(Path(path) / entry.name)
                if held is not None:
                    return held
    except OSError:  # no folder yet, or one that cannot be listed: nothing seen inside it
        pass
    return None


def check_run_dir(path: str | os.PathLike) -> None:
    """Refuses a run directory that is a study's folder, is inside a run or a study (other than
    a trial run of a study this process runs), or holds one in a subfolder. Nothing is written.

    Raises:
        ConfigError: naming the folder and what it holds.
    """
    path = Path(path)
    held = holds_study(path)
    if held:
        raise ConfigError(f"{path} is a study's folder (it holds {held}), not a run directory: a "
                          "run there would mix its checkpoints, history and plot with the "
                          "study's database, trial runs and results. Choose another --run-name "
                          "(or --output-dir).")
    above = holder_above(path)
    if above is not None:
        if (above.kind == "study" and above.folder in _TRIAL_FOLDERS
                and absolute(path).parent == above.folder and TRIAL_RUN.fullmatch(path.name)):
            return  # a trial run of the study this process runs
        whose = ("the trial runs mstrain tune makes for it" if above.kind == "study"
                 else "that run's own files")
        raise ConfigError(f"Run directory {path} is inside {above.describe()}, which holds only "
                          f"{whose}; a run there would be mixed into it. Choose an --output-dir "
                          f"outside {above.folder}.")
    below = holder_below(path)
    if below is not None:
        raise ConfigError(f"Run directory {path} holds {below.describe()} in a subfolder; a run "
                          "there would mix its files with it (and --overwrite would move it "
                          "aside with the run). Choose another --run-name (or --output-dir).")


def check_study_dir(path: str | os.PathLike) -> None:
    """Refuses a study's folder that is a run directory, is inside a run or a study, or holds a
    run or a study in a subfolder other than its own trial runs. Nothing is written.

    Raises:
        ConfigError: naming the folder and what it holds.
    """
    path = Path(path)
    held = holds_run(path)
    if held:
        raise ConfigError(f"{path} is a run directory ({held}), so the study's database and "
                          "trial runs would be mixed into it. Give another --study-name or "
                          "--output-dir.")
    above = holder_above(path)
    if above is not None:
        raise ConfigError(f"The study's folder {path} would be inside {above.describe()}, mixing "
                          "the study's database, trial runs and results into it. Give an "
                          f"--output-dir outside {above.folder} (or another --study-name).")
    below = holder_below(path, skip=TRIAL_RUN.fullmatch)
    if below is not None:
        raise ConfigError(f"The study's folder {path} holds {below.describe()}, which is not "
                          "one of the study's trial runs; the study's files would be mixed "
                          "with it. Give another --study-name (or --output-dir).")


@contextmanager
def study_trials(folder: str | os.PathLike) -> Iterator[None]:
    """Lets this process claim run directories ``folder/trial-NNNN`` inside the study's
    folder ``folder`` while the context is open (the study's own trial runs)."""
    key = absolute(folder)
    _TRIAL_FOLDERS.add(key)
    try:
        yield
    finally:
        _TRIAL_FOLDERS.discard(key)


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

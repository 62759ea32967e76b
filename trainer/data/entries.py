"""The entries of the tool's cache (:func:`trainer.fileio.cache_root`): built once, checked when
read, listed and cleared.

Every kind of derived data (decoded arrays, the held-out split, raw copies of gzipped IDX files)
is an *entry*: a folder ``CACHE/KIND/KEY`` whose name is a key of what it was made from. An entry
is built in a staging folder and renamed into place when complete, with a ``manifest.json`` that
records its kind and key, what it holds (``meta``), and each file's size and SHA-256.

The cache is shared by runs (and may be by people), so an entry is checked once per process
before it is used: the folder is the one its name says (no link leaving the cache), its files are
exactly those of the manifest (no link leaving the entry, no FIFO or device, nothing added), each
of its recorded size and digest, and its values pass the kind's own check (labels in range,
shapes as the key says). A damaged entry is rebuilt, with one log line naming it.

A process holds a shared lock on every entry it uses (its ``.in-use`` file) until it ends;
:func:`clear_entries` needs the lock exclusively, so an entry in use is never removed, nor one
being built (the ``.building`` lock of its staging folder).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.fileio import (
    STALE_SECONDS,
    cache_root,
    default_mode,
    fsync_dir,
    hold_lock,
    read_bounded,
    remove_stale_staging,
    share_lock,
)
from trainer.limits import POINTER_MAX_BYTES

logger = logging.getLogger("mstrain")

MANIFEST = "manifest.json"
IN_USE = ".in-use"
BUILDING = ".building"
_FORMAT = 1
_OWN = frozenset({MANIFEST, IN_USE, BUILDING})  # not content: never in the manifest's list
_CHUNK = 1 << 20


class Damaged(Exception):
    """An entry failed a check; the message says which, in a few words."""


#: A kind's check of an entry's values: ``check(folder, meta)`` raises :class:`Damaged`.
Check = Callable[[Path, dict], None]

# The entries this process has checked, with the identity of their files when checked, so an
# entry is hashed once per run; and the locks that mark them in use until the process ends.
_CHECKED: dict[str, tuple] = {}
_HELD: dict[str, Any] = {}


def entry_path(kind: str, key: str) -> Path:
    """Where the entry ``key`` of ``kind`` lives."""
    return cache_root() / kind / key


def cached_entry(kind: str, key: str, fill: Callable[[Path], dict], check: Check) -> Path:
    """The checked entry ``key`` of ``kind``, built by ``fill`` when absent or damaged.

    Args:
        kind: The entry's kind, a folder of the cache (``"decoded"``, ``"holdout"``, ``"idx"``).
        key: The entry's name: a key of what it is made from.
        fill: Writes the entry's files into the folder it is given and returns its ``meta``, a
            JSON-able mapping with an ``"about"`` line for ``mstrain cache list``.
        check: The kind's check of the values, run when the entry is read.

    Returns:
        The entry's folder, held in use until the process ends.

    Raises:
        OSError: the entry had to be built and the cache cannot be written.
    """
    found = open_entry(kind, key, check)
    return found if found is not None else write_entry(kind, key, fill, check)


def open_entry(kind: str, key: str, check: Check) -> Path | None:
    """The entry's folder when it exists and passes every check (see the module's text), held
    in use until the process ends; None when it is absent, or damaged (then a log line names it
    and says it is rebuilt)."""
    target = entry_path(kind, key)
    if not os.path.lexists(target):
        return None
    try:
        _check_place(target, kind, key)
        _hold(target)
        manifest = _check(target, kind, key, check)
    except _Gone:
        return None
    except Damaged as exc:
        _release(target)
        logger.warning("Cache entry %s is damaged (%s); rebuilding it.", target, exc)
        return None
    del manifest
    try:  # the lock file's time is the entry's last use, for `mstrain cache clear --older-than`
        os.utime(target / IN_USE)
    except OSError:
        pass  # a cache others own: read-only for us
    return target


def write_entry(kind: str, key: str, fill: Callable[[Path], dict], check: Check) -> Path:
    """Builds the entry in a staging folder, records its manifest and renames it into place
    (over a damaged one). When another process built the same entry first, that one is used.

    Raises:
        OSError: the cache cannot be written.
    """
    folder = _kind_folder(kind)
    target = folder / key
    remove_stale_staging(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=folder))
    building = None
    try:
        staging.chmod(default_mode(directory=True))  # mkdtemp makes it private
        # Held while building: a later start tells a live build from one a SIGKILL left behind.
        building = hold_lock(staging / BUILDING)
        meta = fill(staging)
        files = {rel: _digest(staging / rel, sync=True) for rel in _listing(staging)}
        manifest = {"format": _FORMAT, "kind": kind, "key": key, "created": time.time(),
                    "meta": meta, "files": files}
        with open(staging / MANIFEST, "w", encoding="utf-8") as out:
            out.write(json.dumps(manifest, indent=1) + "\n")
            out.flush()
            os.fsync(out.fileno())
        (staging / IN_USE).touch()
        (staging / BUILDING).unlink()
        _place(staging, target, kind, key, check)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if building is not None:
            building.close()
    _hold(target)
    _CHECKED[str(target)] = _identity(target)
    return target


def origin_of(folder: Path) -> str:
    """Where the data in ``folder`` came from, for people: the folder itself, or for a folder
    inside an entry the user's folder that entry was made from (and which part it is)."""
    root, real = os.path.realpath(cache_root()), os.path.realpath(folder)
    parts = Path(os.path.relpath(real, root)).parts
    if os.path.commonpath([root, real]) != root or len(parts) < 2:
        return real
    try:
        meta = json.loads(read_bounded(Path(root, *parts[:2], MANIFEST), POINTER_MAX_BYTES))["meta"]
        origin, labels = meta["origin"], meta.get("parts", {})
        label = labels.get("/".join(parts[2:])) if isinstance(labels, dict) else None
    except (OSError, ValueError, RecursionError, TypeError, KeyError):
        return real
    return f"{origin} ({label})" if isinstance(label, str) else str(origin)


class _Gone(Exception):
    """The entry disappeared while it was opened (``mstrain cache clear`` took it)."""


def _kind_folder(kind: str) -> Path:
    """The folder of a kind's entries, created; a link in its place (out of the cache) is
    removed first, so nothing is ever written through it."""
    folder = cache_root() / kind
    if folder.is_symlink():
        logger.warning("Cache folder %s is a link to %s, outside the cache; replacing it with a "
                       "folder.", folder, os.readlink(folder))
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_place(target: Path, kind: str, key: str) -> None:
    """The entry is a folder reached from the cache folder without a link."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        raise _Gone from None
    if stat.S_ISLNK(info.st_mode):
        raise Damaged(f"it is a link to {os.readlink(target)}, and entries never are")
    if not stat.S_ISDIR(info.st_mode):
        raise Damaged("it is not a folder")
    expected = os.path.join(os.path.realpath(cache_root()), kind, key)
    if os.path.realpath(target) != expected:
        raise Damaged(f"it resolves to {os.path.realpath(target)}, outside the cache")


def _hold(target: Path) -> None:
    """Marks the entry in use for the rest of the process (a shared lock on its ``.in-use``)."""
    name = str(target)
    if name in _HELD:
        return
    lock = target / IN_USE
    handle = share_lock(lock)
    if handle is None:
        if not os.path.isdir(target):
            raise _Gone
        return  # a read-only cache without the file: nothing to mark
    try:
        mine, there = os.fstat(handle.fileno()), os.lstat(lock)
        same = (mine.st_ino, mine.st_dev) == (there.st_ino, there.st_dev)
    except OSError:
        same = False
    if not same:  # the entry was moved away to be removed while the lock was awaited
        handle.close()
        raise _Gone
    _HELD[name] = handle


def _release(target: Path) -> None:
    handle = _HELD.pop(str(target), None)
    if handle is not None:
        handle.close()
    _CHECKED.pop(str(target), None)


def release_all() -> None:
    """Lets go of every entry this process holds (the end of a process does it too)."""
    for name in list(_HELD):
        _release(Path(name))
    _CHECKED.clear()


def _identity(target: Path) -> tuple:
    """Inode, size and modification time of the manifest and every file, cheap to compare."""
    found = []
    for rel in sorted([MANIFEST, *_listing(target)]):
        info = os.lstat(target / rel)
        found.append((rel, info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode))
    return tuple(found)


def _listing(target: Path) -> list[str]:
    """Every file of the entry but its own (manifest, locks), as relative paths; a link that
    stays inside the entry counts as the file it names.

    Raises:
        Damaged: a link leaves the entry, or an entry is not a regular file or folder.
    """
    base = os.path.realpath(target)
    found = []
    for folder, dirs, files in os.walk(target):
        for name in [*dirs, *files]:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, target)
            if rel in _OWN:
                continue
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                resolved = os.path.realpath(full)
                if os.path.commonpath([base, resolved]) != base:
                    raise Damaged(f"{rel} is a link to {resolved}, outside the entry")
                mode = os.stat(full).st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise Damaged(f"{rel} is not a regular file")
            found.append(rel)
    return sorted(found)


def _digest(path: Path, sync: bool = False) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
        if sync:
            os.fsync(stream.fileno())
    return {"size": size, "sha256": digest.hexdigest()}


def _read_manifest(target: Path, kind: str, key: str) -> dict:
    path = target / MANIFEST
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise Damaged(f"its {MANIFEST} is not a regular file")
        manifest = json.loads(read_bounded(path, POINTER_MAX_BYTES))
    except FileNotFoundError:
        raise Damaged(f"it has no {MANIFEST}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise Damaged(f"its {MANIFEST} cannot be read: {exc}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (not isinstance(files, dict) or not isinstance(manifest.get("meta"), dict)
            or manifest.get("format") != _FORMAT):
        raise Damaged(f"its {MANIFEST} is not one this version writes")
    if (manifest.get("kind"), manifest.get("key")) != (kind, key):
        raise Damaged(f"its {MANIFEST} describes {manifest.get('kind')}/{manifest.get('key')}, "
                      "another entry")
    for rel, record in files.items():
        if (not isinstance(record, dict) or not isinstance(record.get("size"), int)
                or not isinstance(record.get("sha256"), str)):
            raise Damaged(f"its {MANIFEST} has a malformed record for {rel}")
    return manifest


def _check(target: Path, kind: str, key: str, check: Check) -> dict:
    """Checks the entry (see the module's text) unless this process did since its files last
    changed; returns its manifest."""
    manifest = _read_manifest(target, kind, key)
    try:
        identity = _identity(target)
    except OSError as exc:
        raise Damaged(f"its files cannot be examined: {exc.strerror or exc}") from None
    if _CHECKED.get(str(target)) == identity:
        return manifest
    recorded: dict[str, dict] = manifest["files"]
    present = _listing(target)
    extra, missing = sorted(set(present) - set(recorded)), sorted(set(recorded) - set(present))
    if missing:
        raise Damaged(f"{missing[0]} is missing")
    if extra:
        raise Damaged(f"{extra[0]} was added after it was built")
    for rel in present:
        record = recorded[rel]
        if os.stat(target / rel).st_size != record["size"]:
            raise Damaged(f"{rel} is not of its recorded size")
        try:
            if _digest(target / rel)["sha256"] != record["sha256"]:
                raise Damaged(f"{rel} does not match its recorded SHA-256")
        except OSError as exc:
            raise Damaged(f"{rel} cannot be read: {exc.strerror or exc}") from None
    check(target, manifest["meta"])
    _CHECKED[str(target)] = identity
    return manifest


def _place(staging: Path, target: Path, kind: str, key: str, check: Check) -> None:
    """Renames the finished staging folder to ``target``; a damaged entry there is moved aside
    first, a good one (another process's build, finished first) is kept."""
    try:
        os.rename(staging, target)
        fsync_dir(target.parent)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise
    try:
        _check_place(target, kind, key)
        _check(target, kind, key, check)
        return  # another process built it meanwhile
    except (Damaged, _Gone):
        pass
    aside = Path(tempfile.mkdtemp(prefix=f".{key}.damaged.", suffix=".tmp", dir=target.parent))
    try:
        os.rename(target, aside / "entry")
    except FileNotFoundError:
        pass
    try:
        os.rename(staging, target)
    except OSError as exc:
        _remove_tree(aside)
        try:  # a third process placed its build in between
            _check_place(target, kind, key)
            _check(target, kind, key, check)
        except (Damaged, _Gone):
            raise exc from None
        return
    fsync_dir(target.parent)
    _remove_tree(aside)


def _remove_tree(path: Path) -> None:
    """Removes a file, a link (never what it names) or a folder tree."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


# --------------------------------------------------------------------------- listing, clearing
@dataclass
class EntryInfo:
    """One entry of the cache as ``mstrain cache list`` shows it."""

    path: Path
    kind: str
    name: str
    size: int  # bytes of its files, links not followed
    last_used: float  # seconds since the epoch
    state: str  # "", "in use", "being built", "unfinished", "unchecked" (not one of ours)
    about: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}" if self.kind else self.name


def list_entries() -> list[EntryInfo]:
    """Everything under the cache folder, one row per entry (or staging folder, or stray file),
    oldest use first."""
    root = cache_root()
    rows: list[EntryInfo] = []
    try:
        kinds = sorted(root.iterdir())
    except OSError:
        return rows
    for kind in kinds:
        if kind.is_dir() and not kind.is_symlink():
            try:
                children = sorted(kind.iterdir())
            except OSError:
                continue
            rows += [_describe(child, kind.name) for child in children]
        else:
            rows.append(_describe(kind, ""))
    return sorted(rows, key=lambda r: r.last_used)


def _describe(path: Path, kind: str) -> EntryInfo:
    size, newest = 0, 0.0
    try:
        info = os.lstat(path)
        newest = info.st_mtime
        if stat.S_ISDIR(info.st_mode):
            for folder, _, files in os.walk(path):
                for name in files:
                    try:
                        size += os.lstat(os.path.join(folder, name)).st_size
                    except OSError:
                        continue
        else:
            size = info.st_size
    except OSError:
        pass
    row = EntryInfo(path, kind, path.name, size, newest, "")
    if path.name.startswith(".") and ".tmp" in path.name:
        row.state = "being built" if _building(path) else "unfinished"
        return row
    if not kind or path.is_symlink() or not path.is_dir():
        row.state = "in use" if _locked(path) else "unchecked"  # a lock file someone holds
        return row
    try:
        manifest = json.loads(read_bounded(path / MANIFEST, POINTER_MAX_BYTES))
        row.last_used = max(os.lstat(path / name).st_mtime for name in (MANIFEST, IN_USE)
                            if os.path.lexists(path / name))
        about = manifest["meta"].get("about", "")
        row.about = about if isinstance(about, str) else ""
    except (OSError, ValueError, RecursionError, TypeError, KeyError, AttributeError):
        row.state = "unchecked"
    if _locked(path / IN_USE):
        row.state = "in use"
    return row


def _building(staging: Path) -> bool:
    """Whether a staging folder belongs to a live build: its ``.building`` lock is held, or it
    has none (a writer of another kind) and is younger than a build takes."""
    if os.path.lexists(staging / BUILDING):
        return _locked(staging / BUILDING)
    try:
        return time.time() - os.lstat(staging).st_mtime < STALE_SECONDS
    except OSError:
        return False


def _locked(lock: Path) -> bool:
    """Whether a process holds a lock on ``lock`` (which is neither created nor followed)."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def select_entries(rows: list[EntryInfo], *, older_than_days: float | None = None,
                   max_bytes: int | None = None, now: float | None = None) -> list[EntryInfo]:
    """The rows :func:`clear_entries` removes: all of them with no bound; with
    ``older_than_days``, those not used for that long; with ``max_bytes``, then the least
    recently used ones until the rest fits (entries in use or being built count but stay)."""
    if older_than_days is None and max_bytes is None:
        return list(rows)
    now = time.time() if now is None else now
    chosen: list[EntryInfo] = []
    if older_than_days is not None:
        chosen = [r for r in rows if now - r.last_used >= older_than_days * 86400]
    if max_bytes is not None:
        total = sum(r.size for r in rows if r not in chosen)
        for row in sorted(rows, key=lambda r: r.last_used):
            if total <= max_bytes:
                break
            if row in chosen or row.state in ("in use", "being built"):
                continue
            chosen.append(row)
            total -= row.size
    return chosen


def clear_entries(rows: list[EntryInfo]) -> tuple[list[EntryInfo], list[EntryInfo]]:
    """Removes ``rows`` (from :func:`list_entries`), except those in use or being built.

    An entry is taken with its ``.in-use`` lock held exclusively and renamed away before it is
    deleted, so a run starting meanwhile either holds it first (and it stays) or finds it gone
    (and builds it again); it never reads half an entry.

    Returns:
        ``(removed, kept)``: kept are those a process was using or building.
    """
    removed, kept = [], []
    for row in rows:
        if row.state in ("being built", "in use") or not _take(row):
            kept.append(row)
        else:
            removed.append(row)
    return removed, kept


def _take(row: EntryInfo) -> bool:
    """Removes one entry unless a process holds it; whether it was removed."""
    import fcntl

    path = row.path
    if path.name.startswith(".") and ".tmp" in path.name:
        if _building(path):
            return False
        _remove_tree(path)
        return True
    if path.is_symlink() or not path.is_dir():
        if _locked(path):
            return False
        _remove_tree(path)
        return True
    handle = None
    try:
        fd = os.open(path / IN_USE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                     0o666)
        handle = os.fdopen(fd, "rb", buffering=0)
    except OSError:
        pass  # no lock file can be made (a read-only entry): no run of ours can hold one either
    if handle is not None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a run (or not lockable): keep the entry
            handle.close()
            return False
    try:
        aside = Path(tempfile.mkdtemp(prefix=f".{row.name}.cleared.", suffix=".tmp",
                                      dir=path.parent))
        try:
            os.rename(path, aside / "entry")
        except OSError:
            aside.rmdir()
            return False
    except OSError:
        return False
    finally:
        if handle is not None:
            handle.close()
    _remove_tree(aside)
    return True

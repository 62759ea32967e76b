"""The checkpoint folder of a run: periodic bundles, the best one, the ``latest.json`` pointer, and
the one naming rule of periodic files."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from trainer.checkpoint.bundle import Bundle, load_bundle, save_bundle
from trainer.checkpoint.meta import BundleMeta, plain_file_name
from trainer.errors import CheckpointError, OutputError, os_fault
from trainer.fileio import atomic_write_text, read_bounded
from trainer.limits import POINTER_MAX_BYTES

logger = logging.getLogger("mstrain")

LATEST = "latest.json"
BEST = "best.ckpt"
PERIODIC_KINDS = ("epoch", "step")
_PERIODIC = re.compile(r"^(epoch|step)-(\d+)-gs(\d+)\.ckpt$")


def periodic_name(kind: str, epoch: int, global_step: int) -> str:
    """The file name of a periodic bundle: ``epoch-0003-gs00001335.ckpt`` after epoch 3, or
    ``step-0004-gs00001400.ckpt`` in the middle of epoch 4."""
    if kind not in PERIODIC_KINDS:
        raise ValueError(f"kind must be one of {PERIODIC_KINDS}, got {kind!r}")
    return f"{kind}-{epoch:04d}-gs{global_step:08d}.ckpt"


def periodic_step(name: str) -> int | None:
    """The global step in a periodic bundle's file name, or None for any other name."""
    match = _PERIODIC.match(name)
    return int(match.group(3)) if match else None


def read_pointer(path: str | os.PathLike) -> str:
    """The bundle file named by a ``latest.json``, checked to be a plain name in its folder.

    Raises:
        CheckpointError: the pointer is missing, too large, not JSON, or does not hold a plain
            file name under ``"file"``.
    """
    path = Path(path)
    try:
        data = json.loads(read_bounded(path, POINTER_MAX_BYTES).decode("utf-8"))
        name = data["file"]
    except FileNotFoundError:
        raise CheckpointError(f"Pointer {path} does not exist.") from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        name = None
    if not plain_file_name(name):
        raise CheckpointError(f"Pointer {path} is damaged (it must be a small JSON file naming a "
                              "bundle of its folder under \"file\"); pass a .ckpt file instead, "
                              "or use --resume auto, which falls back to the newest valid "
                              "bundle.")
    return name


class CheckpointStore:
    """The checkpoint folder of a run: periodic bundles, the best one and the latest pointer.

    Periodic bundles are named by :func:`periodic_name`; ordering and retention use the global
    step in that name, so files from an earlier process of the same run still count. What a
    bundle *means* (epoch, step, metrics) is always read from its metadata.

    Args:
        folder: The run's ``checkpoints/`` folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def periodic(self) -> list[Path]:
        """Periodic bundles, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(step, p) for p in self.folder.iterdir()
                 if (step := periodic_step(p.name)) is not None and p.is_file()]
        return [p for _, p in sorted(found)]

    def remove_temporaries(self) -> list[Path]:
        """Deletes half-written files a killed process left (they never carry a real name)."""
        if not self.folder.is_dir():
            return []
        leftovers = [p for p in self.folder.iterdir()
                     if p.name.startswith(".") and ".tmp" in p.name and p.is_file()]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    def save(self, network, name: str, meta: BundleMeta, *, latest: bool = True) -> Path:
        """Writes a bundle and, with ``latest``, points ``latest.json`` at it.

        Raises:
            OutputError: the folder, the bundle or the pointer cannot be written.
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"Cannot create the checkpoint folder {self.folder}: "
                              f"{os_fault(exc)}. Choose an --output-dir you may write "
                              "to.") from None
        path = save_bundle(network, self.folder / name, meta)
        if latest:
            pointer = {"file": path.name, "epoch": meta.epoch, "global_step": meta.global_step}
            self._set_aside_odd_pointer()
            try:
                atomic_write_text(self.folder / LATEST, json.dumps(pointer, indent=2) + "\n")
            except OSError as exc:
                raise OutputError(f"Cannot update {self.folder / LATEST}: {os_fault(exc)}. The "
                                  f"bundle {path} is complete; free disk space, then continue "
                                  "with --resume auto (it also finds bundles without the "
                                  "pointer).") from None
        return path

    def _set_aside_odd_pointer(self) -> None:
        """A ``latest.json`` that is not a file (a folder, say) cannot be replaced: it is moved
        aside, never deleted, so the pointer can be written again."""
        pointer = self.folder / LATEST
        if pointer.is_symlink() or (pointer.exists() and not pointer.is_file()):
            aside = pointer.with_name(f"{LATEST}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                os.rename(pointer, aside)
            except OSError:
                return  # the write below then says what is wrong
            logger.warning("%s was not a file; moved it aside to %s.", pointer, aside.name)

    def prune(self, keep_last: int, protect: Iterable[Path] = ()) -> list[Path]:
        """Deletes all but the newest ``keep_last`` periodic bundles (0 keeps all)."""
        if keep_last <= 0:
            return []
        protected = {Path(p).name for p in protect}
        pointed = self.pointed()
        removed = []
        for path in self.periodic()[:-keep_last]:
            if path.name in protected or path.name == pointed:
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def pointed(self) -> str | None:
        """The file ``latest.json`` names, or None when it is missing or damaged."""
        try:
            return read_pointer(self.folder / LATEST)
        except CheckpointError:
            return None

    def candidates(self) -> list[Path]:
        """Bundles to resume from, best first: the pointer's, then periodic ones, newest first."""
        pointed = self.pointed()
        found = [self.folder / pointed] if pointed else []
        return found + [p for p in reversed(self.periodic()) if p.name != pointed]

    def latest(self, accept: Callable[[Bundle], None] | None = None
               ) -> tuple[Bundle | None, list[str]]:
        """The newest valid bundle, and notes on damaged ones that were passed over.

        Args:
            accept: Further checks of a bundle (e.g. the callbacks' states); raising
                ``CheckpointError`` passes over it like a damaged file. Defaults to `None`.
        """
        notes: list[str] = []
        for path in self.candidates():
            try:
                bundle = load_bundle(path)
                if accept is not None:
                    accept(bundle)
                return bundle, notes
            except CheckpointError as exc:
                notes.append(str(exc))
        return None, notes

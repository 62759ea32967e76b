"""One resolver for what a user names as a checkpoint: a ``.ckpt``, a ``latest.json``, a
checkpoints folder or a run directory."""

from __future__ import annotations

import os
from pathlib import Path

from trainer.checkpoint.bundle import Bundle, load_bundle
from trainer.checkpoint.store import BEST, LATEST, CheckpointStore, read_pointer
from trainer.errors import CheckpointError

PREFERENCES = ("best", "latest")


def resolve_checkpoint(path: str | os.PathLike, prefer: str = "latest") -> Path:
    """The bundle file that ``path`` stands for.

    Args:
        path: A ``.ckpt`` file, a ``latest.json``, a run's ``checkpoints/`` folder or its run
            directory.
        prefer: For a folder: ``"best"`` takes ``best.ckpt`` when there is one (evaluating,
            predicting, exporting), ``"latest"`` the bundle ``latest.json`` points at
            (resuming). Either falls back to the other, then to the newest periodic bundle.
            Defaults to `"latest"`.

    Raises:
        CheckpointError: the path does not exist, a pointer is damaged, or a folder holds no
            checkpoint; the message says which.
    """
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer must be one of {PREFERENCES}, got {prefer!r}")
    path = Path(path)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        return _in_folder(path, folder, prefer)
    if path.name == LATEST and path.is_file():
        return path.parent / read_pointer(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist. Check the path; a run's "
                              "checkpoints are in RUN_DIR/checkpoints/, and a run directory may "
                              "be named instead of a file.")
    return path


def _in_folder(named: Path, folder: Path, prefer: str) -> Path:
    best, pointer = folder / BEST, folder / LATEST
    order = [best, pointer] if prefer == "best" else [pointer, best]
    for candidate in order:
        if candidate.is_file():
            return folder / read_pointer(candidate) if candidate == pointer else candidate
    periodic = CheckpointStore(folder).periodic()
    if periodic:
        return periodic[-1]
    what = "run directory" if folder != named else "folder"
    raise CheckpointError(f"{named} is a {what} but holds no checkpoint (no {BEST}, no {LATEST} "
                          "and no periodic bundles in "
                          f"{folder}). The run may have stopped before its first save; name a "
                          ".ckpt file, or train the run (again) first.")


def read_checkpoint(path: str | os.PathLike, prefer: str = "best") -> Bundle:
    """Reads a checkpoint for its weights: a bundle or a plain MindSpore checkpoint, named as
    :func:`resolve_checkpoint` accepts (for a folder, the best bundle by default)."""
    return load_bundle(resolve_checkpoint(path, prefer), require_meta=False)

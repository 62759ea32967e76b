"""Checkpoint bundles: one file holds everything needed to continue a run, and says so.

A bundle is a MindSpore checkpoint (protobuf, never pickle) of ``Model.train_network``: the
weights, the optimizer moments, ``global_step``, the per-step learning-rate array and the training
statistics. Beside the tensors it carries, through ``append_dict``, a JSON metadata string (epoch,
step, metrics, the resolved configuration and its fingerprint, callback states) and a SHA-256 over
tensors and metadata. Writes go to a temporary file that is synced and renamed; the ``latest.json``
pointer is replaced only after the bundle is in place, so a crash at any moment leaves the pointer
on a complete, verified file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.errors import CheckpointError
from trainer.fileio import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

FORMAT = "mstrain-bundle"
FORMAT_VERSION = 1
META_KEY = "mstrain.meta"
CHECKSUM_KEY = "mstrain.checksum"
LATEST = "latest.json"
BEST = "best.ckpt"
_PERIODIC = re.compile(r"^(?:epoch|step)-(\d+)-gs(\d+)\.ckpt$")


@dataclass
class Bundle:
    """A loaded bundle: parameters by name and the metadata saved with them."""

    path: Path
    params: dict[str, Any]
    meta: dict[str, Any]

    @property
    def epoch(self) -> int:
        """Epochs completed (a mid-epoch bundle counts the epoch it is in as not completed)."""
        return int(self.meta.get("epoch", 0))

    @property
    def global_step(self) -> int:
        """Optimizer steps taken."""
        return int(self.meta.get("global_step", 0))

    def describe(self) -> str:
        """One line for logs: file, epoch, step and metrics."""
        metrics = self.meta.get("metrics") or {}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        within = self.meta.get("step_in_epoch", 0)
        where = f"epoch {self.epoch}" + (f" + {within} steps" if within else "")
        shown = f"; {shown}" if shown else ""
        return f"{self.path} ({where}, global step {self.global_step}{shown})"


def _digest(arrays: Iterable[tuple[str, np.ndarray]], meta_json: str) -> str:
    sha = hashlib.sha256()
    for name, array in sorted(arrays, key=lambda item: item[0]):
        array = np.ascontiguousarray(array)
        sha.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        sha.update(array.tobytes())
    sha.update(meta_json.encode())
    return sha.hexdigest()


def save_bundle(network, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Writes ``network``'s parameters and ``meta`` to ``path`` atomically.

    Args:
        network: Usually ``Model.train_network``, so optimizer state and step come along.
        path: Final file name (``.ckpt``).
        meta: JSON-serialisable metadata.

    Returns:
        ``path`` as a Path.
    """
    import mindspore as ms

    arrays = [(p.name, p.asnumpy()) for p in network.get_parameters()]
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **meta}
    meta_json = json.dumps(meta, sort_keys=True, allow_nan=True)
    checksum = _digest(arrays, meta_json)
    save_list = [{"name": name, "data": ms.Tensor(array)} for name, array in arrays]
    path = Path(path)
    with atomic_path(path, suffix=".ckpt") as tmp:
        ms.save_checkpoint(save_list, str(tmp),
                           append_dict={META_KEY: meta_json, CHECKSUM_KEY: checksum})
    return path


def load_bundle(path: str | os.PathLike, *, require_meta: bool = True) -> Bundle:
    """Reads and verifies a bundle.

    Args:
        path: The ``.ckpt`` file.
        require_meta: Refuse plain MindSpore checkpoints that have no metadata. Defaults to
            `True`; weights-only uses (evaluation, fine-tuning) pass False.

    Raises:
        CheckpointError: the file is missing, unreadable, truncated, fails its checksum, or (with
            ``require_meta``) is not a bundle written by this tool.
    """
    import mindspore as ms

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist. Check the path; a run's "
                              "checkpoints are in RUN_DIR/checkpoints/, and --resume auto picks "
                              "the newest valid one.")
    try:
        raw = ms.load_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"Checkpoint {str(path)!r} cannot be read: it is truncated or not a "
                              f"MindSpore checkpoint ({str(exc).splitlines()[0]}). Use another "
                              "checkpoint of the run (RUN_DIR/checkpoints/); when resuming, "
                              "--resume auto skips damaged ones.") from None
    meta_json, checksum = raw.pop(META_KEY, None), raw.pop(CHECKSUM_KEY, None)
    if meta_json is None or checksum is None:
        if require_meta:
            raise CheckpointError(f"Checkpoint {str(path)!r} is a plain MindSpore checkpoint "
                                  "without this tool's metadata, so it cannot resume a run. Use "
                                  "--init-from to start a new run from its weights instead.")
        return Bundle(path, raw, {})
    arrays = [(name, value.asnumpy()) for name, value in raw.items() if not isinstance(value, str)]
    if _digest(arrays, meta_json) != checksum:
        raise CheckpointError(f"Checkpoint {str(path)!r} fails its checksum: its contents changed "
                              "after it was written (disk fault or a partial copy). Do not use "
                              "it; --resume auto falls back to the previous good checkpoint.")
    return Bundle(path, raw, json.loads(meta_json))


def check_parameters(network, params: dict[str, Any], *, ignore_missing: Iterable[str] = (),
                     source: str | os.PathLike | None = None) -> None:
    """Compares a network's parameters with a checkpoint's, by name and shape.

    MindSpore's ``load_param_into_net`` loads what matches and silently skips the rest; a run
    that resumes with half its weights random is worse than one that refuses.

    Args:
        network: The cell to load into.
        params: Name to Parameter, from :func:`load_bundle`.
        ignore_missing: Name prefixes the network may have that the checkpoint lacks.

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped parameters.
    """
    ignore = tuple(ignore_missing)
    own = {p.name: tuple(p.shape) for p in network.get_parameters()}
    theirs = {name: tuple(v.shape) for name, v in params.items() if not isinstance(v, str)}
    missing = [n for n in own if n not in theirs and not n.startswith(ignore)]
    extra = [n for n in theirs if n not in own]
    shapes = [f"{n} {theirs[n]} vs {own[n]}" for n in own if n in theirs and theirs[n] != own[n]]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {_short(missing)}")
        if extra:
            parts.append(f"in the checkpoint but not in the network: {_short(extra)}")
        if shapes:
            parts.append(f"different shapes (checkpoint vs network): {_short(shapes)}")
        what = f"Checkpoint {str(source)!r}" if source else "The checkpoint"
        raise CheckpointError(f"{what} does not match the network: " + "; ".join(parts)
                              + ". It was probably saved from another network or configuration; "
                              "pass the same --net (and number of classes) it was trained with.")


def _short(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_into(network, params: dict[str, Any], *, ignore_missing: Iterable[str] = (),
              source: str | os.PathLike | None = None) -> None:
    """Checks (see :func:`check_parameters`) and then loads ``params`` into ``network``."""
    import mindspore as ms

    ignore = tuple(ignore_missing)
    check_parameters(network, params, ignore_missing=ignore, source=source)
    own = {p.name for p in network.get_parameters()}
    wanted = {k: v for k, v in params.items() if k in own}
    not_loaded, _ = ms.load_param_into_net(network, wanted, strict_load=True)
    not_loaded = [n for n in not_loaded if not n.startswith(ignore)] if ignore else not_loaded
    if not_loaded:
        raise CheckpointError(f"MindSpore could not load {_short(list(not_loaded))} from the "
                              "checkpoint. It does not match this network.")


class CheckpointStore:
    """The checkpoint folder of a run: periodic bundles, the best one and the latest pointer.

    Periodic bundles are named ``epoch-EEEE-gsSSSSSSSS.ckpt`` or ``step-…``; ordering and
    retention use the global step in that name, so files from an earlier process of the same run
    still count. What a bundle *means* (epoch, step, metrics) is always read from its metadata.

    Args:
        folder: The run's ``checkpoints/`` folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def periodic(self) -> list[Path]:
        """Periodic bundles, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(2)), p) for p in self.folder.iterdir()
                 if (m := _PERIODIC.match(p.name))]
        return [p for _, p in sorted(found)]

    def remove_temporaries(self) -> list[Path]:
        """Deletes half-written files a killed process left (they never carry a real name)."""
        if not self.folder.is_dir():
            return []
        leftovers = [p for p in self.folder.iterdir()
                     if p.name.startswith(".") and ".tmp" in p.name]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    def save(self, network, name: str, meta: dict[str, Any], *, latest: bool = True) -> Path:
        """Writes a bundle and, with ``latest``, points ``latest.json`` at it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = save_bundle(network, self.folder / name, meta)
        if latest:
            pointer = {"file": path.name, "epoch": meta.get("epoch"),
                       "global_step": meta.get("global_step")}
            atomic_write_text(self.folder / LATEST, json.dumps(pointer, indent=2) + "\n")
        return path

    def prune(self, keep_last: int, protect: Iterable[Path] = ()) -> list[Path]:
        """Deletes all but the newest ``keep_last`` periodic bundles (0 keeps all)."""
        if keep_last <= 0:
            return []
        protected = {Path(p).name for p in protect}
        pointed = self._pointer_name()
        removed = []
        for path in self.periodic()[:-keep_last]:
            if path.name in protected or path.name == pointed:
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    def _pointer_name(self) -> str | None:
        try:
            return json.loads((self.folder / LATEST).read_text())["file"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def latest(self) -> tuple[Bundle | None, list[str]]:
        """The newest valid bundle, and notes on damaged ones that were passed over.

        The pointer is tried first; if it is missing or its file is damaged, periodic bundles are
        tried from the newest down.
        """
        notes: list[str] = []
        candidates: list[Path] = []
        pointed = self._pointer_name()
        if pointed:
            candidates.append(self.folder / pointed)
        candidates += [p for p in reversed(self.periodic()) if p.name != pointed]
        for path in candidates:
            try:
                return load_bundle(path), notes
            except CheckpointError as exc:
                notes.append(str(exc))
        return None, notes

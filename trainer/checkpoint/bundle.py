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
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.checkpoint.meta import FORMAT, BundleMeta, damaged
from trainer.device import quiet_mindspore
from trainer.errors import CheckpointError, OutputError, os_fault
from trainer.fileio import atomic_path, special_file
from trainer.limits import CHECKPOINT_MAX_BYTES, CHECKPOINT_META_MAX_BYTES, describe

logger = logging.getLogger(__name__)

META_KEY = "mstrain.meta"
CHECKSUM_KEY = "mstrain.checksum"
__all__ = ["FORMAT", "Bundle", "check_parameters", "load_bundle", "load_into", "load_weights",
           "network_weights", "save_bundle"]


@dataclass
class Bundle:
    """A loaded checkpoint: parameters by name and, for a bundle, its checked metadata."""

    path: Path
    params: dict[str, Any]
    meta: BundleMeta | None  # None for a plain MindSpore checkpoint

    @property
    def epoch(self) -> int:
        """Epochs completed (a mid-epoch bundle counts the epoch it is in as not completed)."""
        return self.meta.epoch if self.meta else 0

    @property
    def global_step(self) -> int:
        """Optimizer steps taken."""
        return self.meta.global_step if self.meta else 0

    def describe(self) -> str:
        """One line for logs: file, epoch, step and metrics."""
        if self.meta is None:
            return f"{self.path} (a plain MindSpore checkpoint)"
        metrics = self.meta.metrics
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        within = self.meta.step_in_epoch
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


def save_bundle(network, path: str | os.PathLike, meta: BundleMeta) -> Path:
    """Writes ``network``'s parameters and ``meta`` to ``path`` atomically.

    Args:
        network: Usually ``Model.train_network``, so optimizer state and step come along.
        path: Final file name (``.ckpt``).
        meta: The bundle's metadata.

    Returns:
        ``path`` as a Path.

    Raises:
        OutputError: the file cannot be written (permissions, a full disk); nothing is left under
            a final name, and the previous bundles are untouched.
    """
    import mindspore as ms

    arrays = [(p.name, p.asnumpy()) for p in network.get_parameters()]
    meta_json = meta.to_json()
    checksum = _digest(arrays, meta_json)
    save_list = [{"name": name, "data": ms.Tensor(array)} for name, array in arrays]
    path = Path(path)
    tmp = None
    try:
        with quiet_mindspore(), atomic_path(path, suffix=".ckpt") as tmp:
            ms.save_checkpoint(save_list, str(tmp),
                               append_dict={META_KEY: meta_json, CHECKSUM_KEY: checksum})
    except OSError as exc:
        raise OutputError(f"Cannot write the checkpoint {path}: {os_fault(exc)}. Nothing was "
                          "saved under that name and the earlier checkpoints of the run are "
                          "intact. Free disk space or make the folder writable, then continue "
                          "with --resume auto.") from None
    finally:
        if tmp is not None:  # MindSpore writes NAME.tmp first and leaves it when a write fails
            tmp.with_suffix(".tmp").unlink(missing_ok=True)
    return path


def load_bundle(path: str | os.PathLike, *, require_meta: bool = True) -> Bundle:
    """Reads and verifies a bundle.

    Args:
        path: The ``.ckpt`` file.
        require_meta: Refuse plain MindSpore checkpoints that have no metadata. Defaults to
            `True`; weights-only uses (evaluation, fine-tuning) pass False.

    Raises:
        CheckpointError: the file is missing, too large, unreadable, truncated, fails its
            checksum, has metadata that is off (named with the field), or (with
            ``require_meta``) is not a bundle written by this tool.
    """
    path = Path(path)
    refused = special_file(path, "Checkpoint", repr(str(path)))
    if refused:  # opening a FIFO would wait for a writer
        raise CheckpointError(f"{refused} Name a .ckpt file, a latest.json or a run directory.")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist. Check the path; a run's "
                              "checkpoints are in RUN_DIR/checkpoints/, and --resume auto picks "
                              "the newest valid one.")
    size = path.stat().st_size
    if size > CHECKPOINT_MAX_BYTES:
        raise CheckpointError(f"Checkpoint {str(path)!r} is {size:,} bytes, more than the limit "
                              f"of {describe(CHECKPOINT_MAX_BYTES)} for a checkpoint; it is not "
                              "one this tool wrote for an MNIST network.")
    import mindspore as ms  # after the checks: a wrong path answers at once

    try:
        with quiet_mindspore():
            raw = ms.load_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"Checkpoint {str(path)!r} cannot be read: it is truncated or not a "
                              f"MindSpore checkpoint ({reason}). Use another checkpoint of the "
                              "run (RUN_DIR/checkpoints/); when resuming, --resume auto skips "
                              "damaged ones.") from None
    meta_json, checksum = raw.pop(META_KEY, None), raw.pop(CHECKSUM_KEY, None)
    if meta_json is None or checksum is None:
        if require_meta:
            raise CheckpointError(f"Checkpoint {str(path)!r} is a plain MindSpore checkpoint "
                                  "without this tool's metadata, so it cannot resume a run. Use "
                                  "--init-from to start a new run from its weights instead.")
        return Bundle(path, {k: v for k, v in raw.items() if not isinstance(v, str)}, None)
    if not isinstance(meta_json, str) or not isinstance(checksum, str) \
            or len(meta_json) > CHECKPOINT_META_MAX_BYTES:
        raise damaged(str(path), "its metadata is not a string of the expected size")
    arrays = [(name, value.asnumpy()) for name, value in raw.items() if not isinstance(value, str)]
    if _digest(arrays, meta_json) != checksum:
        raise CheckpointError(f"Checkpoint {str(path)!r} fails its checksum: its contents changed "
                              "after it was written (disk fault or a partial copy). Do not use "
                              "it; --resume auto falls back to the previous good checkpoint.")
    meta = BundleMeta.from_json(meta_json, str(path))
    params = {k: v for k, v in raw.items() if not isinstance(v, str)}
    _check_tensors(params, meta, str(path))
    return Bundle(path, params, meta)


def _check_tensors(params: dict[str, Any], meta: BundleMeta, source: str) -> None:
    """The step counters and rate array agree with the metadata. The training steps are
    ``train_stats.steps`` (every batch, micro-batches included) where the train network counts
    them, else the optimizer's ``global_step``; the optimizer never counts more."""
    counted = params.get("train_stats.steps")
    for name, exact in (("train_stats.steps", True), ("global_step", counted is None)):
        tensor = params.get(name)
        if tensor is None:
            continue
        values = tensor.asnumpy().reshape(-1)
        if values.size != 1 or (int(values[0]) != meta.global_step if exact
                                else int(values[0]) > meta.global_step):
            raise damaged(source, f"its {name} tensor holds {values[:4].tolist()}, but its "
                          f"metadata says global step {meta.global_step}")
    scale = params.get("loss_scale.value")
    if scale is not None:
        values = scale.asnumpy().reshape(-1)
        if values.size != 1 or not (np.isfinite(values[0]) and values[0] >= 1):
            raise damaged(source, f"its loss_scale.value tensor holds {values[:4].tolist()}, "
                          "not one finite loss scale of at least 1")
    rates, updates = params.get("learning_rate"), params.get("global_step")
    if rates is not None and updates is not None and len(rates.shape) == 1:
        applied = int(updates.asnumpy().reshape(-1)[0])
        if rates.shape[0] <= applied:
            raise damaged(source, f"its learning-rate array has {rates.shape[0]} entries, too "
                          f"few for the optimizer's step {applied}")


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


# The first name component of the parameters a train network has beyond the backbone's weights:
# the optimizers' state, the step counters, the statistics, accumulated gradients, EMA weights,
# the loss scale and its counters.
TRAIN_STATE = frozenset({
    "moments", "global_step", "learning_rate", "momentum", "beta1_power", "beta2_power",
    "moment1", "moment2", "adam_m", "adam_v", "mean_square", "moment", "accum", "stat",
    "train_stats", "grad_accum", "ema", "loss_scale"})
EMA_PREFIX = "ema."


def is_train_state(name: str) -> bool:
    """Whether a checkpoint parameter belongs to training (not to the network's weights)."""
    return name.split(".", 1)[0] in TRAIN_STATE


def has_ema(bundle: Bundle) -> bool:
    """Whether the bundle holds an exponential moving average of the weights."""
    return any(name.startswith(EMA_PREFIX) for name in bundle.params)


def network_weights(bundle: Bundle) -> dict[str, Any]:
    """The network's weights in a checkpoint, by name, as :func:`load_weights` loads them: its
    moving average where the bundle holds one, never the optimizer's or the step's state."""
    weights = {k: v for k, v in bundle.params.items()
               if not is_train_state(k) and not isinstance(v, str)}
    if has_ema(bundle):
        weights.update({k[len(EMA_PREFIX):]: v for k, v in bundle.params.items()
                        if k.startswith(EMA_PREFIX) and k[len(EMA_PREFIX):] in weights})
    return weights


def load_weights(network, bundle: Bundle, net: str | None = None) -> None:
    """Loads a checkpoint's weights (not its optimizer state) into ``network``.

    Args:
        network: The cell to load into.
        bundle: The checkpoint, from ``trainer.checkpoint.read_checkpoint``.
        net: The name ``network`` was built from; when the checkpoint's configuration names
            another, the error says so. Defaults to `None`.

    A bundle of a run with ``--ema-decay`` holds the moving average of the weights beside them;
    the average is what is loaded then, as it is what validation chose the best bundle by.

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped parameters.
    """
    try:
        load_into(network, network_weights(bundle), source=bundle.path)
    except CheckpointError as exc:
        trained = bundle.meta.run.net if bundle.meta and bundle.meta.run else None
        if net and trained and trained != net:
            raise CheckpointError(f"{exc} This checkpoint was trained with --net {trained}, and "
                                  f"the network built here is {net!r}.") from None
        raise

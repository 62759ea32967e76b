"""TensorBoard event files for a run: scalars, hyperparameters and images, continued on resume.

Written with TensorBoard's own event writer (the one ``torch.utils.tensorboard`` uses), so the
files need nothing but the ``tensorboard`` package to write, read and view:
``tensorboard --logdir runs`` shows every run of the folder side by side.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from callbacks.stats import EpochStats
from callbacks.tracking import FINISHED, STOPPED, TrackingLogger
from trainer.errors import OutputError, os_fault
from trainer.extras import import_tensorboard
from trainer.fileio import fsync_dir
from trainer.limits import TENSORBOARD_REWIND_MAX_BYTES

logger = logging.getLogger("mstrain")

EVENTS_PATTERN = "events.out.tfevents.*"


def event_files(folder: str | os.PathLike) -> list[Path]:
    """A folder's event files in the order TensorBoard reads them (by name)."""
    return sorted(p for p in Path(folder).glob(EVENTS_PATTERN) if p.is_file())


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of a PNG, read from its header by Pillow (as predict.py reads
    pictures), without decoding the pixels.

    Raises:
        ValueError: ``data`` is not a PNG.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "PNG":
                return image.size
    except (UnidentifiedImageError, OSError):
        pass
    raise ValueError("not a PNG file")


def rewind_events(folder: str | os.PathLike, step: int) -> int:
    """Keeps, of a folder's event files, the events up to ``step``, each (tag, step) once and
    no end-of-session record, in one file; returns how many summary values were dropped.

    The kept events are written to a temporary file, synced, and renamed over the first event
    file; the other files are removed after that. A crash in between leaves the first file
    complete and the others as they were, and the next rewind deduplicates again.
    """
    tb = import_tensorboard("--report-to tensorboard")
    files = event_files(folder)
    if not files:
        return 0
    size = sum(p.stat().st_size for p in files)
    if size > TENSORBOARD_REWIND_MAX_BYTES:
        raise _TooLarge(f"its event files hold {size / 2**20:.0f} MiB, more than the "
                        f"{TENSORBOARD_REWIND_MAX_BYTES >> 20} MiB a rewind reads")
    seen: set[tuple[str, int]] = set()
    kept: list[bytes] = []
    dropped = 0
    version_kept = False
    for path in files:
        for raw in _records(tb, path):
            event = tb.event_pb2.Event.FromString(raw)
            if event.HasField("file_version"):
                if not version_kept:
                    kept.append(raw)
                    version_kept = True
                continue
            if not event.HasField("summary"):
                continue
            values = [v for v in event.summary.value
                      if event.step <= step and (v.tag, event.step) not in seen
                      and v.tag != tb.hparams_metadata.SESSION_END_INFO_TAG]
            dropped += len(event.summary.value) - len(values)
            if not values:
                continue
            seen.update((v.tag, event.step) for v in values)
            del event.summary.value[:]
            event.summary.value.extend(values)
            kept.append(event.SerializeToString())
    target = files[0]
    tmp = target.with_name(f".{target.name}.rewind")
    with open(tmp, "wb") as handle:
        writer = tb.RecordWriter(handle)
        for raw in kept:
            writer.write(raw)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    for path in files[1:]:
        path.unlink()
    fsync_dir(target.parent)
    return dropped


class _TooLarge(Exception):
    """A folder too large to rewind."""


def _records(tb, path: Path):
    """The records of an event file, up to the first one that cannot be read (the torn end a
    crash leaves, or damage): TensorBoard's reader stops there too."""
    try:
        yield from tb.RawEventFileLoader(str(path)).Load()
    except Exception as exc:  # the reader's errors have no common base: DataLoss, Memory, ...
        logger.warning("TensorBoard: %s is damaged after a point (%s: %s); the events before it "
                       "are kept.", path.name, type(exc).__name__, exc)


class TensorBoardLogger(TrackingLogger):
    """Writes a run's record as TensorBoard event files in ``log_dir``.

    Scalars (see :mod:`callbacks.tracking` for the names) at their global step; the
    hyperparameters with the summary metrics for the HPARAMS view; ``history.png`` and other
    figures as images. A resumed run rewinds the folder to the bundle's step first (see
    :func:`rewind_events`), so no step is recorded twice; events are flushed to disk whenever a
    checkpoint bundle is written, so none up to a bundle's step is lost to a crash.

    Args:
        log_dir: The folder of the event files (``RUN/tensorboard`` for a ``Trainer`` run).
        log_every: Record step scalars every N steps; 0 only epochs. Defaults to `100`.
        hparams: Hyperparameters for the HPARAMS view. Defaults to `None`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None`.
        flush_secs: Longest time an event waits in memory. Defaults to `10`.

    Example:
        >>> tb = TensorBoardLogger("runs/demo/tensorboard", hparams={"lr": 0.01})
        >>> model.fit(3, train, valid, callbacks=[tb])  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | os.PathLike, log_every: int = 100,
                 hparams: Mapping[str, Any] | None = None, stats: EpochStats | None = None,
                 flush_secs: float = 10) -> None:
        super().__init__(log_every, hparams, stats)
        self.tb = import_tensorboard("TensorBoardLogger")
        self.log_dir = Path(log_dir)
        self.flush_secs = flush_secs
        self._writer = None
        self._broken = False

    # ----------------------------------------------------------------- writer
    def _write(self, summary, step: int) -> None:
        if self._broken:
            return
        try:
            if self._writer is None:
                self._writer = self.tb.EventFileWriter(str(self.log_dir),
                                                       flush_secs=self.flush_secs)
            self._writer.add_event(self.tb.event_pb2.Event(wall_time=time.time(), step=step,
                                                           summary=summary))
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self._broken = True
        logger.warning("TensorBoard: cannot write into %s (%s); the run goes on without its "
                       "TensorBoard record (history.json and the checkpoints have everything).",
                       self.log_dir, os_fault(exc))

    def flush(self) -> None:
        """Writes every pending event to disk."""
        if self._writer is not None and not self._broken:
            try:
                self._writer.flush()
            except OSError as exc:
                self._fail(exc)

    def close(self) -> None:
        """Flushes and closes the event file."""
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as exc:
                if not self._broken:
                    self._fail(exc)
            self._writer = None

    # ------------------------------------------------------------- interface
    def log_hparams(self, params: Mapping[str, Any], metrics: Sequence[str]) -> None:
        hp = self.tb.hparams
        if not params:
            return
        names = [hp.HParam(name) for name in sorted(params)]
        self._write(hp.hparams_config_pb(names, [hp.Metric(m) for m in metrics]), 0)
        self._write(hp.hparams_pb(dict(params), trial_id=self.log_dir.parent.name or None), 0)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        summary_pb2 = self.tb.summary_pb2
        if metrics:
            self._write(summary_pb2.Summary(value=[
                summary_pb2.Summary.Value(tag=name, simple_value=value)
                for name, value in metrics.items()]), step)

    def log_artifact(self, path: Path, kind: str = "file") -> None:
        """Images (``kind="image"``, PNG) go in as images tagged ``images/<file stem>``; other
        files are the other trackers' business."""
        if kind != "image":
            return
        data = Path(path).read_bytes()
        try:
            width, height = png_size(data)
        except ValueError:
            logger.warning("TensorBoard: %s is not a PNG; not recorded.", path)
            return
        summary_pb2 = self.tb.summary_pb2
        image = summary_pb2.Summary.Image(height=height, width=width, colorspace=4,
                                          encoded_image_string=data)
        self._write(summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=f"images/{Path(path).stem}", image=image)]), self.last_step)

    def finalize(self, status: str) -> None:
        if status != STOPPED and self.hparams:  # a stopped run is continued, not ended
            hp, api = self.tb.hparams_metadata, self.tb.hparams_api
            code = api.STATUS_SUCCESS if status == FINISHED else api.STATUS_FAILURE
            data = self.tb.plugin_data_pb2.HParamsPluginData(
                session_end_info=self.tb.plugin_data_pb2.SessionEndInfo(
                    status=code, end_time_secs=time.time()))
            summary_pb2 = self.tb.summary_pb2
            self._write(summary_pb2.Summary(value=[summary_pb2.Summary.Value(
                tag=hp.SESSION_END_INFO_TAG, metadata=hp.create_summary_metadata(data),
                tensor=hp.NULL_TENSOR)]),
                self.last_step)
        self.close()

    def rewind(self, step: int) -> None:
        self.close()
        try:
            dropped = rewind_events(self.log_dir, step)
        except _TooLarge as exc:
            logger.warning("TensorBoard: %s is not rewound to step %d: %s; points recorded after "
                           "that step before the run stopped may appear twice.", self.log_dir,
                           step, exc)
            return
        except OSError as exc:
            raise OutputError(f"Cannot continue the TensorBoard record in {self.log_dir}: "
                              f"{os_fault(exc)}. Make the folder writable (or run without "
                              "--report-to tensorboard); the checkpoint is unchanged.") from None
        if dropped:
            logger.info("TensorBoard: resumed at step %d; dropped %d value(s) recorded after it "
                        "before the run stopped (they are recorded again as it continues).",
                        step, dropped)

    # ------------------------------------------------------------------ hooks
    def on_train_epoch_end(self, run_context) -> None:
        super().on_train_epoch_end(run_context)
        self.flush()

    def on_train_end(self, run_context) -> None:
        self.flush()
        super().on_train_end(run_context)

    def state_dict(self) -> dict[str, Any]:
        """Nothing to restore (the folder is the record); asked for right before a checkpoint
        bundle is written, so the events up to its step are flushed to disk first."""
        self.flush()
        return {}


__all__ = ["TensorBoardLogger", "event_files", "png_size", "rewind_events"]

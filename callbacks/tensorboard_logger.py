"""TensorBoard event files for a run: scalars, hyperparameters and images, continued on resume.

Written with TensorBoard's own event writer (the one ``torch.utils.tensorboard`` uses), so the
files need nothing but the ``tensorboard`` package to write, read and view:
``tensorboard --logdir runs`` shows every run of the folder side by side.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from callbacks.stats import EpochStats
from callbacks.tracking import FINISHED, STOPPED, TrackingLogger
from trainer.errors import OutputError, os_fault
from trainer.extras import import_tensorboard
from trainer.fileio import fsync_dir
from trainer.limits import (
    TENSORBOARD_RECORD_MAX_BYTES,
    TENSORBOARD_REWIND_MAX_BYTES,
    TENSORBOARD_REWIND_MAX_TAGS,
    describe,
)

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

    The files are read record by record (see :func:`read_records`) and the kept records are
    written to a temporary file as they come, so memory stays the same whatever the files'
    size and the time grows with the records read. Every name (tag) keeps its values in the
    order of their steps, as the loggers write them: a value at a step not above the last one
    kept for its name is a repeat (written again by a later process) and is dropped.

    The temporary file is synced and renamed over the first event file; the other files are
    removed after that. A crash in between leaves the first file complete and the others as they
    were, and the next rewind deduplicates again.

    Raises:
        OSError: the folder cannot be read or written.
    """
    return _rewind(folder, step)[0]


def _rewind(folder: str | os.PathLike, step: int) -> tuple[int, dict[str, int]]:
    """:func:`rewind_events`, also returning the last step kept of every tag."""
    tb = import_tensorboard("--report-to tensorboard")
    files = event_files(folder)
    if not files:
        return 0, {}
    size = sum(p.stat().st_size for p in files)
    if size > TENSORBOARD_REWIND_MAX_BYTES:
        raise _TooLarge(f"its event files hold {size / 2**20:.0f} MiB, more than the "
                        f"{describe(TENSORBOARD_REWIND_MAX_BYTES)} a rewind reads")
    end_tag = tb.hparams_metadata.SESSION_END_INFO_TAG
    last: dict[str, int] = {}  # the last step kept of every tag
    dropped = 0
    version_kept = False
    target = files[0]
    tmp = target.with_name(f".{target.name}.rewind")
    try:
        with open(tmp, "wb") as handle:
            writer = tb.RecordWriter(handle)
            for path in files:
                for raw, event in _events(tb, path):
                    if event.HasField("file_version"):
                        if not version_kept:
                            writer.write(raw)
                            version_kept = True
                        continue
                    if not event.HasField("summary"):
                        continue
                    values = []
                    for value in event.summary.value:
                        if (event.step <= step and event.step > last.get(value.tag, -1)
                                and value.tag != end_tag):
                            values.append(value)
                            last[value.tag] = event.step
                    dropped += len(event.summary.value) - len(values)
                    if not values:
                        continue
                    if len(last) > TENSORBOARD_REWIND_MAX_TAGS:
                        raise _TooLarge(f"its event files name more than "
                                        f"{TENSORBOARD_REWIND_MAX_TAGS:,} tags")
                    if len(values) != len(event.summary.value):
                        del event.summary.value[:]
                        event.summary.value.extend(values)
                        raw = event.SerializeToString()
                    writer.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    for path in files[1:]:
        path.unlink()
    fsync_dir(target.parent)
    return dropped, last


class _TooLarge(Exception):
    """A folder too large to rewind."""


def read_records(path: str | os.PathLike) -> Iterator[bytes]:
    """The records of an event file (TFRecord framing: length, its checksum, data, its
    checksum), one at a time, up to the first one that is torn (the end a crash leaves),
    damaged, or longer than ``TENSORBOARD_RECORD_MAX_BYTES``: TensorBoard's reader stops there
    too. A length is checked against the limit and the bytes left in the file before anything
    is read, so a sparse file or a record header claiming gigabytes costs nothing."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    path = Path(path)
    with open(path, "rb") as handle:
        left = os.fstat(handle.fileno()).st_size
        while left:
            header = handle.read(12)
            if len(header) < 12:
                return _damaged(path, "a record's header is cut short")
            length, header_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != header_crc:
                return _damaged(path, "a record's header fails its checksum")
            if length > TENSORBOARD_RECORD_MAX_BYTES:
                return _damaged(path, f"a record claims {length:,} bytes, more than the "
                                f"{describe(TENSORBOARD_RECORD_MAX_BYTES)} a record may hold")
            if 12 + length + 4 > left:
                return _damaged(path, "the last record is cut short")
            data = handle.read(length)
            footer = handle.read(4)
            if len(data) < length or len(footer) < 4:
                return _damaged(path, "the last record is cut short")
            if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                return _damaged(path, "a record fails its checksum")
            left -= 12 + length + 4
            yield data


def _events(tb, path: Path) -> Iterator[tuple[bytes, Any]]:
    """``(record, Event)`` for the records of an event file, up to the first one that is not
    an event."""
    for raw in read_records(path):
        try:
            event = tb.event_pb2.Event.FromString(raw)
        except Exception:  # protobuf's DecodeError, from the pure-Python or the C implementation
            _damaged(path, "a record is not an event")
            return
        yield raw, event


def _damaged(path: Path, why: str) -> None:
    logger.warning("TensorBoard: %s is damaged after a point (%s); the events before it are "
                   "kept.", path.name, why)


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
        history: The run's :class:`~callbacks.history.History`, for a tracker that joins a
            resumed run (see :class:`~callbacks.tracking.TrackingLogger`). Defaults to `None`.
        managed: The owner ends the record (see :class:`~callbacks.tracking.TrackingLogger`).
            Defaults to `False`.
        step: The global step the record stands at before training reports one. Defaults to
            `0`.

    Example:
        >>> tb = TensorBoardLogger("runs/demo/tensorboard", hparams={"lr": 0.01})
        >>> model.fit(3, train, valid, callbacks=[tb])  # doctest: +SKIP
    """

    label = "TensorBoard"

    def __init__(self, log_dir: str | os.PathLike, log_every: int = 100,
                 hparams: Mapping[str, Any] | None = None, stats: EpochStats | None = None,
                 flush_secs: float = 10, history: Any = None, managed: bool = False,
                 step: int = 0) -> None:
        super().__init__(log_every, hparams, stats, history, managed, step)
        self.tb = import_tensorboard("TensorBoardLogger")
        self.log_dir = Path(log_dir)
        self.flush_secs = flush_secs
        self._writer = None
        self._broken = False
        self._kept: dict[str, int] = {}  # the last step of every tag the folder holds

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
        size = Path(path).stat().st_size
        if size > TENSORBOARD_RECORD_MAX_BYTES:  # a record the rewind would refuse to read
            logger.warning("TensorBoard: %s holds %s bytes, more than the %s an image may hold; "
                           "not recorded.", path, f"{size:,}",
                           describe(TENSORBOARD_RECORD_MAX_BYTES))
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

    def recorded(self, tag: str, step: int) -> bool:
        # A value at or below its tag's last step would be dropped by the next rewind.
        return step <= self._kept.get(tag, -1)

    def rewind(self, step: int) -> None:
        self.close()
        try:
            dropped, self._kept = _rewind(self.log_dir, step)
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


__all__ = ["TensorBoardLogger", "event_files", "png_size", "read_records", "rewind_events"]

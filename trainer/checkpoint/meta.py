"""The metadata of a bundle as one typed record, written and read in one place.

Everything a bundle says about itself (where in the run it was saved, the epoch's metrics, the
callbacks' states, the run's configuration and fingerprint) is a :class:`BundleMeta`. Reading one
back checks every field's type and range, so a bundle whose checksum was recomputed over edited
metadata is still caught: a field that is off makes the bundle *damaged*, named with the field,
and ``--resume auto`` falls back past it as it does for a bad checksum.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from trainer.errors import CheckpointError, shown
from trainer.limits import MAX_TOTAL_STEPS

FORMAT = "mstrain-bundle"
FORMAT_VERSION = 1

# The largest whole number a field may hold: steps, epochs and counts far beyond any real run,
# and small enough for every consumer (numpy, MindSpore) to hold exactly.
_BIG = 2**53


class MetaFault(ValueError):
    """One field of a bundle's metadata is missing, of the wrong type or out of range."""


@dataclass(frozen=True)
class RunRecord:
    """What the trainer records about the run's set-up, for resuming and for loading.

    Absent (``None`` in :attr:`BundleMeta.run`) when a ``ModelCheckpoint`` used with a plain
    ``Model`` wrote the bundle.
    """

    config: dict[str, Any]
    fingerprint: str
    fingerprint_fields: dict[str, Any]
    train_count: int
    epochs_planned: int
    workers: int = 1
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def net(self) -> str:
        """The network the run trained (a registry name, or a user's ``pkg.mod:factory``)."""
        return self.config.get("net", "lenet")

    @property
    def num_classes(self) -> int:
        """Outputs of the network: the data record's, else the configuration's (10 for a bundle
        that records neither)."""
        return self.data.get("num_classes") or self.config.get("num_classes", 10) or 10

    @property
    def in_channels(self) -> int:
        """Channels of the network's input (1 for a bundle that does not record them)."""
        return self.data.get("channels", 1)

    @property
    def image_size(self) -> int | None:
        """Side of the network's input, or None for a bundle that does not record it (the
        network's own side then)."""
        return self.data.get("image_size")

    @property
    def class_names(self) -> list[str] | None:
        """The class names, in label order, or None."""
        return self.data.get("class_names")

    @property
    def kind(self) -> str:
        """``digits`` or ``natural`` (``digits`` for a bundle that does not record it)."""
        return self.data.get("kind", "digits")


@dataclass(frozen=True)
class BundleMeta:
    """Where in the run a bundle was saved and what it carries besides the tensors.

    Attributes:
        epoch: Epochs completed; a bundle saved in the middle of an epoch counts that epoch as
            not completed.
        step_in_epoch: Steps of the current epoch already trained (0 at an epoch's end).
        global_step: Optimizer steps taken, ``epoch * steps_per_epoch + step_in_epoch``.
        steps_per_epoch: Steps in one epoch of the run.
        metrics: The epoch's metrics (``loss``, ``val_accuracy``, ...), when it was complete.
        saved_at: Local time of the save, ISO 8601.
        callbacks: Each stateful callback's ``state_dict()`` by its state key.
        epoch_stats: The running totals at the current epoch's start.
        best: The best-checkpoint record: ``monitor``, ``value`` and ``file``.
        run: The run's set-up, or None for a bundle written outside ``Trainer``.
        extra: Fields of a later version of the format, kept as they are.
    """

    epoch: int
    step_in_epoch: int
    global_step: int
    steps_per_epoch: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    saved_at: str = ""
    callbacks: dict[str, Any] = field(default_factory=dict)
    epoch_stats: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    run: RunRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether the bundle was saved at an epoch's end, after its validation and history."""
        return self.step_in_epoch == 0

    def to_json(self) -> str:
        """The metadata string stored in the bundle (flat, so that every reader of the format
        parses it)."""
        data: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, **self.extra}
        for f in fields(self):
            if f.name in ("run", "extra"):
                continue
            data[f.name] = getattr(self, f.name)
        if self.run is not None:
            data.update(asdict(self.run))
        return json.dumps(data, sort_keys=True, allow_nan=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> BundleMeta:
        """Parses and checks a metadata string.

        Raises:
            CheckpointError: the string is not JSON or a field is off; the message names the
                bundle (``source``) and the field.
        """
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise damaged(source, "its metadata is not valid JSON") from None
        try:
            return cls.from_dict(data)
        except MetaFault as exc:
            raise damaged(source, f"its metadata {exc}") from None

    @classmethod
    def from_dict(cls, data: Any) -> BundleMeta:
        """Builds the record from a mapping, checking every field.

        Raises:
            MetaFault: naming the first field that is missing, of the wrong type or out of range.
        """
        if not isinstance(data, dict):
            raise MetaFault(f"is a {type(data).__name__}, not a mapping")
        if data.get("format", FORMAT) != FORMAT:
            raise MetaFault(f"names the format {shown(data.get('format'))}, not {FORMAT!r}")
        version = _whole(data, "version", 1, default=FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise MetaFault(f"has format version {version}; this tool reads up to "
                            f"{FORMAT_VERSION} (upgrade mstrain to read it)")
        steps_per_epoch = _whole(data, "steps_per_epoch", 1, MAX_TOTAL_STEPS)
        epoch = _whole(data, "epoch", 0)
        step_in_epoch = _whole(data, "step_in_epoch", 0, steps_per_epoch - 1, default=0)
        global_step = _whole(data, "global_step", 0, MAX_TOTAL_STEPS)
        if global_step != epoch * steps_per_epoch + step_in_epoch:
            raise MetaFault(f"field 'global_step' is {global_step}, but epoch {epoch} of "
                            f"{steps_per_epoch} steps plus {step_in_epoch} steps is "
                            f"{epoch * steps_per_epoch + step_in_epoch}")
        metrics = _mapping(data, "metrics")
        for name, value in metrics.items():
            if value is not None and not _is_number(value):
                raise MetaFault(f"field 'metrics.{name}' is {shown(value)}, not a number")
        saved_at = data.get("saved_at", "")
        if not isinstance(saved_at, str) or len(saved_at) > 64:
            raise MetaFault(f"field 'saved_at' is {shown(saved_at)}, not a time stamp")
        callbacks = _mapping(data, "callbacks")
        for key, state in callbacks.items():
            if not isinstance(state, dict):
                raise MetaFault(f"field 'callbacks.{key}' is {shown(state)}, not a mapping")
        epoch_stats = _check_epoch_stats(_mapping(data, "epoch_stats"))
        best = _check_best(_mapping(data, "best"))
        known = {f.name for f in fields(cls)} | {f.name for f in fields(RunRecord)}
        extra = {k: v for k, v in data.items() if k not in known | {"format", "version"}}
        return cls(epoch=epoch, step_in_epoch=step_in_epoch, global_step=global_step,
                   steps_per_epoch=steps_per_epoch, metrics=metrics, saved_at=saved_at,
                   callbacks=callbacks, epoch_stats=epoch_stats, best=best,
                   run=_run_record(data), extra=extra)


def damaged(source: str, what: str) -> CheckpointError:
    """The message for a bundle whose contents cannot be trusted."""
    return CheckpointError(f"Checkpoint {source!r} is damaged: {what}. Do not use it; --resume "
                           "auto falls back to the previous good checkpoint of the run.")


def _run_record(data: dict[str, Any]) -> RunRecord | None:
    if "config" not in data:
        return None
    config = _mapping(data, "config")
    net = config.get("net", "lenet")
    if not isinstance(net, str) or not net or len(net) > 4096:
        raise MetaFault(f"field 'config.net' is {shown(net)}, not a network name")
    _whole(config, "num_classes", 0, 10_000, default=10, prefix="config.")
    fingerprint = data.get("fingerprint", "")
    if not isinstance(fingerprint, str) or len(fingerprint) > 128:
        raise MetaFault(f"field 'fingerprint' is {shown(fingerprint)}, not a fingerprint")
    return RunRecord(config=config, fingerprint=fingerprint,
                     fingerprint_fields=_mapping(data, "fingerprint_fields"),
                     train_count=_whole(data, "train_count", 1, _BIG),
                     epochs_planned=_whole(data, "epochs_planned", 1, _BIG),
                     workers=_whole(data, "workers", 1, 65_536, default=1),
                     data=_check_data(_mapping(data, "data")))


def _check_data(record: dict[str, Any]) -> dict[str, Any]:
    """The data record of a run: the source, the kind of images, their channels and side, the
    class names and the normalisation, each checked."""
    from trainer.limits import CLASS_NAME_MAX_CHARS, MAX_CLASSES, SOURCE_MAX_SIDE

    if not record:
        return {}
    kind = record.get("kind", "digits")
    if kind not in ("digits", "natural"):
        raise MetaFault(f"field 'data.kind' is {shown(kind)}, not digits or natural")
    channels = _whole(record, "channels", 1, 3, default=1, prefix="data.")
    if "num_classes" in record:
        _whole(record, "num_classes", 2, MAX_CLASSES, prefix="data.")
    if channels == 2:
        raise MetaFault("field 'data.channels' is 2, not 1 or 3")
    if "image_size" in record:
        _whole(record, "image_size", 1, SOURCE_MAX_SIDE, prefix="data.")
    names = record.get("class_names")
    if names is not None and (not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASSES
                              or not all(isinstance(n, str) and 0 < len(n) <= CLASS_NAME_MAX_CHARS
                                         for n in names)):
        raise MetaFault(f"field 'data.class_names' is {shown(names)}, not a list of class names")
    for key in ("mean", "std"):
        values = record.get(key)
        if values is not None and (not isinstance(values, list) or len(values) != channels
                                   or not all(_is_number(v) and math.isfinite(v) and
                                              (v > 0 if key == "std" else 0 <= v <= 1)
                                              for v in values)):
            raise MetaFault(f"field 'data.{key}' is {shown(values)}, not {channels} number(s) "
                            f"{'above 0' if key == 'std' else 'from 0 to 1'}")
    return record


def _check_epoch_stats(stats: dict[str, Any]) -> dict[str, Any]:
    if not stats:
        return {}
    epoch = stats.get("epoch")
    if epoch is not None and not (_is_whole(epoch) and 0 <= epoch <= _BIG):
        raise MetaFault(f"field 'epoch_stats.epoch' is {shown(epoch)}, not an epoch number")
    totals = stats.get("totals")
    if totals is not None:
        if not isinstance(totals, dict):
            raise MetaFault(f"field 'epoch_stats.totals' is {shown(totals)}, not a mapping")
        for key in ("loss_sum", "correct", "samples", "steps", "overflows"):
            value = totals.get(key, 0.0)
            if not _is_number(value):
                raise MetaFault(f"field 'epoch_stats.totals.{key}' is {shown(value)}, not a "
                                "number")
    return stats


def _check_best(best: dict[str, Any]) -> dict[str, Any]:
    name = best.get("file")
    if name is not None and not plain_file_name(name):
        raise MetaFault(f"field 'best.file' is {shown(name)}, not a file name in the "
                        "checkpoint folder")
    value = best.get("value")
    if value is not None and not _is_number(value):
        raise MetaFault(f"field 'best.value' is {shown(value)}, not a number")
    return best


def plain_file_name(name: Any) -> bool:
    """Whether ``name`` is a file name without a folder part (so it stays where it is read)."""
    return (isinstance(name, str) and 0 < len(name) <= 255 and name not in (".", "..")
            and not any(c in name for c in "/\\\0"))


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (isinstance(value, int) or not math.isinf(value) or True))


def _whole(data: dict[str, Any], key: str, low: int, high: int = _BIG, *,
           default: int | None = None, prefix: str = "") -> int:
    if key not in data:
        if default is None:
            raise MetaFault(f"lacks the field '{prefix}{key}'")
        return default
    value = data[key]
    if not _is_whole(value):
        raise MetaFault(f"field '{prefix}{key}' is {shown(value)} ({type(value).__name__}), not a "
                        "whole number")
    if not low <= value <= high:
        raise MetaFault(f"field '{prefix}{key}' is {value}, outside {low}..{high}")
    return value


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MetaFault(f"field '{key}' is {shown(value)} ({type(value).__name__}), not a "
                        "mapping")
    return value

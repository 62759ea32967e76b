"""The experiment-tracking interface: one callback decides what is recorded and when; a backend
(TensorBoard, MLflow, your own) only says how.

A :class:`TrackingLogger` records, at the global step they belong to:

- every ``log_every`` steps: ``step/loss`` (that step's loss) and ``step/lr``, and
  ``step/loss_scale`` when the step scales its loss;
- every completed epoch: the epoch's row of the history under TensorBoard-style sections,
  ``train/loss``, ``train/accuracy``, ``train/lr``, ``train/epoch_time``, with loss scaling
  ``train/loss_scale`` and ``train/overflow_steps``,
  ``train/samples_per_second``, ``val/loss``, ``val/accuracy`` (``val/<metric>`` for each
  validation metric) and ``epoch``;
- at the end (:meth:`TrackingLogger.finish`): the test scores (``test/accuracy``, ``test/loss``,
  ``test/best_accuracy``, ...), the files worth keeping (``history.png`` as an image, the
  configuration, the history, the best checkpoint), and how the run ended.

Steps are global steps counted across resumes, so a resumed run continues the same record: when
training starts at step ``S > 0`` the backend's :meth:`~TrackingLogger.rewind` forgets anything
recorded after ``S`` (written before a crash and about to be recorded again, identically, since
resume is exact), and the hyperparameters are recorded once, when the run first starts. A
tracker that joins a run later (``--report-to`` added on resume: the checkpoint holds no state
of it) records the hyperparameters and the earlier epochs' rows of the run's history first, at
their global steps (:meth:`~TrackingLogger.backfill`).

To send the record somewhere else, subclass :class:`TrackingLogger` and implement
``log_hparams``, ``log_metrics``, ``log_artifact`` and ``finalize`` (see ``docs/tracking.md``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from callbacks.base import StatefulCallback
from callbacks.stats import EpochStats, current_lr, launch_steps, loss_scale, loss_value, reached
from trainer.errors import redact

logger = logging.getLogger("mstrain")

# The metrics a hyperparameter table shows next to each run's values (TensorBoard's HPARAMS).
SUMMARY_METRICS = ("val/accuracy", "val/loss", "test/accuracy", "test/loss")
# What :meth:`TrackingLogger.recorded` is asked about the hyperparameters.
HPARAMS_TAG = "_hparams_/session_start_info"
FINISHED, STOPPED, FAILED = "FINISHED", "KILLED", "FAILED"

def metric_name(column: str) -> str:
    """The tracked name of a history column: ``val_loss`` is ``val/loss``, ``test_accuracy``
    ``test/accuracy``, ``epoch`` stays, anything else is a training figure (``train/loss``)."""
    if column == "epoch":
        return column
    for prefix in ("val", "test"):
        if column.startswith(prefix + "_"):
            return f"{prefix}/{column[len(prefix) + 1:]}"
    return f"train/{column}"


def finite_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of ``values`` as floats (trackers store no NaN or strings)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
                value):
            out[key] = float(value)
    return out


def flat_params(config: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """A configuration as scalar hyperparameters: lists and mappings become their text, and
    text shows no credentials (:func:`redact`)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        if isinstance(value, (bool, int, float)):
            out[key] = value
        else:
            out[key] = redact(str(value))
    return out


class TrackingLogger(StatefulCallback):
    """Base of the experiment trackers: the callback wiring, shared by every backend.

    Subclasses implement four methods; the base calls them from ``Model``'s hooks and from
    :meth:`finish`:

    - ``log_hparams(params, metrics)``: the run's hyperparameters (scalars) and the names of the
      metrics a comparison table should show; called once, when a run first starts.
    - ``log_metrics(metrics, step)``: numbers by name at a global step.
    - ``log_artifact(path, kind)``: a file of the run; ``kind`` is ``"image"`` for a PNG figure,
      ``"checkpoint"`` or ``"file"``.
    - ``finalize(status)``: the run has ended (``"FINISHED"``, ``"KILLED"`` when stopped to be
      resumed, ``"FAILED"``); flush and close.

    and may implement ``rewind(step)`` (forget what was recorded after ``step``; called when a
    resumed run starts there), ``recorded(tag, step)`` (whether the record already holds a
    value, so a backfill skips it), ``state_dict``/``check_state``/``load_state_dict`` (what a
    resumed run needs, such as a run id; saved in every checkpoint bundle; an override of
    ``load_state_dict`` calls the base's) and ``close()``.

    Args:
        log_every: Record ``step/loss`` and ``step/lr`` every N steps of an epoch; 0 records only
            epochs. Defaults to `100`.
        hparams: The hyperparameters to record. Defaults to `None` (none).
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None`.
        history: The run's :class:`~callbacks.history.History` (anything with ``rows``): when a
            resumed run's checkpoint holds no state of this tracker, its restored rows are
            recorded first. Defaults to `None` (no backfill).
        managed: The owner ends the record: the end of ``Model.fit`` does not, and the owner
            calls :meth:`finish` once it has scored the test split (``Trainer`` passes true).
            Defaults to `False`.
        step: The global step the record stands at before training reports one: where
            :meth:`finish` puts its metrics when nothing was trained (an evaluation's results
            go at the step of the bundle it scored). Defaults to `0`.
    """

    summary_metrics: Sequence[str] = SUMMARY_METRICS
    label = ""  # how messages name the tracker; the class name when empty

    def __init__(self, log_every: int = 100, hparams: Mapping[str, Any] | None = None,
                 stats: EpochStats | None = None, history: Any = None, managed: bool = False,
                 step: int = 0) -> None:
        super().__init__(stats)
        if not isinstance(log_every, int) or isinstance(log_every, bool) or log_every < 0:
            raise ValueError(f"{type(self).__name__}: 'log_every' is {log_every!r}; it must be a "
                             "whole number >= 0.")
        self.log_every = log_every
        self.hparams = flat_params(hparams or {})
        self.history = history
        self.managed = managed
        self.last_step = step
        # Whether the record holds the run from its first step: true once this tracker has
        # started a run, backfilled one it joined, or been given its state from a bundle.
        self.complete_record = False
        self._train_start = self._last_step_end = 0.0
        self._finished = False

    # ------------------------------------------------- what a backend implements
    def log_hparams(self, params: Mapping[str, Any], metrics: Sequence[str]) -> None:
        raise NotImplementedError

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def log_artifact(self, path: Path, kind: str = "file") -> None:
        raise NotImplementedError

    def finalize(self, status: str) -> None:
        raise NotImplementedError

    def rewind(self, step: int) -> None:
        """Forgets anything recorded after ``step`` (a resumed run starts there). The default
        keeps everything."""

    def recorded(self, tag: str, step: int) -> bool:
        """Whether the record already holds ``tag`` at ``step`` (asked by :meth:`backfill`,
        after :meth:`rewind`). The default: nothing is there."""
        return False

    # ------------------------------------------------------------------ state
    def reset_state(self) -> None:
        self.complete_record = True  # a new run: recorded from its first step on

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint bundle; its presence tells a resumed run that this tracker
        has recorded the run from its start (or has backfilled it)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a saved state: the tracker continues a record it has kept."""
        super().load_state_dict(state)
        self.complete_record = True

    # --------------------------------------------------------------- backfill
    def backfill(self, start: int, steps_per_epoch: int) -> list[int]:
        """Records what a run did before this tracker joined it at step ``start``: the
        hyperparameters (at step 0) and every epoch row of :attr:`history` up to ``start``
        (epoch ``e`` at step ``e * steps_per_epoch``), skipping what :meth:`recorded` says is
        there; returns the epochs recorded."""
        if not self.recorded(HPARAMS_TAG, 0):
            self.log_hparams(self.hparams, list(self.summary_metrics))
        epochs = []
        for row in getattr(self.history, "rows", None) or []:
            epoch = row.get("epoch")
            if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
                continue
            step = epoch * steps_per_epoch
            if step > start:
                continue
            values = finite_metrics({metric_name(k): v for k, v in row.items()
                                     if not k.startswith("test_")})
            values = {k: v for k, v in values.items() if not self.recorded(k, step)}
            if values:
                self.log_metrics(values, step)
                epochs.append(epoch)
        return epochs

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, run_context) -> None:
        super().on_train_begin(run_context)
        cb_params = run_context.original_args()
        start = self.stats.global_step(cb_params)  # 0 for a new run, the bundle's for a resume
        self.last_step, self._finished = start, False
        if start == 0:
            self.log_hparams(self.hparams, list(self.summary_metrics))
            return
        self.rewind(start)
        if not self.complete_record and self.history is not None:
            self._join(start, cb_params.batch_num)
            self.complete_record = True

    def _join(self, start: int, steps_per_epoch: int) -> None:
        """Backfills a record this tracker has not kept from the start, and says what it lacks."""
        epochs = self.backfill(start, steps_per_epoch)
        done = (f"epochs {epochs[0]}-{epochs[-1]}" if len(epochs) > 1
                else f"epoch {epochs[0]}" if epochs else "no earlier epoch")
        logger.info("%s: joined the run at step %d; recorded the hyperparameters and %s from the "
                    "run's history (step/loss, step/lr and train/samples_per_second before step "
                    "%d were not kept, so the record lacks them).",
                    self.label or type(self).__name__, start, done, start)

    def on_train_epoch_begin(self, run_context) -> None:
        super().on_train_epoch_begin(run_context)
        self._train_start = self._last_step_end = time.perf_counter()

    def on_train_step_end(self, run_context) -> None:
        super().on_train_step_end(run_context)
        cb_params = run_context.original_args()
        self._last_step_end = time.perf_counter()
        if not self.log_every:
            return
        step_in_epoch = self.stats.step_in_epoch(cb_params)
        if reached(step_in_epoch, self.log_every, launch_steps(cb_params)):
            step = self.last_step = self.stats.global_step(cb_params)
            values = {"step/loss": loss_value(cb_params.net_outputs)}
            lr = current_lr(cb_params)
            if lr is not None:
                values["step/lr"] = lr
            scale = loss_scale(cb_params)
            if scale is not None:
                values["step/loss_scale"] = scale
            self.log_metrics(finite_metrics(values), step)

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        if not self.stats.epoch_complete(cb_params):
            return  # stopped part-way: the epoch is recorded when the resumed run completes it
        row = dict(self.stats.epoch_logs(cb_params))
        seconds = self._last_step_end - self._train_start
        samples = self.stats.train_summary(cb_params).get("samples", 0)
        if seconds > 0 and samples:
            row["samples_per_second"] = samples / seconds
        step = self.last_step = self.stats.global_step(cb_params)
        self.log_metrics(finite_metrics({metric_name(k): v for k, v in row.items()}), step)

    def on_train_end(self, run_context) -> None:
        if not self.managed:
            self.finish(FINISHED)

    # ------------------------------------------------------------------- end
    def finish(self, status: str = FINISHED, metrics: Mapping[str, float] | None = None,
               artifacts: Iterable[tuple[Path, str]] = ()) -> None:
        """Records the final ``metrics`` at the last step and the ``artifacts`` (``(path,
        kind)``, those that exist), then ends the record with ``status``; once per run."""
        if self._finished:
            return
        self._finished = True
        try:
            if metrics:
                self.log_metrics(finite_metrics(metrics), self.last_step)
            for path, kind in artifacts:
                if Path(path).is_file():
                    self.log_artifact(Path(path), kind)
        finally:
            self.finalize(status)

"""Save checkpoint bundles: periodic, best-by-metric, and a ``latest`` pointer."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from callbacks.base import state_value
from callbacks.monitor import MonitorCallback
from callbacks.stats import EpochStats, launch_steps, reached
from trainer.checkpoint.meta import BundleMeta, RunRecord, plain_file_name
from trainer.checkpoint.store import BEST, CheckpointStore, periodic_name
from trainer.errors import ConfigError

logger = logging.getLogger("mstrain")


class ModelCheckpoint(MonitorCallback):
    """Saves bundles of ``Model.train_network`` every N epochs and/or steps, and the best one.

    Each bundle (see ``trainer.checkpoint``) holds the weights, optimizer moments, global step and
    learning-rate array, plus metadata: epoch, step, the epoch's metrics, what ``meta`` returns
    (the ``Trainer`` adds the configuration and its fingerprint) and the callbacks' states that
    ``states`` returns when the bundle is written. Files are written atomically and
    ``latest.json`` moves only after a bundle is complete. The newest ``keep_last`` periodic
    bundles are kept, counting those from earlier processes of the same run. A non-finite
    training loss is never saved.

    Args:
        directory: The checkpoint folder.
        every_n_epochs: Save at the end of every N-th epoch; 0 disables. Defaults to `1`.
        every_n_steps: Save every N global steps; 0 disables. Defaults to `0`.
        keep_last: Periodic bundles to keep; 0 keeps all. Defaults to `3`.
        save_best: Also keep ``best.ckpt`` by ``monitor``. Defaults to `False`.
        monitor: Metric for the best bundle. Defaults to `"val_loss"`.
        mode: ``"min"`` or ``"max"``. Defaults to `"min"`.
        min_delta: Smallest change that counts as better. Defaults to `0.0`.
        states: Callable returning the callbacks' states by state key, asked each time a bundle
            is written (``Trainer`` passes its own, which holds every callback of the run;
            :func:`trainer.checkpoint.states.collect_states` makes one for a plain ``Model``).
            Defaults to `None`: this callback's own state only.
        meta: Callable returning, for each bundle, the run's set-up (a
            ``trainer.checkpoint.meta.RunRecord``, as ``Trainer`` passes) or a mapping of extra
            JSON fields of your own. Defaults to `None`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None`.
        hint: How the metric is chosen where the callback was made (see
            :class:`~callbacks.monitor.MonitorCallback`). Defaults to `None`.

    Example:
        >>> ckpt = ModelCheckpoint("runs/demo/checkpoints", keep_last=2, save_best=True,
        ...                        monitor="val_accuracy", mode="max")
        >>> model.fit(5, train, valid, callbacks=[ckpt])  # doctest: +SKIP
    """

    def __init__(self, directory: str | Path, every_n_epochs: int = 1, every_n_steps: int = 0,
                 keep_last: int = 3, save_best: bool = False, monitor: str = "val_loss",
                 mode: str = "min", min_delta: float = 0.0,
                 states: Callable[[], dict[str, Any]] | None = None,
                 meta: Callable[[], RunRecord | dict[str, Any]] | None = None,
                 stats: EpochStats | None = None, hint: str | None = None) -> None:
        super().__init__(monitor, mode, min_delta, stats, hint)
        for key, value in (("every_n_epochs", every_n_epochs), ("every_n_steps", every_n_steps),
                           ("keep_last", keep_last)):
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"ModelCheckpoint: '{key}' is {value!r}; it must be a whole "
                                  "number >= 0.")
        self.store = CheckpointStore(directory)
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.keep_last, self.save_best = keep_last, save_best
        self.states = states or self._own_state
        self.meta = meta
        self.best_path: Path | None = None
        self.last_saved_step = -1
        self.last_path: Path | None = None
        self.save_seconds: list[float] = []
        self._step_save_due = False

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, run_context) -> None:
        super().on_train_begin(run_context)
        self._step_save_due = False
        for path in self.store.remove_temporaries():
            logger.info("Removed %s, left half-written by an interrupted run.", path.name)

    def on_train_step_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        super().on_train_step_end(run_context)
        global_step = self.stats.global_step(cb_params)
        if reached(global_step, self.every_n_steps, launch_steps(cb_params)):
            if global_step % cb_params.batch_num == 0:
                # The epoch's last step: saved at epoch end instead, after validation and the
                # history, so the bundle records a complete epoch.
                self._step_save_due = True
            else:
                self._save_periodic(cb_params, kind="step")

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        if not self.stats.epoch_complete(cb_params):
            self._save_periodic(cb_params, kind="step")  # stopped part-way (e.g. Ctrl-C)
            return
        logs = self.stats.epoch_logs(cb_params)
        due = self.every_n_epochs and cb_params.cur_epoch_num % self.every_n_epochs == 0
        if due or self._step_save_due:
            self._save_periodic(cb_params, kind="epoch", logs=logs)
        self._step_save_due = False
        if self.save_best and self._finite(cb_params):
            value = self.get_monitor_value(logs)
            if self.is_improvement(value):
                self.best = value
                self.best_path = self.store.save(
                    cb_params.train_network, BEST, self._meta(cb_params, logs, complete=True),
                    latest=False)
                logger.info("New best %s %.4f at epoch %d: saved %s", self.monitor, value,
                            cb_params.cur_epoch_num, self.best_path)

    def on_train_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        if self._global_step(cb_params) != self.last_saved_step:
            complete = self.stats.epoch_complete(cb_params)
            self._save_periodic(cb_params, kind="epoch" if complete else "step",
                                logs=self.stats.epoch_logs(cb_params) if complete else None)

    # ---------------------------------------------------------------- helpers
    def _global_step(self, cb_params) -> int:
        return self.stats.global_step(cb_params)

    def _finite(self, cb_params) -> bool:
        summary = self.stats.train_summary(cb_params)
        return summary["steps"] == 0 or math.isfinite(summary["loss"])

    def _meta(self, cb_params, logs: dict[str, Any] | None, complete: bool) -> BundleMeta:
        summary = self.stats.train_summary(cb_params)
        step_in_epoch = 0 if complete else int(summary["steps"])
        epoch = cb_params.cur_epoch_num if complete else cb_params.cur_epoch_num - 1
        best = self.best if math.isfinite(self.best) else None
        return BundleMeta(
            epoch=epoch, step_in_epoch=step_in_epoch, global_step=self._global_step(cb_params),
            steps_per_epoch=cb_params.batch_num,
            metrics={k: v for k, v in (logs or {}).items() if k != "epoch"},
            saved_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
            callbacks=self.states(),
            epoch_stats=self.stats.state_dict(),
            best={"monitor": self.monitor, "value": best,
                  "file": self.best_path.name if self.best_path else None},
            **self._extra())

    def _extra(self) -> dict[str, Any]:
        """The ``meta`` callable's part: the run's set-up, or extra fields of the user's."""
        if self.meta is None:
            return {}
        given = self.meta()
        if isinstance(given, RunRecord):
            return {"run": given}
        reserved = {f.name for f in fields(BundleMeta)} | {f.name for f in fields(RunRecord)}
        clash = sorted(set(given) & (reserved | {"format", "version"}))
        if clash:
            raise ConfigError(f"ModelCheckpoint: 'meta' returned the reserved key(s) "
                              f"{', '.join(clash)}; name your fields otherwise.")
        return {"extra": dict(given)}

    def _save_periodic(self, cb_params, kind: str, logs: dict[str, Any] | None = None) -> None:
        step = self._global_step(cb_params)
        if step == self.last_saved_step or step == 0:
            return
        if not self._finite(cb_params):
            logger.warning("Not saving a checkpoint at global step %d: the training loss is not "
                           "finite, so the weights are not worth keeping.", step)
            return
        complete = kind == "epoch"
        meta = self._meta(cb_params, logs, complete)
        name = periodic_name(kind, meta.epoch if complete else cb_params.cur_epoch_num, step)
        start = time.perf_counter()
        self.last_path = self.store.save(cb_params.train_network, name, meta)
        self.save_seconds.append(time.perf_counter() - start)
        self.last_saved_step = step
        self.store.prune(self.keep_last, protect=[self.last_path])

    # ------------------------------------------------------------------ state
    def _own_state(self) -> dict[str, Any]:
        return {self.state_key: self.state_dict()}

    def reset_state(self) -> None:
        super().reset_state()
        self.best_path, self.last_path, self.last_saved_step = None, None, -1

    def state_dict(self) -> dict[str, Any]:
        """The best value and file; retention is read from the folder itself."""
        return {**super().state_dict(),
                "best_file": self.best_path.name if self.best_path else None}

    @classmethod
    def check_state(cls, state: dict[str, Any]) -> None:
        """Refuses a saved state of the wrong shape (``ValueError``)."""
        super().check_state(state)
        best_file = state_value(state, "best_file", "str")
        if best_file is not None and not plain_file_name(best_file):
            raise ValueError(f"'best_file' is {best_file!r:.60}, not a file name")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; missing keys keep the defaults."""
        super().load_state_dict(state)
        best_file = state.get("best_file")
        self.best_path = self.store.folder / best_file if best_file else None

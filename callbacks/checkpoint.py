"""Save checkpoint bundles: periodic, best-by-metric, and a ``latest`` pointer."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from callbacks.monitor import MonitorCallback
from callbacks.stats import EpochStats, find_optimizer, launch_steps, reached
from trainer.checkpoint import BEST, CheckpointStore
from trainer.errors import ConfigError

logger = logging.getLogger("mstrain")


def collect_states(callbacks: Sequence[Any]) -> dict[str, Any]:
    """``state_dict()`` of every callback that has one, keyed by class name (``#2`` for repeats)."""
    states: dict[str, Any] = {}
    for cb in callbacks:
        if callable(getattr(cb, "state_dict", None)):
            key, n = type(cb).__name__, 2
            while key in states:
                key, n = f"{type(cb).__name__}#{n}", n + 1
            states[key] = cb.state_dict()
    return states


def restore_states(callbacks: Sequence[Any], states: dict[str, Any]) -> list[str]:
    """Feeds :func:`collect_states` output back; returns the keys that found a callback."""
    restored, seen = [], {}
    for cb in callbacks:
        if not callable(getattr(cb, "load_state_dict", None)):
            continue
        name = type(cb).__name__
        seen[name] = seen.get(name, 0) + 1
        key = name if seen[name] == 1 else f"{name}#{seen[name]}"
        if key in states:
            cb.load_state_dict(states[key])
            restored.append(key)
    return restored


class ModelCheckpoint(MonitorCallback):
    """Saves bundles of ``Model.train_network`` every N epochs and/or steps, and the best one.

    Each bundle (see ``trainer.checkpoint``) holds the weights, optimizer moments, global step and
    learning-rate array, plus metadata: epoch, step, the epoch's metrics, what ``meta`` returns
    (the ``Trainer`` adds the configuration and its fingerprint) and the states of
    ``state_callbacks``. Files are written atomically and ``latest.json`` moves only after a
    bundle is complete. The newest ``keep_last`` periodic bundles are kept, counting those from
    earlier processes of the same run. A non-finite training loss is never saved.

    Args:
        directory: The checkpoint folder.
        every_n_epochs: Save at the end of every N-th epoch; 0 disables. Defaults to `1`.
        every_n_steps: Save every N global steps; 0 disables. Defaults to `0`.
        keep_last: Periodic bundles to keep; 0 keeps all. Defaults to `3`.
        save_best: Also keep ``best.ckpt`` by ``monitor``. Defaults to `False`.
        monitor: Metric for the best bundle. Defaults to `"val_loss"`.
        mode: ``"min"`` or ``"max"``. Defaults to `"min"`.
        min_delta: Smallest change that counts as better. Defaults to `0.0`.
        state_callbacks: Callbacks whose ``state_dict()`` goes into each bundle. Defaults to `()`.
        meta: Callable returning extra metadata for each bundle. Defaults to `None`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None`.

    Example:
        >>> ckpt = ModelCheckpoint("runs/demo/checkpoints", keep_last=2, save_best=True,
        ...                        monitor="val_accuracy", mode="max")
        >>> model.fit(5, train, valid, callbacks=[ckpt])  # doctest: +SKIP
    """

    def __init__(self, directory: str | Path, every_n_epochs: int = 1, every_n_steps: int = 0,
                 keep_last: int = 3, save_best: bool = False, monitor: str = "val_loss",
                 mode: str = "min", min_delta: float = 0.0,
                 state_callbacks: Sequence[Any] = (),
                 meta: Callable[[], dict[str, Any]] | None = None,
                 stats: EpochStats | None = None) -> None:
        super().__init__(monitor, mode, min_delta, stats)
        for key, value in (("every_n_epochs", every_n_epochs), ("every_n_steps", every_n_steps),
                           ("keep_last", keep_last)):
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"ModelCheckpoint: '{key}' is {value!r}; it must be a whole "
                                  "number >= 0.")
        self.store = CheckpointStore(directory)
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.keep_last, self.save_best = keep_last, save_best
        self.state_callbacks = list(state_callbacks)
        self.meta = meta
        self.best_path: Path | None = None
        self.last_saved_step = -1
        self.last_path: Path | None = None
        self.save_seconds: list[float] = []
        self._step_base = 0
        self._step_save_due = False
        self._restored = False

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, run_context) -> None:
        cb_params = run_context.original_args()
        if not self._restored:
            self.reset_best()
        self._restored = False
        for path in self.store.remove_temporaries():
            logger.info("Removed %s, left half-written by an interrupted run.", path.name)
        self._step_base = self._global_step(cb_params) - cb_params.cur_step_num

    def on_train_step_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        self.stats.on_step(cb_params)
        global_step = self._step_base + cb_params.cur_step_num
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
    @staticmethod
    def _global_step(cb_params) -> int:
        opt = find_optimizer(cb_params)
        if opt is None:
            return cb_params.cur_step_num
        return int(opt.global_step.asnumpy().reshape(-1)[0])

    def _finite(self, cb_params) -> bool:
        summary = self.stats.train_summary(cb_params)
        return summary["steps"] == 0 or math.isfinite(summary["loss"])

    def _meta(self, cb_params, logs: dict[str, Any] | None, complete: bool) -> dict[str, Any]:
        summary = self.stats.train_summary(cb_params)
        step_in_epoch = 0 if complete else int(summary["steps"])
        epoch = cb_params.cur_epoch_num if complete else cb_params.cur_epoch_num - 1
        meta = {"epoch": epoch, "step_in_epoch": step_in_epoch,
                "global_step": self._global_step(cb_params),
                "steps_per_epoch": cb_params.batch_num,
                "metrics": {k: v for k, v in (logs or {}).items() if k != "epoch"},
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "callbacks": collect_states([*(c for c in self.state_callbacks if c is not self),
                                             self]),
                "epoch_stats": self.stats.state_dict(),
                "best": {"monitor": self.monitor, "value": self.best,
                         "file": self.best_path.name if self.best_path else None}}
        if self.meta is not None:
            meta.update(self.meta())
        return meta

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
        epoch = meta["epoch"] if complete else cb_params.cur_epoch_num
        name = f"{kind}-{epoch:04d}-gs{step:08d}.ckpt"
        start = time.perf_counter()
        self.last_path = self.store.save(cb_params.train_network, name, meta)
        self.save_seconds.append(time.perf_counter() - start)
        self.last_saved_step = step
        self.store.prune(self.keep_last, protect=[self.last_path])

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The best value and file; retention is read from the folder itself."""
        return {**self.monitor_state(),
                "best_file": self.best_path.name if self.best_path else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; missing keys keep the defaults."""
        self.load_monitor_state(state)
        best_file = state.get("best_file")
        self.best_path = self.store.folder / best_file if best_file else None
        self._restored = True

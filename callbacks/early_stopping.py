"""Stop when a monitored metric stops improving."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from callbacks.base import state_value
from callbacks.monitor import PatienceCallback
from callbacks.stats import EpochStats

logger = logging.getLogger("mstrain")


class EarlyStopping(PatienceCallback):
    """Stops training after ``patience`` epochs without improvement of ``monitor``.

    Args:
        monitor: Metric to watch. Defaults to `"val_loss"`.
        mode: ``"min"`` or ``"max"``. Defaults to `"min"`.
        patience: Epochs without improvement before stopping. Defaults to `3`.
        min_delta: Smallest change that counts as an improvement. Defaults to `0.0`.
        restore_best_weights: When stopping, load the weights of the best epoch back into the
            network (kept as a host copy of the network's trainable parameters). Defaults to
            `False`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None`.
        hint: How the metric is chosen where the callback was made (see
            :class:`~callbacks.monitor.MonitorCallback`). Defaults to `None`.

    Example:
        >>> stop = EarlyStopping(monitor="val_accuracy", mode="max", patience=2)
        >>> model.fit(50, train, valid, callbacks=[stop])  # doctest: +SKIP
        >>> stop.stopped_epoch  # doctest: +SKIP
        7
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 3,
                 min_delta: float = 0.0, restore_best_weights: bool = False,
                 stats: EpochStats | None = None, hint: str | None = None) -> None:
        super().__init__(patience, monitor, mode, min_delta, stats, hint)
        self.restore_best_weights = restore_best_weights
        self.best_epoch = 0
        self.stopped_epoch = 0
        self._best_weights: dict[str, np.ndarray] | None = None

    def reset_state(self) -> None:
        super().reset_state()
        self.best_epoch, self.stopped_epoch = 0, 0

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        if not self.stats.epoch_complete(cb_params):
            return
        if self.observe(self.get_monitor_value(self.stats.epoch_logs(cb_params))):
            self.best_epoch = cb_params.cur_epoch_num
            if self.restore_best_weights:
                self._best_weights = {p.name: p.asnumpy().copy()
                                      for p in cb_params.network.trainable_params()}
            return
        if self.patience_spent:
            self.stopped_epoch = cb_params.cur_epoch_num
            logger.info("Early stopping: %s has not improved for %d epoch(s) (best %.4f at epoch "
                        "%d).", self.monitor, self.wait, self.best, self.best_epoch)
            if self.restore_best_weights and self._best_weights is not None:
                self._restore(cb_params.network)
            run_context.request_stop()

    def _restore(self, network) -> None:
        import mindspore as ms

        for param in network.trainable_params():
            if param.name in self._best_weights:
                param.set_data(ms.Tensor(self._best_weights[param.name]))
        logger.info("Restored the weights of epoch %d.", self.best_epoch)

    def state_dict(self) -> dict[str, Any]:
        """Counters and the best value (best weights live in the best checkpoint, not here)."""
        return {**super().state_dict(), "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch}

    @classmethod
    def check_state(cls, state: dict[str, Any]) -> None:
        """Refuses a saved state of the wrong shape (``ValueError``)."""
        super().check_state(state)
        for key in ("best_epoch", "stopped_epoch"):
            state_value(state, key, "int")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; missing keys keep the defaults."""
        super().load_state_dict(state)
        self.best_epoch = int(state.get("best_epoch", 0))
        self.stopped_epoch = int(state.get("stopped_epoch", 0))

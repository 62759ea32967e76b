"""Cut the learning rate when a monitored metric stops improving."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from callbacks.base import number_rows, state_value
from callbacks.monitor import PatienceCallback
from callbacks.stats import EpochStats, find_optimizer, lr_parameter, optimizer_step
from trainer.errors import ConfigError

logger = logging.getLogger("mstrain")


class ReduceLROnPlateau(PatienceCallback):
    """Multiplies the learning rate by ``factor`` after ``patience`` epochs without improvement.

    It works on top of any schedule: when the optimizer holds a per-step learning-rate array
    (as ``Trainer`` sets up), every remaining entry of the array is scaled, so the schedule keeps
    its shape at the lower level, the change costs nothing per step, and it is saved in the
    checkpoint with the array. A scalar rate is scaled in place.

    Args:
        monitor: Metric to watch. Defaults to `"val_loss"`.
        mode: ``"min"`` or ``"max"``. Defaults to `"min"`.
        factor: Multiplier in (0, 1). Defaults to `0.1`.
        patience: Epochs without improvement before a cut. Defaults to `2`.
        min_delta: Smallest change that counts as an improvement. Defaults to `0.0`.
        cooldown: Epochs to wait after a cut before counting again. Defaults to `0`.
        min_lr: The rate is never cut below this. Defaults to `0.0`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None`.
        hint: How the metric is chosen where the callback was made (see
            :class:`~callbacks.monitor.MonitorCallback`). Defaults to `None`.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", factor: float = 0.1,
                 patience: int = 2, min_delta: float = 0.0, cooldown: int = 0,
                 min_lr: float = 0.0, stats: EpochStats | None = None,
                 hint: str | None = None) -> None:
        super().__init__(patience, monitor, mode, min_delta, stats, hint)
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"ReduceLROnPlateau: 'factor' is {factor!r}; it must be between 0 "
                              "and 1 (exclusive).")
        self.factor, self.cooldown, self.min_lr = factor, cooldown, min_lr
        self.cooldown_left = 0
        self.reductions: list[dict[str, float]] = []

    def reset_state(self) -> None:
        super().reset_state()
        self.cooldown_left, self.reductions = 0, []

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        if not self.stats.epoch_complete(cb_params):
            return
        value = self.get_monitor_value(self.stats.epoch_logs(cb_params))
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if not self.observe(value, counting=self.cooldown_left == 0) and self.patience_spent:
            self._reduce(cb_params)
            self.wait, self.cooldown_left = 0, self.cooldown

    def _reduce(self, cb_params) -> None:
        import mindspore as ms

        lr_param = lr_parameter(find_optimizer(cb_params))
        rates = lr_param.asnumpy()
        step = optimizer_step(cb_params)  # the entries from here on are still to be applied
        if rates.ndim == 0:
            new = self._cut(rates).astype(rates.dtype)
            old_value, new_value = float(rates), float(new)
        else:
            new = rates.copy()
            new[step:] = self._cut(rates[step:])
            index = min(step, len(rates) - 1)
            old_value, new_value = float(rates[index]), float(new[index])
        lr_param.set_data(ms.Tensor(new, lr_param.dtype))
        self.reductions.append({"epoch": cb_params.cur_epoch_num, "from": old_value,
                                "to": new_value})
        logger.info("ReduceLROnPlateau: %s has not improved for %d epoch(s); learning rate "
                    "%.6g -> %.6g.", self.monitor, self.patience, old_value, new_value)

    def _cut(self, rates: np.ndarray) -> np.ndarray:
        """``rates * factor``, floored at ``min_lr``; rates already at or below it stay."""
        return np.where(rates > self.min_lr, np.maximum(rates * self.factor, self.min_lr), rates)

    def state_dict(self) -> dict[str, Any]:
        """Counters, best value and the cuts made (the rates themselves are in the checkpoint)."""
        return {**super().state_dict(), "cooldown_left": self.cooldown_left,
                "reductions": list(self.reductions)}

    @classmethod
    def check_state(cls, state: dict[str, Any]) -> None:
        """Refuses a saved state of the wrong shape (``ValueError``)."""
        super().check_state(state)
        state_value(state, "cooldown_left", "int")
        number_rows(state_value(state, "reductions", "list", []), "reductions")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; missing keys keep the defaults."""
        super().load_state_dict(state)
        self.cooldown_left = int(state.get("cooldown_left", 0))
        self.reductions = list(state.get("reductions", []))

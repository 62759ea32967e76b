"""The shared base of callbacks that watch one metric: best checkpoint, early stopping, plateau."""

from __future__ import annotations

import math
from typing import Any

from mindspore.train import Callback

from callbacks.stats import EpochStats
from trainer.errors import ConfigError

MODES = ("min", "max")


class MonitorCallback(Callback):
    """Owns ``monitor``, ``mode`` and ``min_delta`` and decides what counts as an improvement.

    Subclasses call :meth:`get_monitor_value` with the epoch's logs and :meth:`is_improvement`
    with the value; :attr:`best` holds the best value seen so far.

    Args:
        monitor: Name in the epoch logs, e.g. ``val_accuracy`` or ``val_loss``. Defaults to
            `"val_loss"`.
        mode: ``"min"`` when lower is better, ``"max"`` when higher is. Defaults to `"min"`.
        min_delta: An improvement must beat the best by more than this. Defaults to `0.0`.
        stats: Shared :class:`~callbacks.stats.EpochStats`; one is created when omitted.
            Defaults to `None`.

    Raises:
        ConfigError: ``mode`` is not min or max, or ``min_delta`` is negative.
    """

    launch_aware = True  # right when a step end covers several steps (stats.launch_steps)

    def __init__(self, monitor: str = "val_loss", mode: str = "min", min_delta: float = 0.0,
                 stats: EpochStats | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"{type(self).__name__}: 'mode' is {mode!r}; it must be 'min' or "
                              "'max'.")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ConfigError(f"{type(self).__name__}: 'min_delta' is {min_delta!r}; it must be "
                              "a number >= 0.")
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"{type(self).__name__}: 'monitor' is {monitor!r}; name a metric "
                              "such as 'val_loss' or 'val_accuracy'.")
        self.monitor, self.mode, self.min_delta = monitor, mode, float(min_delta)
        self.stats = stats or EpochStats()
        self.best = self._worst()

    def _worst(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    def reset_best(self) -> None:
        """Forgets the best value (a new run)."""
        self.best = self._worst()

    def is_improvement(self, value: float) -> bool:
        """Whether ``value`` beats :attr:`best` by more than ``min_delta`` (NaN never does)."""
        if value is None or math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def get_monitor_value(self, logs: dict[str, Any]) -> float:
        """The monitored value from ``logs``.

        Raises:
            ConfigError: the metric is not in the logs; the message lists the ones that are.
        """
        if self.monitor not in logs:
            available = ", ".join(sorted(k for k in logs if k != "epoch")) or "none"
            hint = (" Validation metrics (val_*) exist only when the run validates."
                    if self.monitor.startswith("val_") else "")
            raise ConfigError(f"{type(self).__name__} monitors {self.monitor!r}, but this epoch's "
                              f"metrics are: {available}.{hint} Choose one of those with "
                              "--monitor (or the callback's 'monitor' argument).")
        return float(logs[self.monitor])

    # Epoch-begin snapshots are shared; every monitor takes part so it also works on its own.
    def on_train_epoch_begin(self, run_context) -> None:
        self.stats.begin_epoch(run_context.original_args())

    def on_train_step_end(self, run_context) -> None:
        self.stats.on_step(run_context.original_args())

    def monitor_state(self) -> dict[str, Any]:
        """The base's part of ``state_dict``."""
        return {"best": self.best, "monitor": self.monitor, "mode": self.mode}

    def load_monitor_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`monitor_state`, keeping defaults for missing keys."""
        if state.get("monitor", self.monitor) == self.monitor and \
                state.get("mode", self.mode) == self.mode:
            self.best = float(state.get("best", self.best))

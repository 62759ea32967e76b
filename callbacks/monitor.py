"""The shared bases of callbacks that watch one metric: best checkpoint, early stopping, plateau,
pruning; and the patience counter of early stopping and plateau."""

from __future__ import annotations

import math
from typing import Any

from callbacks.base import StatefulCallback, state_value
from callbacks.stats import EpochStats
from trainer.errors import ConfigError

MODES = ("min", "max")


class MonitorCallback(StatefulCallback):
    """Owns ``monitor``, ``mode`` and ``min_delta`` and decides what counts as an improvement.

    Subclasses call :meth:`get_monitor_value` with the epoch's logs and :meth:`is_improvement`
    with the value; :attr:`best` holds the best value seen so far and is part of the saved state.
    A monitored metric that the run does not produce is an error at the first epoch end, listing
    the metrics it has.

    Args:
        monitor: Name in the epoch logs, e.g. ``val_accuracy`` or ``val_loss``. Defaults to
            `"val_loss"`.
        mode: ``"min"`` when lower is better, ``"max"`` when higher is. Defaults to `"min"`.
        min_delta: An improvement must beat the best by more than this. Defaults to `0.0`.
        stats: Shared :class:`~callbacks.stats.EpochStats`; one is created when omitted.
            Defaults to `None`.
        hint: How the user chooses the metric where the callback was made, for the message when
            it is missing. Defaults to `None`: the callback's ``monitor`` argument (``Trainer``
            passes ``--monitor``).

    Raises:
        ConfigError: ``mode`` is not min or max, or ``min_delta`` is negative.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min", min_delta: float = 0.0,
                 stats: EpochStats | None = None, hint: str | None = None) -> None:
        super().__init__(stats)
        if mode not in MODES:
            raise ConfigError(f"{type(self).__name__}: 'mode' is {mode!r}; it must be 'min' or "
                              "'max'.")
        if not isinstance(min_delta, (int, float)) or not min_delta >= 0 \
                or not math.isfinite(min_delta):
            raise ConfigError(f"{type(self).__name__}: 'min_delta' is {min_delta!r}; it must be "
                              "a finite number >= 0.")
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"{type(self).__name__}: 'monitor' is {monitor!r}; name a metric "
                              "such as 'val_loss' or 'val_accuracy'.")
        self.monitor, self.mode, self.min_delta = monitor, mode, float(min_delta)
        self.hint = hint or f"{type(self).__name__}(monitor=...)"
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
            hint = (" Validation metrics (val_*) exist only when the run validates, one per "
                    "metric given to Model (val_accuracy for 'accuracy', val_loss for 'loss')."
                    if self.monitor.startswith("val_") else "")
            raise ConfigError(f"{type(self).__name__} monitors {self.monitor!r}, but this epoch's "
                              f"metrics are: {available}.{hint} Choose one of those with "
                              f"{self.hint}.")
        return float(logs[self.monitor])

    def reset_state(self) -> None:
        self.reset_best()

    def state_dict(self) -> dict[str, Any]:
        """The best value, and what it is the best of."""
        return {"best": self.best, "monitor": self.monitor, "mode": self.mode}

    @classmethod
    def check_state(cls, state: dict[str, Any]) -> None:
        """Refuses a saved state of the wrong shape (``ValueError``)."""
        state_value(state, "best", "number")
        state_value(state, "monitor", "str")
        state_value(state, "mode", "str")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the best value when it watched the same metric the same way; missing keys
        keep the defaults."""
        self.check_state(state)
        if state.get("monitor", self.monitor) == self.monitor and \
                state.get("mode", self.mode) == self.mode:
            self.best = float(state.get("best", self.best))


class PatienceCallback(MonitorCallback):
    """A :class:`MonitorCallback` that counts the epochs without improvement (:attr:`wait`)
    against a ``patience``: the one counter of early stopping and plateau cuts.

    Args:
        patience: Epochs without improvement that use the patience up; a whole number >= 1.
        monitor, mode, min_delta, stats, hint: As for :class:`MonitorCallback`.

    Raises:
        ConfigError: ``patience`` is not a whole number >= 1, or a ``MonitorCallback`` argument
            is not allowed.
    """

    def __init__(self, patience: int, monitor: str = "val_loss", mode: str = "min",
                 min_delta: float = 0.0, stats: EpochStats | None = None,
                 hint: str | None = None) -> None:
        super().__init__(monitor, mode, min_delta, stats, hint)
        if not isinstance(patience, int) or patience < 1:
            raise ConfigError(f"{type(self).__name__}: 'patience' is {patience!r}; it must be a "
                              "whole number >= 1.")
        self.patience = patience
        self.wait = 0

    def observe(self, value: float, counting: bool = True) -> bool:
        """Takes an epoch's value: an improvement becomes :attr:`best` and clears the count;
        any other value adds one epoch to it while ``counting``. Returns whether it improved."""
        if self.is_improvement(value):
            self.best, self.wait = value, 0
            return True
        if counting:
            self.wait += 1
        return False

    @property
    def patience_spent(self) -> bool:
        """Whether :attr:`wait` has reached :attr:`patience`."""
        return self.wait >= self.patience

    def reset_state(self) -> None:
        super().reset_state()
        self.wait = 0

    def state_dict(self) -> dict[str, Any]:
        """The best value and the epochs without improvement."""
        return {**super().state_dict(), "wait": self.wait}

    @classmethod
    def check_state(cls, state: dict[str, Any]) -> None:
        super().check_state(state)
        state_value(state, "wait", "int")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.wait = int(state.get("wait", 0))

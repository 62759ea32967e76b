"""Report a monitored metric to an Optuna trial after every epoch and stop when it is pruned."""

from __future__ import annotations

import logging
import math
from typing import Any

from callbacks.base import state_value
from callbacks.monitor import MonitorCallback
from callbacks.stats import EpochStats
from trainer.errors import ConfigError

logger = logging.getLogger("mstrain")


class OptunaPruning(MonitorCallback):
    """Reports ``monitor`` to an Optuna trial after every epoch; when the study's pruner says the
    trial should stop, training stops at the end of that epoch.

    Like the pruning callbacks of optuna-integration for Keras and Lightning, but for
    ``mindspore.train.Model``: the epoch number (1 for the first epoch trained) is the step of
    ``trial.report``, so resource-based pruners (Hyperband) count epochs. An exception raised
    inside ``Model.fit`` would end it without its end-of-training hooks, so the callback asks
    ``Model`` to stop (``run_context.request_stop()``), as early stopping does, and
    :meth:`check_pruned` raises ``optuna.TrialPruned`` once ``fit`` has returned (as
    Lightning's callback does). :attr:`best` is the best value reported, in the direction of the
    trial's study, ready to return from an objective.

    Args:
        trial: The ``optuna.trial.Trial`` to report to.
        monitor: Metric of the epoch's logs, e.g. ``val_accuracy`` or ``val_loss``. Defaults to
            `"val_accuracy"`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None` (a private one).
        hint: How the metric is chosen where the callback was made (see
            :class:`~callbacks.monitor.MonitorCallback`). Defaults to `None`.

    Raises:
        ConfigError: ``trial`` is not an Optuna trial, or its study has several objectives.

    Example:
        >>> def objective(trial):  # doctest: +SKIP
        ...     model = build_model(lr=trial.suggest_float("lr", 1e-3, 0.3, log=True))
        ...     pruning = OptunaPruning(trial, monitor="val_accuracy")
        ...     model.fit(10, train, valid, callbacks=[pruning])
        ...     pruning.check_pruned()  # raises optuna.TrialPruned if the pruner stopped it
        ...     return pruning.best
    """

    def __init__(self, trial: Any, monitor: str = "val_accuracy",
                 stats: EpochStats | None = None, hint: str | None = None) -> None:
        for name in ("report", "should_prune", "study"):
            if not hasattr(trial, name):
                raise ConfigError(f"OptunaPruning: 'trial' is {type(trial).__name__}, not an "
                                  "optuna.trial.Trial; pass the trial your objective receives.")
        directions = trial.study.directions
        if len(directions) != 1:
            raise ConfigError(f"OptunaPruning: the trial's study has {len(directions)} "
                              "objectives; pruning works with one.")
        mode = "max" if directions[0].name == "MAXIMIZE" else "min"
        super().__init__(monitor, mode, 0.0, stats, hint)
        self.trial = trial
        self.pruned_epoch: int | None = None
        self.best_epoch: int | None = None
        self.reported: dict[int, float] = {}

    @property
    def pruned(self) -> bool:
        """Whether the pruner stopped the trial."""
        return self.pruned_epoch is not None

    def reset_state(self) -> None:
        super().reset_state()
        self.best_epoch = None

    def on_train_begin(self, run_context) -> None:
        super().on_train_begin(run_context)  # a resumed run keeps the best of its earlier epochs
        self.pruned_epoch = None
        self.reported = {}

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        if not self.stats.epoch_complete(cb_params):
            return  # stopped part-way: the epoch is reported when a resumed run completes it
        epoch = cb_params.cur_epoch_num
        value = self.get_monitor_value(self.stats.epoch_logs(cb_params))
        if math.isnan(value):
            return  # Optuna refuses NaN; a diverged run is stopped by TerminateOnNaN
        self.trial.report(value, step=epoch)
        self.reported[epoch] = value
        if self.is_improvement(value):
            self.best, self.best_epoch = value, epoch
        if self.trial.should_prune():
            self.pruned_epoch = epoch
            logger.info("Pruned at epoch %d: %s %.4f is not promising against the study's "
                        "other trials.", epoch, self.monitor, value)
            run_context.request_stop()

    def check_pruned(self) -> None:
        """Raises ``optuna.TrialPruned`` when the pruner stopped the trial; call it after
        ``Model.fit`` returns."""
        if self.pruned:
            import optuna

            raise optuna.TrialPruned(f"pruned at epoch {self.pruned_epoch}: {self.monitor} "
                                     f"{self.reported[self.pruned_epoch]:.4f}")

    def state_dict(self) -> dict[str, Any]:
        """The best value reported so far, so a resumed trial returns the best of all epochs."""
        return {**super().state_dict(), "best_epoch": self.best_epoch}

    @classmethod
    def check_state(cls, state: dict[str, Any]) -> None:
        """Refuses a saved state of the wrong shape (``ValueError``)."""
        super().check_state(state)
        state_value(state, "best_epoch", "int")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; missing keys keep the defaults."""
        super().load_state_dict(state)
        self.best_epoch = state.get("best_epoch")

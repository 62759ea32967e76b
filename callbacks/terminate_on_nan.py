"""Stop training when the loss stops being a finite number."""

from __future__ import annotations

import math

from callbacks.base import StatsCallback
from callbacks.stats import EpochStats, launch_steps, reached
from trainer.errors import ConfigError


class TerminateOnNaN(StatsCallback):
    """Stops training after the step at which the loss became NaN or infinite.

    With ``trainer.engine.step.TrainStep`` the check reads the running loss sum, which stays
    non-finite once any step was, so checking every ``check_every`` steps and at each epoch end
    misses nothing and copies nothing on the other steps. With another train network the step's own
    loss is checked at the same moments.

    After it fires, :attr:`stopped` describes where; ``callbacks.ModelCheckpoint`` never saves
    non-finite weights, and ``Trainer`` turns the stop into an error message and exit status.

    Args:
        check_every: Steps between checks; 0 checks only at epoch end. Defaults to `100`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None` (a private one).
    """

    def __init__(self, check_every: int = 100, stats: EpochStats | None = None) -> None:
        super().__init__(stats)
        if not isinstance(check_every, int) or check_every < 0:
            raise ConfigError(f"TerminateOnNaN: 'check_every' is {check_every!r}; it must be a "
                              "whole number >= 0.")
        self.check_every = check_every
        self.stopped: str | None = None

    def on_train_begin(self, run_context) -> None:
        super().on_train_begin(run_context)
        self.stopped = None

    def on_train_step_end(self, run_context) -> None:
        super().on_train_step_end(run_context)
        cb_params = run_context.original_args()
        if reached(cb_params.cur_step_num, self.check_every, launch_steps(cb_params)):
            self._check(run_context)

    def on_train_epoch_end(self, run_context) -> None:
        self._check(run_context)

    def _check(self, run_context) -> None:
        cb_params = run_context.original_args()
        loss = self.stats.train_summary(cb_params)["loss"]
        if not math.isfinite(loss):
            self.stopped = (f"the training loss became {loss} in epoch {cb_params.cur_epoch_num} "
                            f"(noticed at global step {self.stats.global_step(cb_params)})")
            run_context.request_stop()

"""Loss lines in the format of MindSpore's training tutorial."""

from __future__ import annotations

import logging
import time

from callbacks.base import StatsCallback
from callbacks.stats import EpochStats, current_lr, launch_steps, loss_scale, loss_value, reached
from trainer.errors import ConfigError

logger = logging.getLogger("mstrain")


class LossMonitor(StatsCallback):
    """Prints the current and mean loss every ``per_print_times`` steps, and an epoch summary.

    The lines match MindSpore's tutorial::

        Epoch:[  0/ 10], step:[  100/ 1875], loss:[0.189/1.176], time:2.254 ms, lr:0.01000
        Epoch time: 4286.163 ms, per step time: 2.286 ms, avg loss: 1.176

    The rate shown is read from the optimizer, so it is the one actually applied, schedules and
    plateau cuts included. When the train step scales its loss (``--loss-scale``), both lines
    end with the loss scale in use and the updates of the epoch so far skipped for an overflow
    (``, loss scale:65536, overflows:0``). Steps that print nothing copy nothing from the
    device.

    Args:
        per_print_times: Print every N steps; 0 prints only the epoch summary. Defaults to `100`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None` (a private one).
        printer: Where lines go. Defaults to `None`: the ``mstrain`` logger at INFO, or ``print``
            when that logger has no handler or would drop INFO lines (plain ``Model`` use).

    Example:
        >>> model.train(10, dataset, callbacks=[LossMonitor(375)])  # doctest: +SKIP
    """

    def __init__(self, per_print_times: int = 100, stats: EpochStats | None = None,
                 printer=None) -> None:
        super().__init__(stats)
        if not isinstance(per_print_times, int) or per_print_times < 0:
            raise ConfigError(f"LossMonitor: 'per_print_times' is {per_print_times!r}; it must "
                              "be a whole number >= 0.")
        self.per_print_times = per_print_times
        self._printer = printer
        self._epoch_start = self._last_step_end = self._interval_start = 0.0
        self._interval_steps = 0
        self._steps_in_epoch = 0

    def _print(self, line: str) -> None:
        if self._printer is not None:
            self._printer(line)
        elif (logger.handlers or logging.getLogger().handlers) and logger.isEnabledFor(
                logging.INFO):
            logger.info(line)
        else:
            print(line, flush=True)

    def on_train_epoch_begin(self, run_context) -> None:
        super().on_train_epoch_begin(run_context)
        self._epoch_start = self._interval_start = self._last_step_end = time.perf_counter()
        self._interval_steps = self._steps_in_epoch = 0

    def on_train_step_end(self, run_context) -> None:
        super().on_train_step_end(run_context)
        cb_params = run_context.original_args()
        self._last_step_end = time.perf_counter()
        launched = launch_steps(cb_params)
        self._interval_steps += launched
        self._steps_in_epoch += launched
        # Counted from the run's real start, also after a resume in the middle of an epoch.
        step = self.stats.step_in_epoch(cb_params)
        if reached(step, self.per_print_times, launched):
            per_step = (self._last_step_end - self._interval_start) * 1000 / self._interval_steps
            self._print(self._line(cb_params, step, per_step))
            self._interval_start, self._interval_steps = time.perf_counter(), 0

    def _line(self, cb_params, step: int, step_ms: float) -> str:
        current = loss_value(cb_params.net_outputs)
        mean = self.stats.train_summary(cb_params)["loss"]
        lr = current_lr(cb_params)
        total = self.stats.total_epochs(cb_params)
        width = len(str(total)) + 1
        epoch = f"{cb_params.cur_epoch_num - 1:{width}d}/{total:{width}d}"
        line = (f"Epoch:[{epoch}], step:[{step:5d}/{cb_params.batch_num:5d}], "
                f"loss:[{current:5.3f}/{mean:5.3f}], time:{step_ms:.3f} ms")
        return line + (f", lr:{lr:.5f}" if lr is not None else "") + self._scaling(cb_params)

    def _scaling(self, cb_params) -> str:
        """``, loss scale:S, overflows:N`` when the step scales its loss, else nothing."""
        overflows = self.stats.train_summary(cb_params).get("overflows")
        if overflows is None:
            return ""
        return f", loss scale:{loss_scale(cb_params):g}, overflows:{int(overflows)}"

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        train_ms = (self._last_step_end - self._epoch_start) * 1000
        steps = max(self._steps_in_epoch, 1)
        mean = self.stats.train_summary(cb_params)["loss"]
        line = (f"Epoch time: {train_ms:.3f} ms, per step time: {train_ms / steps:.3f} ms, "
                f"avg loss: {mean:.3f}{self._scaling(cb_params)}")
        done = self.stats.step_in_epoch(cb_params)
        if done < cb_params.batch_num:  # stopped early: not to be read as a whole epoch's line
            total = self.stats.total_epochs(cb_params)
            width = len(str(total)) + 1
            line = (f"Epoch:[{cb_params.cur_epoch_num - 1:{width}d}/{total:{width}d}] stopped "
                    f"after step {done} of {cb_params.batch_num}; over its steps: "
                    + line[0].lower() + line[1:])
        self._print(line)

"""Record the learning rate the optimizer actually applies."""

from __future__ import annotations

from typing import Any

from callbacks.base import StatefulCallback, number_rows, state_value
from callbacks.stats import EpochStats, current_lr, launch_steps, reached
from trainer.errors import ConfigError


class LearningRateMonitor(StatefulCallback):
    """Records ``(global_step, lr)`` every ``every_n_steps`` steps and at each epoch end.

    The value is read from the optimizer's rate array, so it reflects schedules, warm-up and
    plateau cuts. Reading is a small copy from the device; steps between records copy nothing.

    Args:
        every_n_steps: Steps between records; 0 records at epoch ends only. Defaults to `0`.
        stats: Shared :class:`~callbacks.stats.EpochStats` (for the global step). Defaults to
            `None`.

    Example:
        >>> monitor = LearningRateMonitor(every_n_steps=50)
        >>> model.train(2, dataset, callbacks=[monitor])  # doctest: +SKIP
        >>> monitor.records[:2]  # doctest: +SKIP
        [{'step': 50, 'epoch': 1, 'lr': 0.01}, {'step': 100, 'epoch': 1, 'lr': 0.01}]
    """

    def __init__(self, every_n_steps: int = 0, stats: EpochStats | None = None) -> None:
        super().__init__(stats)
        if not isinstance(every_n_steps, int) or every_n_steps < 0:
            raise ConfigError(f"LearningRateMonitor: 'every_n_steps' is {every_n_steps!r}; it "
                              "must be a whole number >= 0.")
        self.every_n_steps = every_n_steps
        self.records: list[dict[str, Any]] = []

    def reset_state(self) -> None:
        self.records = []

    def _record(self, cb_params) -> None:
        step = self.stats.global_step(cb_params)
        lr = current_lr(cb_params)
        if lr is None:
            return
        if not self.records or self.records[-1]["step"] != step:
            self.records.append({"step": step, "epoch": cb_params.cur_epoch_num, "lr": lr})

    def on_train_step_end(self, run_context) -> None:
        super().on_train_step_end(run_context)
        cb_params = run_context.original_args()
        if reached(self.stats.global_step(cb_params), self.every_n_steps,
                   launch_steps(cb_params)):
            self._record(cb_params)

    def on_train_epoch_end(self, run_context) -> None:
        self._record(run_context.original_args())

    def state_dict(self) -> dict[str, Any]:
        """The records so far."""
        return {"records": list(self.records)}

    @classmethod
    def check_state(cls, state: dict[str, Any]) -> None:
        """Refuses a saved state of the wrong shape (``ValueError``)."""
        super().check_state(state)
        number_rows(state_value(state, "records", "list", []), "records")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the records; missing keys keep the defaults."""
        self.check_state(state)
        self.records = list(state.get("records", []))

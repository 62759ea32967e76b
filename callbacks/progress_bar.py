"""A tqdm progress bar per epoch."""

from __future__ import annotations

import sys
import time

from callbacks.base import StatsCallback
from callbacks.stats import EpochStats, launch_steps


class ProgressBar(StatsCallback):
    """One tqdm bar per epoch with the running loss, training accuracy and samples per second.

    The bar refreshes its numbers at most every ``refresh_seconds`` (reading the loss is a copy
    from the device), writes to stderr, and is disabled when stderr is not a terminal, so logs
    and pipes get clean loss lines only. Loss lines printed through ``tqdm.write`` (as ``Trainer``
    sets up) appear above the bar instead of through it.

    Args:
        refresh_seconds: Minimum time between updates of the numbers. Defaults to `0.5`.
        enabled: None decides by whether stderr is a terminal. Defaults to `None`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None` (a private one).
    """

    def __init__(self, refresh_seconds: float = 0.5, enabled: bool | None = None,
                 stats: EpochStats | None = None) -> None:
        super().__init__(stats)
        self.refresh_seconds = refresh_seconds
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._last = 0.0

    def on_train_epoch_begin(self, run_context) -> None:
        super().on_train_epoch_begin(run_context)
        cb_params = run_context.original_args()
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self._close()
        total = self.stats.total_epochs(cb_params)
        self._bar = tqdm(total=cb_params.batch_num, unit="step", leave=False, dynamic_ncols=True,
                         desc=f"epoch {cb_params.cur_epoch_num}/{total}",
                         file=sys.stderr)
        self._last = time.perf_counter()

    def on_train_step_end(self, run_context) -> None:
        if self._bar is None:
            return
        super().on_train_step_end(run_context)
        cb_params = run_context.original_args()
        self._bar.update(launch_steps(cb_params))
        now = time.perf_counter()
        if now - self._last >= self.refresh_seconds:
            self._last = now
            summary = self.stats.train_summary(cb_params)
            rate = self._bar.format_dict.get("rate") or 0.0  # steps per second
            postfix = {"loss": f"{summary['loss']:.4f}"}
            if "accuracy" in summary:
                postfix["acc"] = f"{summary['accuracy']:.4f}"
            if summary["steps"] and summary["samples"]:
                # Samples per step from what the steps saw: a dataset whose source yields whole
                # batches reports a batch size of 1.
                postfix["samples/s"] = f"{rate * summary['samples'] / summary['steps']:.0f}"
            self._bar.set_postfix(postfix, refresh=False)

    def on_train_epoch_end(self, run_context) -> None:
        self._close()

    def on_train_end(self, run_context) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

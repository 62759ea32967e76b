"""A callback that signals its own process at a chosen moment, for the signal tests."""

from __future__ import annotations

import os
import signal
import threading
import time

from mindspore.train import Callback


class SelfSignal(Callback):
    """Sends signals to this process from one hook, once.

    Args:
        hook: The hook to send them from, e.g. ``"on_eval_begin"`` or ``"on_train_step_end"``.
        epoch: Only in this epoch (``cur_epoch_num``). Defaults to `None`: any.
        step: Only when ``cur_step_num`` has reached this. Defaults to `None`: any.
        signals: Signal names, sent in order. Defaults to `("SIGTERM",)`.
        gap: Seconds between the hook and each signal, from a thread, so that they land during
            what follows the hook (a graph compilation, say). Defaults to `0.0`: at once.
    """

    launch_aware = True

    def __init__(self, hook: str, epoch: int | None = None, step: int | None = None,
                 signals=("SIGTERM",), gap: float = 0.0) -> None:
        super().__init__()
        self.epoch, self.step, self.gap = epoch, step, gap
        self.signals = [getattr(signal, name) for name in signals]
        self.sent = False
        setattr(self, hook, self._fire)

    def _send(self) -> None:
        for sig in self.signals:
            if self.gap:
                time.sleep(self.gap)
            os.kill(os.getpid(), sig)

    def _fire(self, run_context) -> None:
        cb = run_context.original_args()
        if self.sent or (self.epoch is not None and cb.cur_epoch_num != self.epoch) or (
                self.step is not None and cb.cur_step_num < self.step):
            return
        self.sent = True
        if self.gap:
            threading.Thread(target=self._send, daemon=True).start()
        else:
            self._send()

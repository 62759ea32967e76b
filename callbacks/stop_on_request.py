"""Stop training at the next step end once a stop was requested."""

from __future__ import annotations

from collections.abc import Callable

from mindspore.train import Callback

from callbacks.stats import launch_steps, reached


class StopOnRequest(Callback):
    """Requests ``Model``'s stop at the next step end once ``stop`` is set.

    In a data-parallel run the workers must stop after the same step, or those still training
    wait in the next gradient all-reduce for the ones that left. A signal reaches the workers at
    slightly different steps (or only some of them), so with ``sync_every`` the workers share
    their flags every ``sync_every`` steps through ``sync`` (one small all-reduce that returns
    whether any worker has one) and all stop when any has.

    Args:
        stop: The request to honour: anything true once a stop is wanted, with a
            ``request(reason)`` method (``trainer.engine.stop.StopRequest``).
        sync_every: Steps between exchanges of the flag; 0 never exchanges. Defaults to `0`.
        sync: Returns whether any worker wants to stop, given this worker's flag. Defaults to
            `None` (required with ``sync_every``).
        other: The reason recorded when another worker asked. Defaults to
            `"a signal to another worker"`.
        stats: Shared :class:`~callbacks.stats.EpochStats`; with it, ``stop.steps_done`` is set
            after the run's last training step, so a stop asked for later is not announced as
            saving a checkpoint. Defaults to `None`.
    """

    launch_aware = True

    def __init__(self, stop, sync_every: int = 0,
                 sync: Callable[[bool], bool] | None = None,
                 other: str = "a signal to another worker", stats=None) -> None:
        super().__init__()
        if sync_every and sync is None:
            raise ValueError("StopOnRequest: 'sync' is required with 'sync_every'")
        self.stop, self.sync_every, self.sync, self.other = stop, sync_every, sync, other
        self.stats = stats

    def on_train_step_end(self, run_context) -> None:
        if self.stats is not None and hasattr(self.stop, "steps_done"):
            cb_params = run_context.original_args()
            last = self.stats.total_epochs(cb_params) * cb_params.batch_num
            if self.stats.global_step(cb_params) >= last:
                self.stop.steps_done = True
        if not self.sync_every:
            if self.stop:
                run_context.request_stop()
            return
        cb_params = run_context.original_args()
        if not reached(cb_params.cur_step_num, self.sync_every, launch_steps(cb_params)):
            return
        if self.sync(bool(self.stop)):
            self.stop.request(self.other)
            run_context.request_stop()

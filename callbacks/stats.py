"""Epoch statistics shared by the callbacks of one run: training loss, accuracy, rate, metrics.

Several callbacks want the same numbers at the end of an epoch (the loss monitor, the progress
bar, the history, early stopping, the checkpoint). :class:`EpochStats` reads them once: from the
running totals that ``trainer.engine.step.TrainStep`` keeps inside the compiled step (no copy per
step), or, for any other train network, from the loss each step returns. One instance is shared
by the callbacks ``Trainer`` builds; a callback used on its own creates a private one.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

_TOTAL_KEYS = ("loss_sum", "correct", "samples", "steps")


def find_optimizer(cb_params) -> Any:
    """The optimizer of a run, whether ``Model`` was given it or the train network holds it."""
    opt = getattr(cb_params, "optimizer", None)
    if opt is None:
        opt = getattr(getattr(cb_params, "train_network", None), "optimizer", None)
    return opt


def lr_parameter(optimizer) -> Any:
    """The Parameter holding an optimizer's rate: a scalar, or the per-step array."""
    lr = optimizer.learning_rate
    return getattr(lr, "learning_rate", lr)  # a per-step array sits inside a small cell


def _optional(cb_params, name: str) -> Any:
    """``cb_params.<name>``, or None when absent (MindSpore's parameters raise KeyError then)."""
    try:
        return getattr(cb_params, name, None)
    except KeyError:
        return None


def optimizer_step(cb_params) -> int | None:
    """The optimizer's own step count (a device read), or None without an optimizer."""
    step = getattr(find_optimizer(cb_params), "global_step", None)
    if step is None:
        return None
    return int(step.asnumpy().reshape(-1)[0])


def current_lr(cb_params) -> float | None:
    """The learning rate the optimizer applies at its next update (a small device read).

    After the last step of a per-step schedule with one rate per step (MindSpore's usual
    ``lr`` list) there is no next entry, and asking the optimizer would index past the end of
    the array; the schedule's last rate is reported then.
    """
    opt = find_optimizer(cb_params)
    if opt is None:
        return None
    rates = lr_parameter(opt)
    if hasattr(rates, "asnumpy") and len(rates.shape) <= 1:
        # Read on the host: optimizer.get_lr() runs an operator, far dearer than a host read.
        values = rates.asnumpy().reshape(-1)
        if len(rates.shape) == 0:
            return float(values[0])
        step = optimizer_step(cb_params)
        return float(values[min(step, len(values) - 1)])
    lr = opt.get_lr()
    if isinstance(lr, (tuple, list)):  # group learning rates: report the first group
        lr = lr[0]
    return float(np.asarray(lr.asnumpy()).reshape(-1)[0])


def launch_steps(cb_params) -> int:
    """Training steps run since the previous ``on_train_step_end``: 1, or ``k`` when each graph
    launch runs ``k`` steps (``trainer.engine.step.LaunchSteps``; ``cur_step_num`` then advances by
    ``k``, as in MindSpore's dataset-sink mode)."""
    return _optional(cb_params, "launch_steps") or 1


def reached(step: int, every: int, launched: int = 1) -> bool:
    """Whether the steps up to ``step`` (the last ``launched`` of them run in one launch) include
    a multiple of ``every``: the test for "every N steps" that also holds when a launch runs
    several steps. ``every`` of 0 never fires."""
    return every > 0 and step // every != (step - launched) // every


def loss_scale(cb_params) -> float | None:
    """The loss scale of a train step that scales its loss (``--loss-scale``; a small device
    read), or None for one that does not."""
    scale = getattr(getattr(cb_params, "train_network", None), "loss_scale", None)
    return None if scale is None else float(scale.asnumpy())


def loss_value(net_outputs) -> float:
    """The scalar loss from a train network's output (a Tensor, or a tuple starting with one)."""
    if isinstance(net_outputs, (tuple, list)):
        net_outputs = net_outputs[0]
    return float(np.asarray(net_outputs.asnumpy()).mean())


class EpochStats:
    """Loss, accuracy, learning rate and validation metrics of the current epoch.

    Callbacks call :meth:`begin_epoch` in ``on_train_epoch_begin``, :meth:`on_step` in
    ``on_train_step_end`` and :meth:`epoch_logs` in ``on_train_epoch_end``; calls from several
    callbacks for the same epoch or step are deduplicated, so sharing one instance is free.
    """

    def __init__(self) -> None:
        self._host = dict.fromkeys(_TOTAL_KEYS, 0.0)
        self._last_host_step = -1
        self._epoch: int | None = None
        self._start: dict[str, float] | None = None
        self._start_time = 0.0
        self._pending: dict[str, Any] | None = None
        self._cache: dict[tuple, dict[str, float]] = {}
        self._run: Any = None  # the cb_params of the current Model.train/fit call
        self._device_net: Any = None
        self._device_counts = False
        self._step_base: tuple[Any, int] | None = None  # (cb_params, global step at its begin)
        self._first_epoch: int | None = None  # the first epoch of the current train/fit call

    def begin_run(self, cb_params) -> None:
        """Notes where the run's global step starts (once per train/fit call)."""
        if self._step_base is None or self._step_base[0] is not cb_params:
            if self.counts_on_device(cb_params):  # training steps, also micro-batches of one update
                start = int(cb_params.train_network.stat_steps.asnumpy())
            else:
                start = optimizer_step(cb_params)
            base = 0 if start is None else start - cb_params.cur_step_num
            self._step_base = (cb_params, base)

    def global_step(self, cb_params) -> int:
        """Training steps (batches) taken since the start of training, across resumes; with
        gradient accumulation, micro-batches, not optimizer updates.

        ``Model`` counts ``cur_step_num`` from 0 in every train/fit call, also when a run resumes
        in the middle of an epoch; the optimizer's own count, read once at the call's start, is
        the base. No device read per step.
        """
        if self._step_base is None or self._step_base[0] is not cb_params:
            self.begin_run(cb_params)
        return self._step_base[1] + cb_params.cur_step_num

    def total_epochs(self, cb_params) -> int:
        """The run's last epoch number: ``Model``'s ``epoch_num`` counts only the epochs of this
        train/fit call, which is fewer after a resume (``initial_epoch``)."""
        first = self._first_epoch if self._run is cb_params else cb_params.cur_epoch_num
        return cb_params.epoch_num + (first or 1) - 1

    def step_in_epoch(self, cb_params) -> int:
        """The step within its epoch, 1 to ``batch_num``, of the last step run."""
        return (self.global_step(cb_params) - 1) % cb_params.batch_num + 1

    def counts_on_device(self, cb_params) -> bool:
        """Whether the train network keeps its own totals (``trainer.engine.step.TrainStep``).

        Asked by every callback on every step, so the answer is kept per network: an attribute
        look-up on a Cell goes through MindSpore's slow ``Cell.__getattr__``.
        """
        net = getattr(cb_params, "train_network", None)
        if self._device_net is not net:
            self._device_net, self._device_counts = net, hasattr(net, "stat_loss_sum")
        return self._device_counts

    def begin_epoch(self, cb_params) -> None:
        """Takes the snapshot this epoch's means are measured from (once per epoch)."""
        epoch = cb_params.cur_epoch_num
        if self._epoch == epoch and self._run is cb_params:
            return
        if self._run is not cb_params:  # a new train/fit call, whose numbering starts again
            self._run, self._last_host_step, self._first_epoch = cb_params, -1, epoch
        self._epoch, self._start_time, self._cache = epoch, time.perf_counter(), {}
        if self._pending and self._pending.get("epoch") == epoch:
            # Resumed in the middle of this epoch: measure from its real start.
            self._start = dict(self._pending["totals"])
        else:
            self._start = self.totals(cb_params)
        self._pending = None

    def on_step(self, cb_params) -> None:
        """Counts a step on the host, only when the network does not count for itself."""
        step = cb_params.cur_step_num
        if self.counts_on_device(cb_params) or step == self._last_host_step:
            return
        self._last_host_step = step
        self._host["loss_sum"] += loss_value(cb_params.net_outputs)
        self._host["steps"] += 1
        element = cb_params.get("train_dataset_element") if isinstance(cb_params, dict) else None
        if element is not None and len(element) > 1 and hasattr(element[1], "shape"):
            self._host["samples"] += int(element[1].shape[0]) if element[1].shape else 1

    def totals(self, cb_params) -> dict[str, float]:
        """Running totals since the run began; with ``overflows`` (updates skipped for an
        overflow) where the train step scales its loss."""
        if self.counts_on_device(cb_params):
            net = cb_params.train_network
            values = (net.stat_loss_sum, net.stat_correct, net.stat_samples, net.stat_steps)
            out = {k: float(v.asnumpy()) for k, v in zip(_TOTAL_KEYS, values)}
            overflows = getattr(net, "overflow_count", None)
            if overflows is not None:
                out["overflows"] = float(overflows.asnumpy())
            return out
        return dict(self._host)

    def train_summary(self, cb_params) -> dict[str, float]:
        """Mean training loss (and accuracy, when counted) of the epoch so far."""
        if self._start is None:
            self.begin_epoch(cb_params)
        key = ("train", self._epoch, cb_params.cur_step_num)
        if key not in self._cache:
            end = self.totals(cb_params)
            steps = end["steps"] - self._start["steps"]
            samples = end["samples"] - self._start["samples"]
            loss_sum = end["loss_sum"] - self._start["loss_sum"]
            out = {"steps": steps, "samples": samples,
                   "loss": loss_sum / steps if steps else math.nan}
            if self.counts_on_device(cb_params):
                out["accuracy"] = ((end["correct"] - self._start["correct"]) / samples
                                   if samples else math.nan)
            if "overflows" in end:  # a start from a bundle without the count: none before
                out["overflows"] = end["overflows"] - self._start.get("overflows", 0.0)
            self._cache[key] = out
        return self._cache[key]

    def epoch_complete(self, cb_params) -> bool:
        """Whether the epoch ran to the end of the data, and not stopped part-way.

        ``Model`` runs validation and the epoch-end callbacks also when a stop was requested in
        the middle of an epoch; callbacks that record epochs use this to tell the two apart.
        Steps before a mid-epoch resume count, since the snapshot is the epoch's real start.
        """
        return self.train_summary(cb_params)["steps"] >= cb_params.batch_num

    def epoch_logs(self, cb_params) -> dict[str, float]:
        """Everything known about the epoch that just ended, Keras-style names.

        ``loss``, ``accuracy`` (training, from the training forward pass), ``val_<metric>`` for
        each validation metric, ``lr`` (the rate for the next step), with ``--loss-scale`` the
        ``loss_scale`` in use and the ``overflow_steps`` of the epoch (updates skipped for a
        gradient that overflowed), and ``epoch_time`` (seconds, validation included).
        """
        key = ("logs", self._epoch, cb_params.cur_step_num)
        if key not in self._cache:
            summary = self.train_summary(cb_params)
            logs = {"epoch": cb_params.cur_epoch_num, "loss": summary["loss"]}
            if "accuracy" in summary:
                logs["accuracy"] = summary["accuracy"]
            for name, value in (_optional(cb_params, "eval_results") or {}).items():
                if name != "eval_loss":  # the last batch's loss only; the Loss metric is the mean
                    logs[f"val_{name}"] = float(value)
            lr = current_lr(cb_params)
            if lr is not None:
                logs["lr"] = lr
            if "overflows" in summary:
                logs["loss_scale"] = loss_scale(cb_params)
                logs["overflow_steps"] = int(summary["overflows"])
            logs["epoch_time"] = time.perf_counter() - self._start_time
            self._cache[key] = logs
        return self._cache[key]

    def state_dict(self) -> dict[str, Any]:
        """The snapshot of the current epoch's start, so a mid-epoch resume measures correctly."""
        return {"epoch": self._epoch, "totals": self._start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; applied when that epoch begins again."""
        if state.get("epoch") is not None and state.get("totals"):
            self._pending = {"epoch": state["epoch"], "totals": state["totals"]}

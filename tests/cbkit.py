"""Helpers shared by the callback tests: tiny networks, small runs, fake run contexts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import nn
from mindspore.train import Accuracy, Callback, Loss, Model, RunContext

from callbacks.stats import EpochStats
from trainer.data import build_dataset
from trainer.engine.step import TrainStep

BATCH = 64
TRAIN_SAMPLES = 1600
STEPS_PER_EPOCH = TRAIN_SAMPLES // BATCH  # the digits_dir fixture's training split

# The line of MindSpore's tutorial that LossMonitor imitates, and patterns for its two lines.
TUTORIAL_LINE = ("Epoch:[  0/ 10], step:[ 1875/ 1875], loss:[0.189/1.176], time:2.254 ms, "
                 "lr:0.01000")
STEP_LINE = (r"^Epoch:\[ *(?P<epoch>\d+)/ *(?P<epochs>\d+)\], "
             r"step:\[ *(?P<step>\d+)/ *(?P<steps>\d+)\], "
             r"loss:\[(?P<loss>-?\d+\.\d{3})/(?P<mean>-?\d+\.\d{3})\], "
             r"time:(?P<ms>\d+\.\d{3}) ms(?:, lr:(?P<lr>\d+\.\d{5}))?$")
EPOCH_LINE = (r"^Epoch time: (?P<ms>\d+\.\d{3}) ms, per step time: (?P<step_ms>\d+\.\d{3}) ms, "
              r"avg loss: (?P<loss>-?\d+\.\d{3}|nan)$")


def graph_mode() -> None:
    """Compiled steps, as the trainer runs them."""
    ms.set_context(mode=ms.GRAPH_MODE)


class Tiny(nn.Cell):
    """Logistic regression over 28x28 digits: compiles and trains in well under a second."""

    image_size = 28

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Dense(28 * 28, num_classes)

    def construct(self, x):
        return self.fc(self.flatten(x))


def loss_fn() -> nn.Cell:
    return nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")


def metrics() -> dict[str, Any]:
    return {"accuracy": Accuracy(), "loss": Loss()}


def digits(digits_dir: Path, batch_size: int = BATCH, valid_batch: int = 200):
    """The training and validation pipelines over the ``digits_dir`` fixture."""
    train = build_dataset(Path(digits_dir) / "train", "train", image_size=28,
                          batch_size=batch_size, training=True)
    valid = build_dataset(Path(digits_dir) / "test", "test", image_size=28,
                          batch_size=valid_batch, training=False)
    return train, valid


def lr_array(total_steps: int, start: float = 0.05, stop: float = 0.01) -> np.ndarray:
    """A per-step rate with a distinct value (at 5 decimals) on every step, plus the end entry."""
    return np.linspace(start, stop, total_steps + 1, dtype=np.float32)


@dataclass
class Run:
    """A model ready to fit and the pieces a test inspects."""

    model: Model
    net: nn.Cell
    opt: nn.Optimizer
    train_network: nn.Cell | None

    def lr_values(self) -> np.ndarray:
        from callbacks.stats import lr_parameter

        return np.asarray(lr_parameter(self.opt).asnumpy())

    def global_step(self) -> int:
        return int(self.opt.global_step.asnumpy().reshape(-1)[0])


def make_run(lr: Any = 0.05, kind: str = "step", net: nn.Cell | None = None,
             optimizer: str = "momentum", seed: int = 0) -> Run:
    """A ``Model`` over ``net`` (default :class:`Tiny`).

    ``kind="step"`` wraps it in ``trainer.engine.step.TrainStep`` as ``Trainer`` does (statistics
    counted in the graph); ``kind="plain"`` is the plain ``Model(net, loss, opt)`` of the
    tutorials (callbacks fall back to host-side loss accumulation).
    """
    graph_mode()
    ms.set_seed(seed)
    net = net if net is not None else Tiny()
    if isinstance(lr, (list, tuple, np.ndarray)):
        lr = ms.Tensor(np.asarray(lr, dtype=np.float32))
    if optimizer == "momentum":
        opt = nn.Momentum(net.trainable_params(), lr, 0.9)
    else:
        opt = nn.SGD(net.trainable_params(), lr)
    if kind == "plain":
        model = Model(net, loss_fn(), opt, metrics=metrics())
        return Run(model, net, opt, None)
    step = TrainStep(net, loss_fn(), opt)
    model = Model(step, eval_network=nn.WithEvalCell(net, loss_fn()), metrics=metrics(),
                  eval_indexes=[0, 1, 2])
    return Run(model, net, opt, step)


def weights(net: nn.Cell) -> dict[str, np.ndarray]:
    """A host copy of the trainable parameters."""
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ fake runs for unit tests
class Params(dict):
    """A stand-in for MindSpore's callback parameters: a dict with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def fake_context(**values: Any) -> RunContext:
    """A real ``RunContext`` around :class:`Params` (``request_stop`` works as in a run)."""
    defaults = {"cur_epoch_num": 1, "epoch_num": 10, "cur_step_num": 0, "batch_num": 10}
    return RunContext(Params({**defaults, **values}))


class ScriptedStats(EpochStats):
    """Epoch statistics whose epoch-end logs come from a script instead of the run.

    ``values[i]`` is the logs dict of epoch ``i + 1`` (or a number, taken as ``metric``).
    Every epoch counts as complete unless listed in ``incomplete``.
    """

    def __init__(self, values: Sequence[Any], metric: str = "val_loss",
                 incomplete: Sequence[int] = ()) -> None:
        super().__init__()
        self.values = list(values)
        self.metric = metric
        self.incomplete = set(incomplete)

    def begin_epoch(self, cb_params) -> None:
        self._epoch = cb_params.cur_epoch_num

    def on_step(self, cb_params) -> None:
        pass

    def epoch_complete(self, cb_params) -> bool:
        return cb_params.cur_epoch_num not in self.incomplete

    def train_summary(self, cb_params) -> dict[str, float]:
        logs = self.epoch_logs(cb_params)
        return {"steps": cb_params.batch_num, "loss": logs.get("loss", 0.0)}

    def epoch_logs(self, cb_params) -> dict[str, float]:
        value = self.values[cb_params.cur_epoch_num - 1]
        logs = dict(value) if isinstance(value, dict) else {self.metric: float(value)}
        return {"epoch": cb_params.cur_epoch_num, **logs}


def drive_epochs(callback: Callback, epochs: int, **params: Any) -> tuple[int, list[dict]]:
    """Calls a callback's train and epoch hooks as ``Model`` would, until it requests a stop.

    Returns the number of epochs run and, per epoch, a copy of the callback's counters.
    """
    context = fake_context(epoch_num=epochs, **params)
    cb_params = context.original_args()
    callback.on_train_begin(context)
    trace = []
    for epoch in range(1, epochs + 1):
        cb_params.cur_epoch_num = epoch
        cb_params.cur_step_num = epoch * cb_params.batch_num
        callback.on_train_epoch_begin(context)
        callback.on_train_epoch_end(context)
        trace.append({k: getattr(callback, k) for k in ("wait", "best", "cooldown_left")
                      if hasattr(callback, k)})
        if context.get_stop_requested():
            break
    callback.on_train_end(context)
    return len(trace), trace


# ------------------------------------------------------------------------ recording callbacks
class Recorder(Callback):
    """Calls ``fn(hook_name, cb_params)`` from the hooks named in ``hooks``."""

    def __init__(self, fn, hooks: Sequence[str]) -> None:
        super().__init__()
        self.fn = fn
        for hook in hooks:
            setattr(self, hook, self._make(hook))

    def _make(self, hook: str):
        def call(run_context) -> None:
            self.fn(hook, run_context.original_args())

        return call


class Slow(Callback):
    """Sleeps ``seconds`` after every step: a run that lasts long enough to be interrupted."""

    def __init__(self, seconds: float = 0.01) -> None:
        super().__init__()
        self.seconds = seconds

    def on_train_step_end(self, run_context) -> None:
        import time

        time.sleep(self.seconds)


class EpochWeights(Callback):
    """Keeps a host copy of the weights at the end of every epoch (place it first)."""

    def __init__(self, net: nn.Cell) -> None:
        super().__init__()
        self.net = net
        self.by_epoch: dict[int, dict[str, np.ndarray]] = {}
        self.eval_results: dict[int, dict[str, float]] = {}

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        self.by_epoch[cb_params.cur_epoch_num] = weights(self.net)
        results = cb_params.get("eval_results") or {}
        self.eval_results[cb_params.cur_epoch_num] = {k: float(v) for k, v in results.items()}

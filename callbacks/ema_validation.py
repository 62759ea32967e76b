"""Validate with the exponential moving average of the weights (``--ema-decay``)."""

from __future__ import annotations

from mindspore import nn, ops
from mindspore.train import Callback

_swap = ops.MultitypeFuncGraph("swap")


@_swap.register("Tensor", "Tensor", "Tensor")
def _swap_values(first, second, held):
    kept = ops.assign(held, first)
    written = ops.assign(first, ops.depend(second, kept))
    return ops.assign(second, ops.depend(held, written))


class Swap(nn.Cell):
    """Exchanges the values of two lists of parameters, element by element, in a compiled graph
    (the parameters keep their identity and their place in every other graph)."""

    def __init__(self, first, second) -> None:
        super().__init__(auto_prefix=False)
        self.first, self.second = first, second
        self.held = first.clone(prefix="swap", init="zeros")  # a buffer of the swap's own
        self.hyper_map = ops.HyperMap()

    def construct(self):
        return self.hyper_map(_swap, self.first, self.second, self.held)


class EMAValidation(Callback):
    """Puts the moving average of the weights into the network while it is validated, and the
    weights back afterwards, so validation, the best checkpoint, early stopping and the plateau
    all judge the average, which is what is exported.

    Args:
        step: A train step with the parameters it averages (``averaged``: the weights, and batch
            norm's running statistics) and their averages ``ema`` (``TrainStep`` built with
            ``ema_decay``).
    """

    launch_aware = True

    def __init__(self, step) -> None:
        super().__init__()
        self.swap = Swap(step.averaged, step.ema)
        self._swapped = False

    def on_eval_begin(self, run_context) -> None:
        if not self._swapped:
            self.swap()
            self._swapped = True

    def on_eval_end(self, run_context) -> None:
        if self._swapped:
            self.swap()
            self._swapped = False

    def on_train_end(self, run_context) -> None:
        self.on_eval_end(run_context)

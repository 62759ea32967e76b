"""Nesterov momentum on CPU with MindSpore's own elementwise operators.

MindSpore 2.7.2's CPU ``ApplyMomentum`` ignores ``use_nesterov``: ``nn.Momentum(...,
use_nesterov=True)`` trains as plain momentum there (one update of weight 1, accumulation 0.5,
gradient 1, rate 0.1, momentum 0.9 gives 0.855 with or without it, where Nesterov's update gives
0.7695). :class:`NesterovMomentum` computes the update itself.
"""

from __future__ import annotations

from mindspore import nn, ops

from trainer.networks.native.ops import momentum_prologue

_nesterov = ops.MultitypeFuncGraph("nesterov")


@_nesterov.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _nesterov_update(lr, momentum, gradient, weight, moment):
    accum = moment * momentum + gradient
    done = ops.assign(moment, accum)
    return ops.depend(ops.assign_sub(weight, gradient * lr + accum * momentum * lr), done)


class NesterovMomentum(nn.Momentum):
    """``nn.Momentum`` with ``use_nesterov=True`` whose update runs as elementwise operators:
    ``accum = accum * momentum + grad; weight -= grad * lr + accum * momentum * lr``, MindSpore's
    documented formula. The parameters are ``nn.Momentum``'s (``moments.*``, ``global_step``),
    so checkpoints are interchangeable with it; weight decay, gradient centralisation, the loss
    scale and the per-step rate are its own.

    Args:
        params, learning_rate, momentum, weight_decay: As ``nn.Momentum``'s, without per-group
            learning rates.
    """

    def __init__(self, params, learning_rate, momentum: float, weight_decay=0.0) -> None:
        super().__init__(params, learning_rate, momentum, weight_decay=weight_decay,
                         use_nesterov=True)
        if self.is_group_lr:
            raise ValueError("NesterovMomentum takes one learning rate for every group")
        self.hyper_map = ops.HyperMap()

    def construct(self, gradients):
        gradients, lr = momentum_prologue(self, gradients)
        return self.hyper_map(ops.partial(_nesterov, lr, self.momentum), gradients, self.params,
                              self.moments)

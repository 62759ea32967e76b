"""The training step: one forward pass gives the loss to optimise and the training accuracy.

:class:`TrainStep` is a ``mindspore.nn.TrainOneStepCell`` (so ``Model`` treats it as a complete
train network, and data-parallel gradient averaging comes with it) whose forward pass returns the
logits beside the loss. Inside the compiled step it adds the loss, the number of correct
predictions and the number of samples to running totals kept in non-trainable parameters. The
host never copies anything per step; callbacks read the totals once per epoch (or when they print)
through ``callbacks.stats.EpochStats``. The totals live in the checkpoint with the weights, so a
run resumed in the middle of an epoch still reports that epoch's full mean loss and accuracy.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops


class _LossAndLogits(nn.Cell):
    def __init__(self, backbone: nn.Cell, loss_fn: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self._backbone = backbone
        self._loss_fn = loss_fn

    def construct(self, data, label):
        logits = self._backbone(data)
        return self._loss_fn(logits, label), logits


class TrainStep(nn.TrainOneStepCell):
    """A train step that also counts the loss and the correct predictions of its forward pass.

    Args:
        backbone: The network producing logits.
        loss_fn: Loss on ``(logits, label)``, returning a scalar.
        optimizer: The optimizer over ``backbone``'s parameters.

    Example:
        >>> step = TrainStep(LeNet5(), nn.SoftmaxCrossEntropyWithLogits(sparse=True,
        ...                  reduction="mean"), optimizer)  # doctest: +SKIP
        >>> model = Model(step, eval_network=..., metrics=...)  # doctest: +SKIP
    """

    def __init__(self, backbone: nn.Cell, loss_fn: nn.Cell, optimizer: nn.Optimizer) -> None:
        # MindSpore walks the cell tree on every call, so the backbone is reachable only once
        # (through self.network); a second reference would double that per-step cost.
        super().__init__(_LossAndLogits(backbone, loss_fn), optimizer)
        # float64 keeps the running loss sum exact enough over very long runs.
        self.stat_loss_sum = Parameter(Tensor(0.0, ms.float64), name="train_stats.loss_sum",
                                       requires_grad=False)
        self.stat_correct = Parameter(Tensor(0, ms.int64), name="train_stats.correct",
                                      requires_grad=False)
        self.stat_samples = Parameter(Tensor(0, ms.int64), name="train_stats.samples",
                                      requires_grad=False)
        self.stat_steps = Parameter(Tensor(0, ms.int64), name="train_stats.steps",
                                    requires_grad=False)
        self.argmax = ops.Argmax(axis=-1)

    def construct(self, data, label):
        loss, logits = self.network(data, label)
        sens = (ops.fill(loss.dtype, loss.shape, self.sens), ops.zeros_like(logits))
        grads = self.grad(self.network, self.weights)(data, label, sens)
        grads = self.grad_reducer(grads)
        loss = ops.depend(loss, self.optimizer(grads))
        correct = ops.equal(self.argmax(logits), label).astype(ms.int64).sum()
        loss = ops.depend(loss, ops.assign_add(self.stat_loss_sum, loss.astype(ms.float64)))
        loss = ops.depend(loss, ops.assign_add(self.stat_correct, correct))
        loss = ops.depend(loss, ops.assign_add(self.stat_samples,
                                               ops.scalar_to_tensor(label.shape[0], ms.int64)))
        loss = ops.depend(loss, ops.assign_add(self.stat_steps, ops.ones((), ms.int64)))
        return loss

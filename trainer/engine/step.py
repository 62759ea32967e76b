"""The training step: one forward pass gives the loss to optimise and the training accuracy.

:class:`TrainStep` is a ``mindspore.nn.TrainOneStepCell`` (so ``Model`` treats it as a complete
train network, and data-parallel gradient averaging comes with it) whose forward pass returns the
logits beside the loss. Inside the compiled step it adds the loss, the number of correct
predictions and the number of samples to running totals kept in non-trainable parameters. The
host never copies anything per step; callbacks read the totals once per epoch (or when they print)
through ``callbacks.stats.EpochStats``. The totals live in the checkpoint with the weights, so a
run resumed in the middle of an epoch still reports that epoch's full mean loss and accuracy. In a
data-parallel run (``trainer.engine.distributed``) they count the samples of all workers, and the
step returns the loss averaged over all workers' batches, so every worker sees the same numbers.
With a loss scaler (``--loss-scale``, :mod:`trainer.engine.amp`) the step scales the loss's
gradient, unscales the gradients, and applies an update only when they are all finite.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, Tensor, amp, context, nn, ops


class _LossAndLogits(nn.Cell):
    def __init__(self, backbone: nn.Cell, loss_fn: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self._backbone = backbone
        self._loss_fn = loss_fn

    def construct(self, data, label):
        logits = self._backbone(data)
        return self._loss_fn(logits, label), logits


_scale = ops.MultitypeFuncGraph("scale")
_ema = ops.MultitypeFuncGraph("ema")


@_scale.register("Number", "Tensor")
def _scale_tensor(factor, value):
    return value * ops.cast(factor, value.dtype)


@_ema.register("Number", "Tensor", "Tensor")
def _ema_tensor(decay, average, weight):
    return ops.assign(average, average * decay + weight * (1.0 - decay))


class TrainStep(nn.TrainOneStepCell):
    """A train step that also counts the loss and the correct predictions of its forward pass,
    with the train-step options inside the compiled graph.

    Every option is decided when the cell is built, so a step without options compiles to the
    plain step. With ``accumulate`` K above 1, each call is one micro-batch: its gradients, divided
    by K, are added to buffers, and every K-th call applies the sum (so K micro-batches of B give
    the update of one batch of K*B with a mean loss), then clears them; the optimizer, and so the
    learning-rate schedule, counts updates. In a data-parallel run the gradients are averaged
    over the workers before they are clipped, once per update. Buffers, counter and EMA are
    parameters of the cell, saved in every checkpoint, so a run may stop and resume between two
    micro-batches of one update.

    With ``loss_scaler`` (a ``mindspore.amp.StaticLossScaler`` or ``DynamicLossScaler``), the
    backward pass starts from the loss's gradient times the scale, and the gradients are
    unscaled before anything else sees them, so accumulation, clipping and EMA work on unscaled
    gradients. At each update (after the workers' average), ``mindspore.amp.all_finite`` decides:
    finite gradients are applied; otherwise nothing changes (weights, optimizer state and step,
    EMA) and ``loss_scale.overflows`` counts one. The scaler then adjusts its scale. The scale,
    the dynamic scaler's counter and the overflow count are parameters of the step, saved in
    every checkpoint.

    Args:
        backbone: The network producing logits.
        loss_fn: Loss on ``(logits, label)``, returning a scalar.
        optimizer: The optimizer over ``backbone``'s parameters.
        clip_norm: Clip the gradients' global norm to this (0: off). Defaults to `0.0`.
        clip_value: Clip every gradient value to ``[-clip_value, clip_value]`` (0: off).
            Defaults to `0.0`.
        accumulate: Micro-batches per optimizer update. Defaults to `1`.
        ema_decay: Keep ``ema.<name>`` = ``decay * ema + (1 - decay) * weight`` after every
            update, starting from the initial weights (0: off), for the weights and batch
            norm's running statistics (``averaged``). Defaults to `0.0`.
        loss_scaler: A ``mindspore.amp`` loss scaler (None: no scaling). Defaults to `None`.
        counts: A cell that adds the step's loss, correct predictions, samples and step to the
            counting parameters in one operator
            (:class:`~trainer.networks.native.ops.NativeStepCounts`), used outside data-parallel
            runs. Defaults to `None`: MindSpore's operators.

    Example:
        >>> step = TrainStep(LeNet5(), nn.SoftmaxCrossEntropyWithLogits(sparse=True,
        ...                  reduction="mean"), optimizer)  # doctest: +SKIP
        >>> model = Model(step, eval_network=..., metrics=...)  # doctest: +SKIP
    """

    def __init__(self, backbone: nn.Cell, loss_fn: nn.Cell, optimizer: nn.Optimizer, *,
                 clip_norm: float = 0.0, clip_value: float = 0.0, accumulate: int = 1,
                 ema_decay: float = 0.0, loss_scaler: amp.LossScaler | None = None,
                 counts: nn.Cell | None = None) -> None:
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
        self.hyper_map = ops.HyperMap()
        self.clip_norm, self.clip_value = float(clip_norm), float(clip_value)
        self.accumulate, self.ema_decay = int(accumulate), float(ema_decay)
        if self.accumulate > 1:
            self.grad_accum = self.weights.clone(prefix="grad_accum", init="zeros")
            self.accum_count = Parameter(Tensor(0, ms.int32), name="grad_accum.count",
                                         requires_grad=False)
        if self.ema_decay > 0:
            # Batch norm's running statistics are averaged with the weights, so the average is
            # validated (and exported) with statistics of its own time.
            buffers = [p for p in backbone.get_parameters() if not p.requires_grad]
            self.averaged = (ms.ParameterTuple([*self.weights, *buffers]) if buffers
                             else self.weights)
            self.ema = self.averaged.clone(prefix="ema", init="same")
        self.scaled = loss_scaler is not None
        if self.scaled:
            self.loss_scaler = loss_scaler
            # The scaler's own parameters, named for the checkpoint and held by the step, so
            # that they are saved and restored with it (the scaler alone is not a Cell).
            loss_scaler.scale_value.name = "loss_scale.value"
            self.loss_scale = loss_scaler.scale_value
            counter = getattr(loss_scaler, "counter", None)
            if counter is not None:
                counter.name = "loss_scale.counter"
                self.loss_scale_counter = counter
            self.overflow_count = Parameter(Tensor(0, ms.int64), name="loss_scale.overflows",
                                            requires_grad=False)
        # Data-parallel (TrainOneStepCell set reducer_flag from the parallel context): the totals
        # count what all workers saw, so every worker reports, and decides on, the same loss and
        # accuracy. Three float32 values (CPU collectives reduce float32 only; per-step counts are
        # far below 2**24, so they stay exact) in the gradients' fusion group, so that with
        # trainer.engine.distributed's fusion settings they travel in the gradients' all-reduce.
        self.sum_workers = (ops.AllReduce().add_prim_attr("fusion", 1) if self.reducer_flag
                            else None)
        self.workers = float(self.degree) if self.reducer_flag else 1.0
        self.counts = counts if self.sum_workers is None else None

    def construct(self, data, label):
        loss, logits = self.network(data, label)
        forward_loss = loss  # not waiting for the update: its all-reduce may join the gradients'
        sens = ops.fill(loss.dtype, loss.shape, self.sens)
        if self.scaled:
            sens = sens * self.loss_scale.astype(loss.dtype)
        grads = self.grad(self.network, self.weights)(data, label, (sens, ops.zeros_like(logits)))
        if self.scaled:
            grads = self.loss_scaler.unscale(grads)
        if self.accumulate > 1:
            loss = ops.depend(loss, self._accumulate(grads))
        else:
            loss = ops.depend(loss, self._update(grads))
        if self.counts is not None:
            return ops.depend(loss, self.counts(logits, label, loss, self.stat_loss_sum,
                                                self.stat_correct, self.stat_samples,
                                                self.stat_steps))
        correct = ops.equal(self.argmax(logits), label).astype(ms.int64).sum()
        samples = ops.scalar_to_tensor(label.shape[0], ms.int64)
        mean_loss = loss.astype(ms.float64)
        if self.sum_workers is not None:
            summed = self.sum_workers(ops.stack([forward_loss.astype(ms.float32),
                                                 correct.astype(ms.float32),
                                                 samples.astype(ms.float32)]))
            mean_loss = summed[0].astype(ms.float64) / self.workers
            correct, samples = summed[1].astype(ms.int64), summed[2].astype(ms.int64)
        loss = ops.depend(loss, ops.assign_add(self.stat_loss_sum, mean_loss))
        loss = ops.depend(loss, ops.assign_add(self.stat_correct, correct))
        loss = ops.depend(loss, ops.assign_add(self.stat_samples, samples))
        loss = ops.depend(loss, ops.assign_add(self.stat_steps, ops.ones((), ms.int64)))
        if self.sum_workers is not None:  # the step's loss over all workers' batches
            loss = ops.depend(mean_loss.astype(loss.dtype), loss)
        return loss

    def _update(self, grads):
        """Averages over the workers, then applies (see :meth:`_apply`); with a loss scaler, only
        when every gradient is finite, counting the update that is skipped, and adjusts the
        scale. The check follows the average, so every worker decides alike."""
        grads = self.grad_reducer(grads)
        if not self.scaled:
            return self._apply(grads)
        finite = amp.all_finite(grads)
        done = ops.assign_add(self.overflow_count, ops.logical_not(finite).astype(ms.int64))
        if finite:
            done = ops.depend(done, self._apply(grads))
        self.loss_scaler.adjust(finite)
        return done

    def _apply(self, grads):
        """Clips, applies, and moves the average of the weights."""
        if self.clip_norm > 0:
            grads = ops.clip_by_global_norm(grads, self.clip_norm)
        if self.clip_value > 0:
            grads = ops.clip_by_value(grads, -self.clip_value, self.clip_value)
        done = self.optimizer(grads)
        if self.ema_decay > 0:
            done = ops.depend(self.hyper_map(ops.partial(_ema, self.ema_decay), self.ema,
                                             self.averaged), done)
        return done

    def _accumulate(self, grads):
        """Adds a micro-batch's gradients; applies the sum on every ``accumulate``-th call."""
        added = self.hyper_map(ops.assign_add, self.grad_accum,
                               self.hyper_map(ops.partial(_scale, 1.0 / self.accumulate), grads))
        count = ops.depend(self.accum_count + 1, added)
        ops.assign(self.accum_count, count)
        if count >= self.accumulate:
            done = self._update(self.grad_accum)
            cleared = ops.depend(self.hyper_map(ops.assign, self.grad_accum,
                                                self.hyper_map(ops.zeros_like, self.grad_accum)),
                                 done)
            ops.assign(self.accum_count, ops.depend(ops.zeros_like(count), cleared))
        return count


class LaunchSteps(nn.Cell):
    """Several training steps in one graph launch: a loop over a stack of batches.

    Launching a compiled graph costs about as much as LeNet's arithmetic on a 2-core CPU, so
    running ``k`` steps per launch removes most of that cost. ``construct`` takes
    ``data [k, B, ...]`` and ``label [k, B]`` and runs ``step`` (a :class:`TrainStep`) on each
    of the ``k`` batches in turn, inside the graph: the same kernels, in the same order, with
    the same rate schedule (the optimizer counts its own steps), so the weights are
    bit-identical to ``k`` separate launches. The loop is a graph loop over a first axis of
    dynamic length, so one compilation serves every ``k``. It returns the last step's loss.
    Parameter names are unchanged (the wrapper adds no prefix), so checkpoints are
    interchangeable with those of ``step`` alone.

    Args:
        step: The single-step train network.

    Example:
        >>> launch = LaunchSteps(TrainStep(net, loss_fn, optimizer))  # doctest: +SKIP
        >>> loss = launch(images_k_b, labels_k_b)  # doctest: +SKIP
    """

    def __init__(self, step: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.step = step
        self._inputs_set = False

    def construct(self, data, label):
        count = ops.dyn_shape(data)[0]
        i = ops.zeros((), ms.int64)
        loss = ops.zeros((), ms.float32)
        while i < count:
            loss = self.step(ops.gather(data, i, 0), ops.gather(label, i, 0))
            i = i + 1
        return loss

    def __call__(self, data, label):
        if not self._inputs_set and context._get_mode() == context.GRAPH_MODE:
            # A first axis of dynamic length: a shorter stack (an epoch's last steps) reuses the
            # compiled graph instead of compiling another.
            self.set_inputs(Tensor(shape=[None, *data.shape[1:]], dtype=data.dtype),
                            Tensor(shape=[None, *label.shape[1:]], dtype=label.dtype))
            self._inputs_set = True
        return super().__call__(data, label)

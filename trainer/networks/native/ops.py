"""The native kernels as MindSpore operators: ``ops.Custom(..., func_type="aot")`` with a bprop.

Each cell here holds operators only, no parameters: the network passes its own layer's weight
(``self.conv1.weight``), so parameter names, and so checkpoints, are those of the network
without the kernels. The backward operators take the forward's inputs for their shapes too
(only the pointers travel), which odd sizes and "same" padding would otherwise leave ambiguous.
Operators whose result no gradient needs (a first layer's input gradient) are dropped from the
compiled graph, so they cost nothing.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

_F32 = ms.float32


def _conv_out(x, w, same: bool):
    if same:
        return (x[0], w[0], x[2], x[3])
    return (x[0], w[0], x[2] - w[2] + 1, x[3] - w[3] + 1)


def _pooled(shape):
    return (shape[0], shape[1], shape[2] // 2, shape[3] // 2)


def _custom(library: str, name: str, out_shape, out_dtype, bprop=None):
    return ops.Custom(f"{library}:{name}", out_shape=out_shape, out_dtype=out_dtype,
                      func_type="aot", bprop=bprop)


class NativeConv2d(nn.Cell):
    """A stride-1 2-D convolution of float32 NCHW tensors (``valid`` or ``same`` padding, any
    kernel size, no dilation or groups), optionally with a bias, a ReLU, and a 2x2 max pooling
    after the ReLU, as one operator forward and two backward (the input's and the weights'
    gradients, each fused with the ReLU's and the pooling's backward passes).

    ``cell(x, weight)`` or ``cell(x, weight, bias)`` returns what
    ``MaxPool2d(2, 2)(ReLU()(Conv2d(x) + bias))`` (or the shorter chain asked for) returns:
    the same values within float32 rounding of the convolution's sums, and the pooling's choice
    of the first of equal values.

    Args:
        library: The kernels' shared library (``trainer.networks.native.library()``).
        pad_mode: ``"valid"`` or ``"same"``. Defaults to `"valid"`.
        relu: Apply a ReLU. Defaults to `False`.
        pool: Then a 2x2 max pooling of stride 2 (needs ``relu``). Defaults to `False`.
        has_bias: Whether a bias is passed. Defaults to `False`.
    """

    def __init__(self, library: str, pad_mode: str = "valid", relu: bool = False,
                 pool: bool = False, has_bias: bool = False) -> None:
        super().__init__()
        if pad_mode not in ("valid", "same"):
            raise ValueError(f"pad_mode must be 'valid' or 'same', not {pad_mode!r}")
        if pool and not relu:
            raise ValueError("the fused pooling follows a ReLU: pass relu=True with pool=True")
        same = pad_mode == "same"
        self.pool = pool
        kind = "conv_relu_pool" if pool else "conv_relu" if relu else "conv"
        mode = "same" if same else "valid"
        self.has_bias = has_bias
        filter_shape = ((lambda x, d, a, w: (w, (w[0],))) if has_bias
                        else (lambda x, d, a, w: w))
        filter_type = (_F32, _F32) if has_bias else _F32
        if kind == "conv":
            filter_shape = ((lambda x, d, w: (w, (w[0],))) if has_bias else (lambda x, d, w: w))
            self.grad_filter = _custom(library, f"{kind}_bwd_filter_{mode}", filter_shape,
                                       filter_type)
            self.grad_input = _custom(library, f"{kind}_bwd_input_{mode}",
                                      lambda d, w, x: x, _F32)
        else:
            self.grad_filter = _custom(library, f"{kind}_bwd_filter_{mode}", filter_shape,
                                       filter_type)
            self.grad_input = _custom(library, f"{kind}_bwd_input_{mode}",
                                      lambda d, a, w, x: x, _F32)

        if pool:
            def out_shape(x, w, *bias):
                shape = _pooled(_conv_out(x, w, same))
                return (shape, shape)
            out_type = (_F32, ms.uint8)
        else:
            def out_shape(x, w, *bias):
                return _conv_out(x, w, same)
            out_type = _F32

        # The gradient's source: dy alone; dy and the ReLU's output; or the pooled gradient
        # and the windows' indices.
        def sources(out, dout):
            if pool:
                return (dout[0], out[1])
            if relu:
                return (dout, out)
            return (dout,)

        if has_bias:
            def bprop(x, w, b, out, dout):
                src = sources(out, dout)
                dw, db = self.grad_filter(x, *src, w)
                return self.grad_input(*src, w, x), dw, db
        else:
            def bprop(x, w, out, dout):
                src = sources(out, dout)
                return self.grad_input(*src, w, x), self.grad_filter(x, *src, w)

        self.forward = _custom(library, f"{kind}_fwd_{mode}", out_shape, out_type, bprop)

    def construct(self, x, weight, bias=None):
        out = self.forward(x, weight) if bias is None else self.forward(x, weight, bias)
        return out[0] if self.pool else out


class NativeMaxPool2x2(nn.Cell):
    """``nn.MaxPool2d(kernel_size=2, stride=2)`` on float32 NCHW tensors as one operator forward
    (the maxima and each window's position, the first of equal values winning) and one backward;
    bit-exact, ties included. An odd last row or column is dropped, as MindSpore's pooling does.

    Args:
        library: The kernels' shared library.
    """

    def __init__(self, library: str) -> None:
        super().__init__()
        self.grad = _custom(library, "maxpool2x2_bwd", lambda d, i, x: x, _F32)

        def bprop(x, out, dout):
            return (self.grad(dout[0], out[1], x),)

        self.forward = _custom(library, "maxpool2x2_fwd",
                               lambda x: (_pooled(x), _pooled(x)), (_F32, ms.uint8), bprop)

    def construct(self, x):
        return self.forward(x)[0]


class NativeDense(nn.Cell):
    """``nn.Dense``'s arithmetic, ``x @ weight.T + bias``, on float32 ``[N, K]`` inputs, optionally
    with a ReLU after it, as one operator forward and one backward (the input's, the weight's and
    the bias's gradients together, through the ReLU). Sums run in a fixed order, so the values
    match ``nn.Dense`` within float32 rounding.

    ``cell(x, weight)`` or ``cell(x, weight, bias)`` with ``nn.Dense``'s parameters
    (``weight`` is ``[M, K]``).

    Args:
        library: The kernels' shared library (``trainer.networks.native.library()``).
        relu: Apply a ReLU. Defaults to `False`.
        has_bias: Whether a bias is passed. Defaults to `True`.
    """

    def __init__(self, library: str, relu: bool = False, has_bias: bool = True) -> None:
        super().__init__()
        kind = "dense_relu" if relu else "dense"
        self.has_bias = has_bias
        if has_bias:
            def grad_shapes(*shapes):
                return (shapes[-2], shapes[-1], (shapes[-1][0],))
        else:
            def grad_shapes(*shapes):
                return (shapes[-2], shapes[-1])
        self.grad = _custom(library, f"{kind}_bwd", grad_shapes, (_F32,) * (3 if has_bias else 2))

        # The gradient's source: dy, and the ReLU's output when there is one.
        def sources(out, dout):
            return (dout, out) if relu else (dout,)

        if has_bias:
            def bprop(x, w, b, out, dout):
                return self.grad(*sources(out, dout), x, w)
        else:
            def bprop(x, w, out, dout):
                return self.grad(*sources(out, dout), x, w)

        def out_shape(x, w, *bias):
            return (x[0], w[0])

        self.forward = _custom(library, f"{kind}_fwd", out_shape, _F32, bprop)

    def construct(self, x, weight, bias=None):
        if self.has_bias:
            return self.forward(x, weight, bias)
        return self.forward(x, weight)


class NativeInference(nn.Cell):
    """A network's inference pass through its native kernels: ``network.native_forward(x)``.

    Training validates and scores the test split with this cell around the network it trains,
    so those passes run the kernels too; the network itself, and so everything exported or
    predicted from it, keeps MindSpore's operators in inference mode.

    Args:
        network: A network with ``native`` set and a ``native_forward`` method (LeNet-5).
    """

    def __init__(self, network) -> None:
        super().__init__(auto_prefix=False)
        self.network = network

    def construct(self, x):
        return self.network.native_forward(x)


class NativeMomentum(nn.Momentum):
    """``nn.Momentum`` whose update of every parameter runs as one operator (the native
    ``momentum_update``) instead of one ``ApplyMomentum`` per parameter: the same arithmetic,
    element by element, with the same parameters (``moments.*``, ``global_step``), so
    checkpoints are those of ``nn.Momentum``. Weight decay, gradient centralisation, the loss
    scale and the per-step learning rate are ``nn.Momentum``'s own.

    The operator writes the weights and their accumulations in place; it is marked as having
    memory side effects, so MindSpore orders it against every other read and write of them.

    Args:
        library: The kernels' shared library (``trainer.networks.native.library()``).
        params: float32 parameters (or groups) as ``nn.Momentum`` takes them, without per-group
            learning rates.
        learning_rate, momentum, weight_decay, use_nesterov: As ``nn.Momentum``'s.
    """

    def __init__(self, library: str, params, learning_rate, momentum: float,
                 weight_decay=0.0, use_nesterov: bool = False) -> None:
        super().__init__(params, learning_rate, momentum, weight_decay=weight_decay,
                         use_nesterov=use_nesterov)
        if self.is_group_lr:
            raise ValueError("NativeMomentum takes one learning rate for every group")
        if any(p.dtype != _F32 for p in self.params):
            raise ValueError("NativeMomentum updates float32 parameters only")
        kind = "momentum_nesterov" if use_nesterov else "momentum"
        self.update = _custom(library, f"{kind}_update", lambda *shapes: (1,), _F32)
        self.update.add_prim_attr("side_effect_mem", True)

    def construct(self, gradients):
        gradients, lr = momentum_prologue(self, gradients)
        return self.update(lr, self.momentum, *self.params, *self.moments, *gradients)


def momentum_prologue(optimizer, gradients):
    """What ``nn.Momentum.construct`` does before its update: weight decay, gradient
    centralisation and the loss scale on ``gradients``, then the step's learning rate read and
    the step counted. Returns the gradients and the rate."""
    gradients = optimizer.decay_weight(gradients)
    gradients = optimizer.gradients_centralization(gradients)
    gradients = optimizer.scale_grad(gradients)
    lr = optimizer.get_lr()
    optimizer.assignadd(optimizer.global_step, optimizer.global_step_increase_tensor)
    return gradients, lr


class NativeStepCounts(nn.Cell):
    """A training step's counts as one native operator, written in place: ``loss_sum += loss``
    (float64), ``correct += `` the rows whose first largest logit is their label, ``samples +=``
    the batch, ``steps += 1``; the same sums as ``TrainStep``'s own operators (argmax, equal,
    cast, sum and four ``AssignAdd``), in one launch instead of about eight.

    ``cell(logits, label, loss, loss_sum, correct, samples, steps)`` with float32 logits,
    int32 or int64 labels, a float32 loss and the step's counting parameters (float64 and int64
    scalars); it returns a value to order other work after.

    Args:
        library: The kernels' shared library (``trainer.networks.native.library()``).
    """

    def __init__(self, library: str) -> None:
        super().__init__()
        self.count = _custom(library, "step_counts", lambda *shapes: (1,), _F32)
        self.count.add_prim_attr("side_effect_mem", True)

    def construct(self, logits, label, loss, loss_sum, correct, samples, steps):
        return self.count(logits, label, loss, loss_sum, correct, samples, steps)

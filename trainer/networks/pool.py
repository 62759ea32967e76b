"""2x2 max pooling with a faster backward pass on CPU, the same function and gradient as
``nn.MaxPool2d(kernel_size=2, stride=2)``.

MindSpore 2.7's CPU ``MaxPoolGrad`` costs several times its forward pass and a large share of
LeNet's training step (BENCHMARKS.md, ``benchmarks/pooling.py``). :class:`MaxPool2x2` computes the
same thing another way while it trains: it lays every 2x2 window out as four values on a last axis,
takes their maximum and its position (``ArgMaxWithValue``, which picks the first of equal values, as
``MaxPoolGrad`` does), and its backward pass puts each window's gradient at that position with a
one-hot. The outputs and the gradients are equal to ``nn.MaxPool2d``'s bit for bit, ties included
(tested), so the weights a run learns are the same. In inference (``set_train(False)``: validation,
testing, prediction, export) it runs MindSpore's ``MaxPool`` itself, which is as fast and which
every export format knows.
"""

from __future__ import annotations

from mindspore import nn, ops


def _windows(x):
    """``[N, C, H, W]`` -> ``[N, C, H/2, W/2, 4]``: each 2x2 window's values in row-major order."""
    _, c, h, w = x.shape
    return (x.reshape(-1, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
            .reshape(-1, c, h // 2, w // 2, 4))


def _unwindows(y, c, h, w):
    """The inverse of :func:`_windows`."""
    return (y.reshape(-1, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
            .reshape(-1, c, h, w))


class _WindowMax(nn.Cell):
    """The training path: the windows' maxima and their positions, with its own backward."""

    def __init__(self) -> None:
        super().__init__()
        self.argmax = ops.ArgMaxWithValue(axis=-1)

    def construct(self, x):
        index, value = self.argmax(_windows(x))
        return value, index

    def bprop(self, x, out, dout):
        _, c, h, w = x.shape
        routed = ops.one_hot(out[1], 4, ops.ones((), x.dtype), ops.zeros((), x.dtype))
        return (_unwindows(routed * dout[0].expand_dims(-1), c, h, w),)


class MaxPool2x2(nn.Cell):
    """``nn.MaxPool2d(kernel_size=2, stride=2)`` (valid padding, NCHW) with a faster backward
    pass on CPU; see the module docstring. Inputs of odd height or width take ``nn.MaxPool2d``
    itself (which drops the last row or column), so any input works.

    Example:
        >>> pool = MaxPool2x2()
        >>> pool(x).shape  # x: [32, 6, 28, 28]  # doctest: +SKIP
        (32, 6, 14, 14)
    """

    summary_layer = True  # one layer in the model summary, not its two inner cells

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.window_max = _WindowMax()

    def construct(self, x):
        if self.training and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0:
            return self.window_max(x)[0]
        return self.pool(x)

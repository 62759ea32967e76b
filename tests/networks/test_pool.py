"""MaxPool2x2 against nn.MaxPool2d: the same outputs and gradients, ties included, and LeNet-5
learning bit-identical weights with either."""

from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from mindspore import nn, ops  # noqa: E402

from trainer.engine.step import LaunchSteps, TrainStep  # noqa: E402
from trainer.networks import LeNet5  # noqa: E402
from trainer.networks.pool import MaxPool2x2  # noqa: E402


class _Scored(nn.Cell):
    """A scalar of the pooled ReLU output, so the gradient reaching the pooling varies."""

    def __init__(self, pool: nn.Cell) -> None:
        super().__init__()
        self.pool, self.relu = pool, nn.ReLU()

    def construct(self, x, weight):
        return (self.pool(self.relu(x)) * weight).sum()


def _tied(shape, seed: int = 0) -> np.ndarray:
    """Random values with whole bands of equal ones: positive ties (a uniform background after
    a convolution), zero ties (after the ReLU) and exact duplicates inside windows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x[:, :, :4] = 0.5
    x[:, :, 4:6] = -1.0
    even = shape[3] - shape[3] % 2
    x[:, :, 6:8, 0:even:2] = x[:, :, 6:8, 1:even:2]  # left and right halves of windows equal
    return x


@pytest.mark.parametrize("mode", ["graph", "pynative"])
@pytest.mark.parametrize("shape", [(4, 6, 28, 28), (4, 16, 10, 10), (3, 2, 9, 7)])
def test_same_outputs_and_gradients_as_maxpool2d(mode, shape):
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    try:
        x = ms.Tensor(_tied(shape))
        out_shape = (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
        weight = ms.Tensor(np.random.default_rng(1).standard_normal(out_shape).astype(np.float32))
        results = []
        for pool in (nn.MaxPool2d(kernel_size=2, stride=2), MaxPool2x2()):
            pool.set_train(True)
            value, grad = ms.value_and_grad(_Scored(pool), grad_position=0)(x, weight)
            results.append((pool(x).asnumpy(), value.asnumpy(), grad.asnumpy()))
        (ref_out, ref_value, ref_grad), (out, value, grad) = results
        assert out.shape == out_shape
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(value, ref_value)
        np.testing.assert_array_equal(grad, ref_grad)
        # Every window sends its whole gradient to exactly one place, ties or not.
        assert np.count_nonzero(grad) <= np.prod(out_shape)
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def test_inference_runs_maxpool_itself():
    pool = MaxPool2x2()
    pool.set_train(False)
    x = ms.Tensor(_tied((2, 3, 8, 8)))
    np.testing.assert_array_equal(pool(x).asnumpy(),
                                  ops.max_pool2d(x, kernel_size=2, stride=2).asnumpy())


def _train(pool_cls, steps_per_launch: int = 4, launches: int = 3) -> list[np.ndarray]:
    ms.set_seed(0)
    net = LeNet5()
    if pool_cls is not None:
        net.max_pool2d = pool_cls()
    opt = nn.Momentum(net.trainable_params(), 0.05, 0.9)
    launch = LaunchSteps(TrainStep(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True,
                                                                         reduction="mean"), opt))
    launch.set_train()
    rng = np.random.default_rng(2)
    for _ in range(launches):
        data = rng.standard_normal((steps_per_launch, 8, 1, 32, 32)).astype(np.float32)
        data[..., :12] = -0.4242  # MNIST's normalised background: ties after every layer
        labels = rng.integers(0, 10, (steps_per_launch, 8)).astype(np.int32)
        launch(ms.Tensor(data), ms.Tensor(labels))
    return [p.asnumpy() for p in net.trainable_params()]


def test_lenet_learns_the_same_weights_as_with_maxpool2d():
    assert isinstance(LeNet5().max_pool2d, MaxPool2x2)
    ours = _train(None)
    tutorial = _train(lambda: nn.MaxPool2d(kernel_size=2, stride=2))
    initial = [p.asnumpy() for p in LeNet5().trainable_params()]
    assert any(not np.array_equal(a, b) for a, b in zip(ours, initial))  # it did train
    for a, b in zip(ours, tutorial):
        np.testing.assert_array_equal(a, b)

"""The train-step options, each against a plain reference computed another way."""

from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from mindspore import nn  # noqa: E402

from trainer.config import TrainConfig  # noqa: E402
from trainer.engine.optim import training_loss  # noqa: E402
from trainer.engine.step import LaunchSteps, TrainStep  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 1, 8, 8)).astype(np.float32)
Y = RNG.integers(0, 10, 12).astype(np.int32)


class Linear(nn.Cell):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.dense = nn.Dense(64, 10, weight_init="normal")

    def construct(self, x):
        return self.dense(self.flatten(x))


def _loss():
    return nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")


def _step(lr=0.5, momentum=0.0, **options):
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(3)
    net = Linear()
    opt = (nn.Momentum(net.trainable_params(), lr, momentum) if momentum
           else nn.SGD(net.trainable_params(), lr))
    return net, TrainStep(net, _loss(), opt, **options)


def _weights(net):
    return {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def _grads(net, x, y):
    """The loss's gradients for ``net``'s weights, by MindSpore's autodiff on a fresh cell."""
    loss_net = nn.WithLossCell(net, _loss())
    grad = ms.grad(loss_net, grad_position=None, weights=net.trainable_params())
    return [g.asnumpy() for g in grad(ms.Tensor(x), ms.Tensor(y))]


def test_clip_by_global_norm_against_a_hand_computation():
    net, step = _step(lr=0.5, clip_norm=0.05)
    before = _weights(net)
    grads = _grads(net, X, Y)
    norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
    assert norm > 0.05  # the clip has work to do
    step(ms.Tensor(X), ms.Tensor(Y))
    after = _weights(net)
    for (name, w0), g in zip(before.items(), grads):
        np.testing.assert_allclose(after[name], w0 - 0.5 * g * (0.05 / norm), rtol=1e-4,
                                   atol=1e-7)


def test_clip_by_value_against_a_hand_computation():
    net, step = _step(lr=0.5, clip_value=0.002)
    before = _weights(net)
    grads = _grads(net, X, Y)
    assert max(float(np.abs(g).max()) for g in grads) > 0.002
    step(ms.Tensor(X), ms.Tensor(Y))
    for (name, w0), g in zip(before.items(), grads):
        np.testing.assert_allclose(_weights(net)[name], w0 - 0.5 * np.clip(g, -0.002, 0.002),
                                   rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("launch", [False, True])
def test_k_micro_batches_give_the_update_of_one_batch_of_k_times_b(launch):
    small, accumulating = _step(lr=0.1, momentum=0.9, accumulate=3)
    big, plain = _step(lr=0.1, momentum=0.9)
    for update in range(2):  # two updates, so momentum carries across them
        rows = slice(update * 6, update * 6 + 6)
        x, y = X[rows].reshape(3, 2, 1, 8, 8), Y[rows].reshape(3, 2)
        if launch:  # the three micro-batches in one graph launch
            LaunchSteps(accumulating)(ms.Tensor(x), ms.Tensor(y))
        else:
            for k in range(3):
                accumulating(ms.Tensor(x[k]), ms.Tensor(y[k]))
        plain(ms.Tensor(X[rows]), ms.Tensor(Y[rows]))
    assert int(accumulating.optimizer.global_step.asnumpy()[0]) == 2  # updates, not batches
    assert int(accumulating.stat_steps.asnumpy()) == 6
    for name, w in _weights(big).items():
        np.testing.assert_allclose(_weights(small)[name], w, rtol=1e-5, atol=1e-7)


def test_a_partial_accumulation_changes_no_weight():
    net, step = _step(accumulate=4)
    before = _weights(net)
    for k in range(3):
        step(ms.Tensor(X[k:k + 1]), ms.Tensor(Y[k:k + 1]))
    assert all(np.array_equal(before[n], w) for n, w in _weights(net).items())
    assert int(step.accum_count.asnumpy()) == 3


def test_ema_against_a_numpy_running_average():
    net, step = _step(lr=0.3, momentum=0.9, ema_decay=0.8)
    average = _weights(net)  # the average starts at the initial weights
    for update in range(5):
        rows = slice(update * 2, update * 2 + 2)
        step(ms.Tensor(X[rows]), ms.Tensor(Y[rows]))
        average = {n: 0.8 * a + 0.2 * _weights(net)[n] for n, a in average.items()}
    kept = {p.name.removeprefix("ema."): p.asnumpy() for p in step.ema}
    for name, value in average.items():
        np.testing.assert_allclose(kept[name], value, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_against_the_formula(smoothing):
    logits = RNG.normal(size=(6, 10)).astype(np.float32)
    labels = RNG.integers(0, 10, 6).astype(np.int32)
    loss = training_loss(TrainConfig(label_smoothing=smoothing).validate())
    got = float(loss(ms.Tensor(logits), ms.Tensor(labels)).asnumpy())
    z = logits.astype(np.float64)
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    target = np.full((6, 10), smoothing / 10)
    target[np.arange(6), labels] += 1 - smoothing
    assert got == pytest.approx(float(-(target * log_p).sum(axis=1).mean()), rel=1e-5)


def test_a_step_without_options_keeps_no_extra_state():
    _, step = _step()
    names = {p.name.split(".")[0] for p in step.get_parameters()}
    assert not names & {"ema", "grad_accum"}

"""Optimizers, initialisers and weight decay on weights only, as --optimizer, --init and
--no-decay-bias build them."""

from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from trainer.config import OPTIMIZERS, TrainConfig  # noqa: E402
from trainer.engine.optim import (  # noqa: E402
    build_train_cells,
    learning_rates,
    parameter_groups,
)
from trainer.networks import build_network  # noqa: E402
from trainer.networks.init import apply_init  # noqa: E402

RNG = np.random.default_rng(0)
X = ms.Tensor(RNG.normal(size=(16, 1, 32, 32)).astype(np.float32))
Y = ms.Tensor(RNG.integers(0, 10, 16).astype(np.int32))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_lowers_the_loss(optimizer):
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    # MindSpore's RMSProp starts its mean square at one (TensorFlow's convention), so its first
    # steps are those of SGD at its rate.
    lr = {"momentum": 0.05, "sgd": 0.4, "adagrad": 0.05, "rmsprop": 0.05}.get(optimizer, 0.002)
    cfg = TrainConfig(optimizer=optimizer, lr=lr, epochs=1).validate()
    cells = build_train_cells(cfg, build_network("lenet").cell, learning_rates(cfg, 30))
    losses = [float(cells.step(X, Y).asnumpy()) for _ in range(30)]
    assert losses[-1] < 0.9 * losses[0], losses


def test_nesterov_reaches_the_optimizer():
    cfg = TrainConfig(nesterov=True).validate()
    cells = build_train_cells(cfg, build_network("lenet").cell, learning_rates(cfg, 4))
    assert cells.step.optimizer.use_nesterov


@pytest.mark.parametrize("init", ["normal", "xavier", "he", "uniform"])
def test_init_draws_conv_and_dense_weights_anew_and_the_seed_repeats_it(init):
    ms.set_seed(1)
    default = build_network("lenet").cell
    ms.set_seed(1)
    drawn = build_network("lenet").cell
    assert apply_init(drawn, init) == 5  # two convolutions, three dense layers
    ms.set_seed(2)
    again = build_network("lenet").cell
    ms.set_seed(2)
    apply_init(again, init)
    pairs = {p.name: p.asnumpy() for p in default.get_parameters()}
    for p in drawn.get_parameters():
        if p.name.endswith("weight"):
            assert not np.array_equal(p.asnumpy(), pairs[p.name]), p.name
        else:
            assert np.array_equal(p.asnumpy(), pairs[p.name]), p.name  # biases are kept
    assert apply_init(default, "default") == 0


def test_no_decay_bias_decays_weights_only():
    net = build_network("lenet").cell
    params = net.trainable_params()
    assert parameter_groups(TrainConfig(weight_decay=0.01).validate(), params) is params
    groups = parameter_groups(TrainConfig(weight_decay=0.01, decay_bias=False).validate(), params)
    decayed, plain = groups[0], groups[1]
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(len(p.shape) > 1 for p in decayed["params"])
    assert {p.name for p in plain["params"]} == {p.name for p in params if p.name.endswith("bias")}
    cfg = TrainConfig(weight_decay=0.01, decay_bias=False).validate()
    cells = build_train_cells(cfg, net, learning_rates(cfg, 4))
    flags = dict(zip((p.name for p in cells.step.optimizer.parameters),
                     cells.step.optimizer.decay_flags))
    assert flags["fc1.weight"] and not flags["fc1.bias"]


def test_accumulation_lays_the_schedule_over_updates():
    cfg = TrainConfig(lr_schedule="cosine", epochs=2, accumulate_steps=4).validate()
    per_step = learning_rates(TrainConfig(lr_schedule="cosine", epochs=2).validate(), 20)
    per_update = learning_rates(cfg, 20)
    assert len(per_update) == 40 // 4 + 1
    np.testing.assert_array_equal(per_update[:-1], per_step[:-1][::4])


@pytest.mark.parametrize("kernels", ["mindspore", "native"])
def test_nesterov_momentum_applies_nesterovs_correction_on_cpu(kernels):
    """--optimizer momentum --nesterov updates as Nesterov's formula on CPU, whichever kernels
    (MindSpore 2.7.2's CPU ApplyMomentum alone would update as plain momentum)."""
    from trainer.networks import native

    if kernels == "native" and native.use_native("native", "CPU") is None:
        pytest.skip("native kernels unavailable here")
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = TrainConfig(nesterov=True, kernels=kernels, lr=0.1, momentum=0.9).validate()
    net = build_network("lenet", kernels=kernels).cell
    cells = build_train_cells(cfg, net, np.full(4, 0.1, dtype=np.float32))
    optimizer = cells.step.optimizer
    assert optimizer.use_nesterov
    params = optimizer.params
    before = [p.asnumpy().astype(np.float64) for p in params]
    grads = [RNG.normal(size=p.shape).astype(np.float32) for p in params]
    for _ in range(2):
        optimizer(tuple(ms.Tensor(g) for g in grads))
    for param, moment, start, grad in zip(params, optimizer.moments, before, grads):
        accum = grad.astype(np.float64)  # first update: 0 * 0.9 + grad
        weight = start - 0.1 * (grad + 0.9 * accum)
        accum = accum * 0.9 + grad
        weight -= 0.1 * (grad + 0.9 * accum)
        np.testing.assert_allclose(moment.asnumpy(), accum, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(param.asnumpy(), weight, rtol=1e-5, atol=1e-5)

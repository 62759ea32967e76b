"""TrainStep's direct launch: the same graph and bit-identical results, with far fewer Python
calls per step, and the normal path whenever the inputs change."""

from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn


def _batches(count: int, size: int = 16, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    rng = np.random.default_rng(seed)
    return [(Tensor(rng.normal(size=(size, 1, 32, 32)).astype(np.float32)),
             Tensor(rng.integers(0, 10, size).astype(np.int32))) for _ in range(count)]


def _train(fast: bool, batches, monkeypatch) -> tuple[dict[str, np.ndarray], int]:
    import mindspore as ms

    from trainer.engine.step import TrainStep
    from trainer.networks import LeNet5

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(7)
    net = LeNet5()
    step = TrainStep(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                     nn.Momentum(net.trainable_params(), 0.01, 0.9), fast_launch=fast)
    step.set_train()
    slow_calls = [0]
    original = nn.TrainOneStepCell.__call__

    def counting(self, *args, **kwargs):
        if self is step:
            slow_calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(nn.TrainOneStepCell, "__call__", counting)
    losses = [float(step(x, y).asnumpy()) for x, y in batches]
    monkeypatch.undo()
    params = {p.name: p.asnumpy().copy() for p in step.get_parameters()}
    params["losses"] = np.array(losses)
    return params, slow_calls[0]


def test_direct_launch_gives_bit_identical_weights_and_totals(monkeypatch):
    batches = _batches(12)
    plain, plain_calls = _train(False, batches, monkeypatch)
    fast, fast_calls = _train(True, batches, monkeypatch)
    assert plain_calls == 12 and fast_calls == 1  # only the first step went the long way
    assert plain.keys() == fast.keys()
    for name in plain:
        np.testing.assert_array_equal(plain[name], fast[name], err_msg=name)
    assert int(fast["train_stats.steps"]) == 12 and int(fast["global_step"]) == 12


def test_a_new_input_shape_takes_the_normal_path_again(monkeypatch):
    batches = _batches(3, size=16) + _batches(2, size=8, seed=1) + _batches(2, size=16, seed=2)
    plain, _ = _train(False, batches, monkeypatch)
    fast, fast_calls = _train(True, batches, monkeypatch)
    # First call, the first call with 8 samples, and the first back at 16 recompile or look up.
    assert fast_calls == 3
    for name in plain:
        np.testing.assert_array_equal(plain[name], fast[name], err_msg=name)


def test_pynative_mode_never_takes_the_direct_launch():
    import mindspore as ms

    from trainer.engine.step import TrainStep
    from trainer.networks import LeNet5

    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        net = LeNet5()
        step = TrainStep(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                         nn.Momentum(net.trainable_params(), 0.01, 0.9))
        for x, y in _batches(2, size=4):
            step(x, y)
        assert step.__dict__.get("_fast_launch") is None
    finally:
        ms.set_context(mode=ms.GRAPH_MODE)


def _launched(groups: list[int], batches) -> dict[str, np.ndarray]:
    """Trains on ``batches`` through LaunchSteps, ``groups`` giving the steps of each launch."""
    import mindspore as ms

    from trainer.engine.step import LaunchSteps, TrainStep
    from trainer.networks import LeNet5

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(7)
    net = LeNet5()
    step = TrainStep(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                     nn.Momentum(net.trainable_params(), nn.cosine_decay_lr(0.0, 0.05, 12, 12, 1),
                                 0.9))
    launch = LaunchSteps(step)
    launch.set_train()
    losses, start = [], 0
    for size in groups:
        chunk = batches[start:start + size]
        start += size
        data = Tensor(np.stack([x.asnumpy() for x, _ in chunk]))
        label = Tensor(np.stack([y.asnumpy() for _, y in chunk]))
        losses.append(float(launch(data, label).asnumpy()))
    assert start == len(batches)
    params = {p.name: p.asnumpy().copy() for p in launch.get_parameters()}
    params["losses"] = np.array(losses)
    return params


def test_several_steps_per_launch_are_bit_identical_to_single_launches():
    """Launches of 5, 4, 1 and 2 steps (one compiled graph: the first axis is dynamic) give the
    weights, optimizer state, schedule position and totals of 12 single steps, and each launch
    returns the loss of its last step."""
    batches = _batches(12)
    single = _launched([1] * 12, batches)
    grouped = _launched([5, 4, 1, 2], batches)
    assert single.keys() == grouped.keys()
    assert "conv1.weight" in grouped and "moments.conv1.weight" in grouped  # names unchanged
    for name in single:
        if name != "losses":
            np.testing.assert_array_equal(single[name], grouped[name], err_msg=name)
    np.testing.assert_array_equal(grouped["losses"], single["losses"][[4, 8, 9, 11]])
    assert int(grouped["train_stats.steps"]) == 12 and int(grouped["global_step"]) == 12

"""LaunchSteps: several TrainSteps in one graph launch, bit-identical to one step a launch."""

from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn


def _batches(count: int, size: int = 16, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    rng = np.random.default_rng(seed)
    return [(Tensor(rng.normal(size=(size, 1, 32, 32)).astype(np.float32)),
             Tensor(rng.integers(0, 10, size).astype(np.int32))) for _ in range(count)]


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

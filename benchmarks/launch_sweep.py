"""Per-step time of ``trainer.engine.step.LaunchSteps`` for several steps per launch, against one.

LeNet-5, batch 32, fixed random inputs, graph mode. One ``TrainStep`` launched alone per step is
the baseline; ``LaunchSteps`` (a graph loop, compiled once for every number of steps) runs the
same step K times per launch. With ``--unrolled``, a Python ``for`` loop unrolled into K copies
of the step is measured too (it compiles K copies). All variants run in one process, in
alternating blocks of about 64 steps, so machine noise hits all alike. Prints each variant's
compile time, median per-step time and median ratio to the baseline (block by block).

    python benchmarks/launch_sweep.py --steps 2 4 8 16 32 64 --unrolled 2 4 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")


def _train_step():
    from mindspore import nn

    from trainer.engine.step import TrainStep
    from trainer.networks import LeNet5

    net = LeNet5()
    step = TrainStep(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                     nn.Momentum(net.trainable_params(), 0.01, 0.9))
    step.set_train()
    return step


def _unrolled(step, k: int):
    from mindspore import nn

    class Unrolled(nn.Cell):
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.step = step

        def construct(self, data, label):
            loss = self.step(data[0], label[0])
            for i in range(1, k):
                loss = self.step(data[i], label[i])
            return loss

    cell = Unrolled()
    cell.set_train()
    return cell


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--unrolled", type=int, nargs="*", default=[])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    import mindspore as ms
    import numpy as np
    from mindspore import Tensor

    from trainer.engine.step import LaunchSteps

    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(0)

    def stack(k: int) -> tuple:
        return (Tensor(rng.normal(size=(k, args.batch_size, 1, 32, 32)).astype(np.float32)),
                Tensor(rng.integers(0, 10, (k, args.batch_size)).astype(np.int32)))

    variants: dict[str, tuple] = {}  # name -> (call, steps per call)
    compile_s: dict[str, float] = {}
    x, y = stack(1)
    single = _train_step()
    t0 = time.perf_counter()
    single(x[0], y[0]).asnumpy()
    compile_s["1 step per launch"] = time.perf_counter() - t0
    variants["1 step per launch"] = (lambda: single(x[0], y[0]), 1)
    launch = LaunchSteps(_train_step())
    launch.set_train()
    for k in args.steps:
        data = stack(k)
        t0 = time.perf_counter()
        launch(*data).asnumpy()  # compiles on the first k only: the first axis is dynamic
        compile_s[f"graph loop, K={k}"] = time.perf_counter() - t0
        variants[f"graph loop, K={k}"] = (lambda data=data: launch(*data), k)
    for k in args.unrolled:
        cell, data = _unrolled(_train_step(), k), stack(k)
        t0 = time.perf_counter()
        cell(*data).asnumpy()
        compile_s[f"unrolled, K={k}"] = time.perf_counter() - t0
        variants[f"unrolled, K={k}"] = (lambda cell=cell, data=data: cell(*data), k)

    per_step: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.blocks):
        for name, (call, k) in variants.items():
            calls = max(1, 64 // k)
            t0 = time.perf_counter()
            for _ in range(calls):
                out = call()
            out.asnumpy()
            per_step[name].append((time.perf_counter() - t0) * 1000 / (calls * k))
    base = per_step["1 step per launch"]
    print(f"\n{'variant':<20} {'first call s':>12} {'median ms/step':>15} {'ratio':>7}")
    for name, values in per_step.items():
        ratio = statistics.median(v / b for v, b in zip(values, base))
        print(f"{name:<20} {compile_s[name]:>12.2f} {statistics.median(values):>15.3f} "
              f"{ratio:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

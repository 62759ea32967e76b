"""LeNet-5's training step with MindSpore's operators against the native CPU kernels.

Both variants are the step ``train.py`` runs (``TrainStep`` in ``LaunchSteps``, momentum, batch
``--batch-size``, ``--steps`` steps per launch), built from the same seed and fed the same fixed
batches, in one process: blocks of about 64 steps alternate between them, so machine noise hits
both alike; the figure is the median block's time per step. Before timing, both train the same
few launches from the same weights and the largest difference of their weights is printed (the
convolutions' sums run in another order, so it is float32 rounding, not zero). With
``--profile``, MindSpore's profiler then gives each operator's time per step for both.

    python benchmarks/native_step.py --blocks 30 --profile
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")

from benchmarks.pooling import profile  # noqa: E402

VARIANTS = ("mindspore", "native")


def build(kernels: str, seed: int):
    """The launch cell and its network, with ``kernels``."""
    import mindspore as ms
    from mindspore import nn

    from trainer.engine.step import LaunchSteps, TrainStep
    from trainer.networks import LeNet5

    ms.set_seed(seed)
    net = LeNet5(kernels=kernels)
    if kernels == "native" and not net.native:
        raise SystemExit("the native kernels are unavailable here (see the log line above)")
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    launch = LaunchSteps(TrainStep(net, loss, nn.Momentum(net.trainable_params(), 0.01, 0.9)))
    launch.set_train()
    return launch, net


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30, help="timed blocks per variant")
    parser.add_argument("--steps", type=int, default=16, help="steps per launch (train.py: 16)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="also time every operator")
    args = parser.parse_args(argv)

    import logging

    import mindspore as ms

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    rng = np.random.default_rng(args.seed)
    data = rng.standard_normal((args.steps, args.batch_size, 1, 32, 32)).astype(np.float32)
    data[..., :10] = -0.4242  # MNIST's normalised background: ties in the pooling windows
    data = ms.Tensor(data)
    labels = ms.Tensor(rng.integers(0, 10, (args.steps, args.batch_size)).astype(np.int32))
    start = time.perf_counter()
    cells = {name: build(name, args.seed) for name in VARIANTS}
    print(f"building both networks (the kernels' library included): "
          f"{time.perf_counter() - start:.2f} s")
    for name, (cell, _) in cells.items():
        start = time.perf_counter()
        cell(data, labels).asnumpy()
        print(f"{name}: first launch (compilation) {time.perf_counter() - start:.2f} s")
    for _ in range(3):
        for cell, _ in cells.values():
            cell(data, labels)
    weights = [[p.asnumpy() for p in net.trainable_params()] for _, net in cells.values()]
    worst = max(float(np.abs(a - b).max() / (np.abs(a).max() + 1e-30))
                for a, b in zip(*weights))
    print(f"weights after {4 * args.steps} steps from the same start: largest difference "
          f"{worst:.2e} of the layer's largest weight")

    per_block = max(1, 64 // args.steps)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.blocks):
        for name, (cell, _) in cells.items():
            start = time.perf_counter()
            for _ in range(per_block):
                result = cell(data, labels)
            result.asnumpy()
            times[name].append((time.perf_counter() - start) * 1000 / (per_block * args.steps))
    base = statistics.median(times[VARIANTS[0]])
    print(f"\n{'kernels':12s} {'ms/step (median)':>17s} {'spread':>15s} {'ratio':>6s}")
    for name in VARIANTS:
        med = statistics.median(times[name])
        print(f"{name:12s} {med:17.2f} {min(times[name]):7.2f}-{max(times[name]):<7.2f} "
              f"{med / base:6.3f}")
    if args.profile:
        ops = {name: profile(cell, data, labels, 8) for name, (cell, _) in cells.items()}
        names = sorted(set().union(*ops.values()), key=lambda k: -max(o.get(k, 0.0)
                                                                    for o in ops.values()))
        print(f"\n{'operator (ms per step)':36s} " + " ".join(f"{n:>12s}" for n in VARIANTS))
        for op in names:
            print(f"{op:36s} " + " ".join(f"{ops[n].get(op, 0.0):12.3f}" for n in VARIANTS))
        print(f"{'all operators':36s} " + " ".join(f"{sum(ops[n].values()):12.3f}"
                                                   for n in VARIANTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())

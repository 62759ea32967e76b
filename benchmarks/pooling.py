"""LeNet-5's training step with the tutorial's ``nn.MaxPool2d`` against ``MaxPool2x2``.

Both variants are the step ``train.py`` runs (``TrainStep`` in ``LaunchSteps``, momentum, batch
``--batch-size``, ``--steps`` steps per launch), built from the same seed and fed the same fixed
batches, in one process: blocks of about 64 steps alternate between them, so machine noise hits
both alike; the figure is the median block's time per step. Before timing, both train the same
few launches from the same weights and the weights are compared bit for bit. With
``--profile``, MindSpore's profiler then gives each operator's time per step for both.

    python benchmarks/pooling.py --blocks 30 --profile
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")

VARIANTS = ("nn.MaxPool2d (the tutorial's)", "MaxPool2x2 (LeNet5's now)")


def build(variant: str, seed: int):
    """The launch cell and its network, with the pooling ``variant``."""
    import mindspore as ms
    from mindspore import nn

    from trainer.engine.step import LaunchSteps, TrainStep
    from trainer.networks import LeNet5

    ms.set_seed(seed)
    net = LeNet5()
    if variant == VARIANTS[0]:
        net.max_pool2d = nn.MaxPool2d(kernel_size=2, stride=2)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    launch = LaunchSteps(TrainStep(net, loss, nn.Momentum(net.trainable_params(), 0.01, 0.9)))
    launch.set_train()
    return launch, net


def profile(cell, data, labels, launches: int) -> dict[str, float]:
    """Milliseconds per step of each operator type over ``launches`` launches."""
    import mindspore as ms

    with tempfile.TemporaryDirectory() as out:
        profiler = ms.Profiler(output_path=out)
        for _ in range(launches):
            result = cell(data, labels)
        result.asnumpy()
        profiler.stop()
        profiler.analyse()
        table = next(Path(out).rglob("cpu_op_type_info_*.csv"))
        with table.open() as handle:
            rows = list(csv.DictReader(handle))
    steps = launches * data.shape[0]
    return {row["op_type"]: float(row["total_compute_time"]) / steps for row in rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30, help="timed blocks per variant")
    parser.add_argument("--steps", type=int, default=16, help="steps per launch (train.py: 16)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="also time every operator")
    args = parser.parse_args(argv)

    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    rng = np.random.default_rng(args.seed)
    data = rng.standard_normal((args.steps, args.batch_size, 1, 32, 32)).astype(np.float32)
    data[..., :10] = -0.4242  # MNIST's normalised background: ties in the pooling windows
    data = ms.Tensor(data)
    labels = ms.Tensor(rng.integers(0, 10, (args.steps, args.batch_size)).astype(np.int32))
    cells = {name: build(name, args.seed) for name in VARIANTS}
    for name, (cell, _) in cells.items():
        start = time.perf_counter()
        cell(data, labels).asnumpy()
        print(f"{name}: first launch (compilation) {time.perf_counter() - start:.2f} s")
    for _ in range(3):
        for cell, _ in cells.values():
            cell(data, labels)
    weights = [[p.asnumpy() for p in net.trainable_params()] for _, net in cells.values()]
    same = all(np.array_equal(a, b) for a, b in zip(*weights))
    print(f"weights after {4 * args.steps} identical steps: "
          f"{'bit-identical' if same else 'DIFFERENT'}")

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
    print(f"\n{'variant':34s} {'ms/step (median)':>17s} {'spread':>15s} {'ratio':>6s}")
    for name in VARIANTS:
        med = statistics.median(times[name])
        print(f"{name:34s} {med:17.2f} {min(times[name]):7.2f}-{max(times[name]):<7.2f} "
              f"{med / base:6.3f}")
    if args.profile:
        ops = {name: profile(cell, data, labels, 8) for name, (cell, _) in cells.items()}
        names = sorted(set().union(*ops.values()), key=lambda k: -max(o.get(k, 0.0)
                                                                    for o in ops.values()))
        print(f"\n{'operator (ms per step)':36s} " + " ".join(f"{n[:20]:>20s}" for n in VARIANTS))
        for op in names:
            print(f"{op:36s} " + " ".join(f"{ops[n].get(op, 0.0):20.3f}" for n in VARIANTS))
        print(f"{'all operators':36s} " + " ".join(f"{sum(ops[n].values()):20.3f}"
                                                   for n in VARIANTS))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

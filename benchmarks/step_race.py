"""The race both step benchmarks run (benchmarks/pooling.py, benchmarks/native_step.py): two
variants of LeNet-5's training step as ``train.py`` runs it (``TrainStep`` in ``LaunchSteps``,
momentum), fed the same fixed batches in one process, timed in alternating blocks of about 64
steps so machine noise hits both alike; optionally each operator's time from MindSpore's
profiler."""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def parser(description: str) -> argparse.ArgumentParser:
    """The flags of a step race."""
    made = argparse.ArgumentParser(description=description)
    made.add_argument("--blocks", type=int, default=30, help="timed blocks per variant")
    made.add_argument("--steps", type=int, default=16, help="steps per launch (train.py: 16)")
    made.add_argument("--batch-size", type=int, default=32)
    made.add_argument("--seed", type=int, default=0)
    made.add_argument("--profile", action="store_true", help="also time every operator")
    return made


def launch_cell(net):
    """``net``'s training step as train.py launches it: cross-entropy, momentum 0.9, lr 0.01
    (the engine's momentum and step counts: one operator each when the network runs the native
    kernels)."""
    from mindspore import nn

    from trainer.config import TrainConfig
    from trainer.engine.step import LaunchSteps, TrainStep
    from trainer.registry import OPTIMIZERS

    cfg = TrainConfig(lr=0.01, momentum=0.9).validate()
    native, counts = {}, None
    if getattr(net, "native", False):
        from trainer.networks.native import use_native
        from trainer.networks.native.ops import NativeStepCounts

        native["native"] = use_native("native")
        counts = NativeStepCounts(native["native"])
    momentum = OPTIMIZERS.get("momentum")(net.trainable_params(), 0.01, cfg, 0.0, **native)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    launch = LaunchSteps(TrainStep(net, loss, momentum, counts=counts))
    launch.set_train()
    return launch


def fixed_batches(args):
    """One launch of seeded batches, with MNIST's normalised background in the first columns so
    that pooling windows tie; and their labels."""
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    rng = np.random.default_rng(args.seed)
    data = rng.standard_normal((args.steps, args.batch_size, 1, 32, 32)).astype(np.float32)
    data[..., :10] = -0.4242
    labels = rng.integers(0, 10, (args.steps, args.batch_size)).astype(np.int32)
    return ms.Tensor(data), ms.Tensor(labels)


def warm_up(cells: dict, data, labels) -> list[list[np.ndarray]]:
    """Compiles each variant (printing how long that took), trains all of them the same four
    launches, and returns each one's weights."""
    for name, (cell, _) in cells.items():
        start = time.perf_counter()
        cell(data, labels).asnumpy()
        print(f"{name}: first launch (compilation) {time.perf_counter() - start:.2f} s")
    for _ in range(3):
        for cell, _ in cells.values():
            cell(data, labels)
    return [[p.asnumpy() for p in net.trainable_params()] for _, net in cells.values()]


def race(cells: dict, data, labels, args, label: str, width: int) -> None:
    """Times the variants in alternating blocks and prints the table of medians (the first
    variant is the ratios' base); with ``--profile``, each operator's ms per step."""
    per_block = max(1, 64 // args.steps)
    times: dict[str, list[float]] = {name: [] for name in cells}
    for _ in range(args.blocks):
        for name, (cell, _) in cells.items():
            start = time.perf_counter()
            for _ in range(per_block):
                result = cell(data, labels)
            result.asnumpy()
            times[name].append((time.perf_counter() - start) * 1000 / (per_block * args.steps))
    base = statistics.median(next(iter(times.values())))
    print(f"\n{label:{width}s} {'ms/step (median)':>17s} {'spread':>15s} {'ratio':>6s}")
    for name, got in times.items():
        med = statistics.median(got)
        print(f"{name:{width}s} {med:17.2f} {min(got):7.2f}-{max(got):<7.2f} {med / base:6.3f}")
    if args.profile:
        ops = {name: profile(cell, data, labels, 8) for name, (cell, _) in cells.items()}
        names = sorted(set().union(*ops.values()), key=lambda k: -max(o.get(k, 0.0)
                                                                    for o in ops.values()))
        print(f"\n{'operator (ms per step)':36s} " + " ".join(f"{n[:20]:>20s}" for n in ops))
        for op in names:
            print(f"{op:36s} " + " ".join(f"{ops[n].get(op, 0.0):20.3f}" for n in ops))
        print(f"{'all operators':36s} " + " ".join(f"{sum(o.values()):20.3f}"
                                                   for o in ops.values()))


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

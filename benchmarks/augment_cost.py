"""--augment on the host against the same resampling on the device, per batch of 32 at 32x32.

    python benchmarks/augment_cost.py --repeats 300

The host version is ``trainer.data.augment.augment_batch`` (numpy, in the input pipeline's
thread); the device version builds the same affine grids and samples them with MindSpore's
``ops.affine_grid`` and ``ops.grid_sample`` in a compiled graph, as a train step would.
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


def host(images: np.ndarray, repeats: int) -> list[float]:
    from trainer.data.augment import augment_batch

    times = []
    for i in range(repeats):
        start = time.perf_counter()
        augment_batch(images, np.random.default_rng((0, 0, i)), -0.42)
        times.append(time.perf_counter() - start)
    return times


def device(images: np.ndarray, repeats: int) -> list[float] | str:
    import mindspore as ms
    from mindspore import nn, ops

    ms.set_context(mode=ms.GRAPH_MODE)

    class Warp(nn.Cell):
        def construct(self, x, theta):
            grid = ops.affine_grid(theta, x.shape, align_corners=False)
            return ops.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                                   align_corners=False)

    warp = Warp()
    x = ms.Tensor(images)
    rng = np.random.default_rng(0)
    times = []
    try:
        for i in range(repeats + 1):
            angle = np.deg2rad(rng.uniform(-10, 10, len(images)))
            scale = rng.uniform(0.9, 1.1, len(images))
            theta = np.zeros((len(images), 2, 3), np.float32)
            theta[:, 0, 0] = theta[:, 1, 1] = np.cos(angle) / scale
            theta[:, 0, 1], theta[:, 1, 0] = -np.sin(angle) / scale, np.sin(angle) / scale
            theta[:, :, 2] = rng.uniform(-0.125, 0.125, (len(images), 2))
            start = time.perf_counter()
            warp(x, ms.Tensor(theta)).asnumpy()
            if i:  # the first call compiles
                times.append(time.perf_counter() - start)
    except (RuntimeError, TypeError, ValueError) as exc:
        return f"not available here ({str(exc).splitlines()[0][:80]})"
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    images = np.random.default_rng(1).normal(size=(32, 1, 32, 32)).astype(np.float32)
    print("| where | ms per batch of 32 (median) |")
    print("|---|---|")
    on_host = statistics.median(host(images, args.repeats)) * 1e3
    print(f"| host, numpy (the pipeline) | {on_host:.3f} |")
    on_device = device(images, args.repeats)
    shown = (on_device if isinstance(on_device, str)
             else f"{statistics.median(on_device) * 1e3:.3f}")
    print(f"| device, affine_grid + grid_sample | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

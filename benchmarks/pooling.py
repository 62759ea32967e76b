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

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")

from benchmarks.step_race import fixed_batches, launch_cell, parser, race, warm_up  # noqa: E402

VARIANTS = ("nn.MaxPool2d (the tutorial's)", "MaxPool2x2 (LeNet5's now)")


def build(variant: str, seed: int):
    """The launch cell and its network, with the pooling ``variant``."""
    import mindspore as ms
    from mindspore import nn

    from trainer.networks import LeNet5

    ms.set_seed(seed)
    net = LeNet5()
    if variant == VARIANTS[0]:
        net.max_pool2d = nn.MaxPool2d(kernel_size=2, stride=2)
    return launch_cell(net), net


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    data, labels = fixed_batches(args)
    cells = {name: build(name, args.seed) for name in VARIANTS}
    weights = warm_up(cells, data, labels)
    same = all(np.array_equal(a, b) for a, b in zip(*weights))
    print(f"weights after {4 * args.steps} identical steps: "
          f"{'bit-identical' if same else 'DIFFERENT'}")
    race(cells, data, labels, args, "variant", 34)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

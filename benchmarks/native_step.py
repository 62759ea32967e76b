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

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")

from benchmarks.step_race import fixed_batches, launch_cell, parser, race, warm_up  # noqa: E402

VARIANTS = ("mindspore", "native")


def build(kernels: str, seed: int):
    """The launch cell and its network, with ``kernels``."""
    import mindspore as ms

    from trainer.networks import LeNet5

    ms.set_seed(seed)
    net = LeNet5(kernels=kernels)
    if kernels == "native" and not net.native:
        raise SystemExit("the native kernels are unavailable here (see the log line above)")
    return launch_cell(net), net


def main(argv=None) -> int:
    import logging

    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data, labels = fixed_batches(args)
    start = time.perf_counter()
    cells = {name: build(name, args.seed) for name in VARIANTS}
    print(f"building both networks (the kernels' library included): "
          f"{time.perf_counter() - start:.2f} s")
    weights = warm_up(cells, data, labels)
    worst = max(float(np.abs(a - b).max() / (np.abs(a).max() + 1e-30))
                for a, b in zip(*weights))
    print(f"weights after {4 * args.steps} steps from the same start: largest difference "
          f"{worst:.2e} of the layer's largest weight")
    race(cells, data, labels, args, "kernels", 12)
    return 0


if __name__ == "__main__":
    sys.exit(main())

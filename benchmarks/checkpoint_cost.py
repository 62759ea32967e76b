"""Cost of checkpoint bundles: time to save and to load+verify one, for LeNet-5 and the MLP.

Saves go through ``trainer.checkpoint.save_bundle`` (host copy of every parameter, SHA-256,
MindSpore protobuf, fsync, rename); loads through ``load_bundle`` (parse, checksum) plus
``load_into`` (name/shape check and copy into the network). Prints medians over ``--repeats``.

    python benchmarks/checkpoint_cost.py --repeats 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")


def measure(net_name: str, repeats: int) -> dict[str, float]:
    import mindspore as ms
    from mindspore import nn

    from trainer.checkpoint import load_bundle, load_into, save_bundle
    from trainer.checkpoint.meta import BundleMeta
    from trainer.engine.step import TrainStep
    from trainer.networks import build_network

    ms.set_context(mode=ms.GRAPH_MODE)
    net = build_network(net_name).cell
    opt = nn.Momentum(net.trainable_params(), ms.Tensor([0.01] * 20000, ms.float32), 0.9)
    step = TrainStep(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), opt)
    meta = BundleMeta(epoch=0, step_in_epoch=0, global_step=0, steps_per_epoch=1)
    saves, loads = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bundle.ckpt"
        for _ in range(repeats):
            start = time.perf_counter()
            save_bundle(step, path, meta)
            saves.append(time.perf_counter() - start)
            start = time.perf_counter()
            bundle = load_bundle(path)
            load_into(step, bundle.params)
            loads.append(time.perf_counter() - start)
        size = path.stat().st_size
    params = sum(int(p.size) for p in net.trainable_params())
    return {"params": params, "size_kib": size / 1024, "save_ms": statistics.median(saves) * 1e3,
            "load_ms": statistics.median(loads) * 1e3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"{'network':<8} {'weights':>9} {'file KiB':>9} {'save ms':>8} {'load+verify ms':>15}")
    for name in ("lenet", "mlp"):
        r = measure(name, args.repeats)
        print(f"{name:<8} {r['params']:>9d} {r['size_kib']:>9.0f} {r['save_ms']:>8.1f} "
              f"{r['load_ms']:>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

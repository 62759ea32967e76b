"""The same LeNet-5 run in PyTorch eager: the baseline ``train.py``'s wall time is compared to.

Same work as ``python train.py --net lenet --epochs N``: the same IDX files with the same tenth
of the training digits held out for validation (``trainer.data.holdout``, the files train.py
uses), resized to 32x32 bilinearly and normalised with MNIST's mean and deviation once, LeNet-5
(5x5 valid convolutions, 2x2 max pooling, dense 120-84-10, ReLU), cross-entropy, SGD with
momentum 0.9 and lr 0.01, batch 32 with the last incomplete batch dropped, a new shuffle every
epoch, a validation pass over the held-out digits after every epoch and one pass over the test
split at the end. It prints the same kind of probe lines as ``benchmarks.probes.Clock`` so the
benchmark reads both alike.

It imports nothing of MindSpore or of this project (MindSpore's import alone costs seconds):
``benchmarks/run.py`` prepares the split folders ``train.py`` reads and passes them with
``--splits``; run by hand without it, the script asks ``benchmarks.splits`` (which imports the
project) for them first, before its clock starts counting.

    pip install torch==2.13.0   # the CPU wheel on these machines
    python benchmarks/torch_lenet.py --data-dir ../shared/data/mnist-subset --epochs 3
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np

# The raw IDX files of each split folder (as trainer.data.idx.SPLIT_FILES names them).
SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MAX_ITEMS = 10_000_000  # a bound on what a header may declare before memory is spent


def launch_time() -> float:
    """When the command started (as ``benchmarks.probes.launch_time``, without MindSpore)."""
    if os.environ.get("MSTRAIN_BENCH_T0"):
        return float(os.environ["MSTRAIN_BENCH_T0"])
    with open("/proc/self/stat", encoding="ascii") as stat:
        start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat", encoding="ascii") as proc:
        boot = next(int(line.split()[1]) for line in proc if line.startswith("btime"))
    return boot + start_ticks / os.sysconf("SC_CLK_TCK")


def read_idx(path: Path) -> np.ndarray:
    """An uncompressed IDX file of unsigned bytes (1 or 3 dimensions), checked."""
    with open(path, "rb") as handle:
        zero, kind, ndim = struct.unpack(">HBB", handle.read(4))
        if zero != 0 or kind != 0x08 or ndim not in (1, 3):
            raise SystemExit(f"{path}: not an IDX file of unsigned bytes")
        dims = struct.unpack(f">{ndim}I", handle.read(4 * ndim))
        if dims[0] > MAX_ITEMS or any(d > 64 for d in dims[1:]):
            raise SystemExit(f"{path}: declares {dims}, beyond this script's bounds")
        data = np.frombuffer(handle.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise SystemExit(f"{path}: {data.size} bytes of payload for dimensions {dims}")
    return data.reshape(dims).copy()


def peer_parser(description: str) -> argparse.ArgumentParser:
    """The flags of ``benchmarks.splits.peer_parser``, and ``--splits``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--eval-batch-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--splits", type=Path, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                        help="the split folders train.py reads (benchmarks.splits.run_splits)")
    return parser


def main(argv=None) -> int:
    parser = peer_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    if args.splits is None:  # by hand: the project finds them, before the clock starts
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from benchmarks.splits import run_splits

        found = run_splits(args.data_dir)
        args.splits = [found["train"], found["val"], found["test"]]
        os.environ["MSTRAIN_BENCH_T0"] = repr(time.time())
    t0 = launch_time()

    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(args.seed)

    def load(folder: Path, names: str):
        images_path, labels_path = (folder / name for name in SPLIT_FILES[names])
        x = torch.from_numpy(read_idx(images_path)).float().div_(255.0).unsqueeze(1)
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        x = (x - 0.1307) / 0.3081
        return x.contiguous(), torch.from_numpy(read_idx(labels_path)).long()

    train_x, train_y = load(args.splits[0], "train")
    val_x, val_y = load(args.splits[1], "test")
    test_x, test_y = load(args.splits[2], "test")

    class LeNet5(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = torch.flatten(x, 1)
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    model = LeNet5()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    steps = len(train_y) // args.batch_size
    generator = torch.Generator().manual_seed(args.seed)
    first = True
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train_y), generator=generator)
        total = 0.0
        for k in range(steps):
            idx = order[k * args.batch_size:(k + 1) * args.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            loss.backward()
            opt.step()
            total += loss.item() if k % 100 == 0 else 0.0
            if first:
                first = False
                print(f"BENCH first_step {time.time() - t0:.3f}", file=sys.stderr, flush=True)
        accuracy = score(model, val_x, val_y, args.eval_batch_size)
        print(f"BENCH epoch {epoch} {time.time() - t0:.3f} {accuracy:.6f}", file=sys.stderr,
              flush=True)
        print(f"epoch {epoch}: validation accuracy {accuracy:.4f}")
    accuracy = score(model, test_x, test_y, args.eval_batch_size)
    print(f"BENCH test {accuracy:.6f}", file=sys.stderr, flush=True)
    print(f"Test accuracy: {accuracy:.4f}")
    return 0


def score(model, x, y, batch: int) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for k in range(0, len(y), batch):
            correct += (model(x[k:k + batch]).argmax(1) == y[k:k + batch]).sum().item()
    return correct / len(y)


if __name__ == "__main__":
    sys.exit(main())

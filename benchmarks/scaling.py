"""How ``python train.py --net lenet`` scales with the number of training digits, up to MNIST's
full 60,000: seconds per epoch, peak memory and the decoded-data cache on disk.

    python benchmarks/scaling.py --data-dir ../shared/data/mnist-subset --sizes 14262 30000 60000

Larger training sets are the subset's digits followed by copies shifted by one or two pixels
(real strokes, new pixels), written as IDX files; the test split is the subset's. Each size runs
the README's command with ``--epochs 2`` (defaults otherwise, so a tenth is held out for
validation); the figure per epoch is the second epoch's ``epoch_time`` in ``history.json``
(training and validation). Peak memory is the whole process's (wait4); the cache is the training
split's decoded digits on disk.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import ROOT, run  # noqa: E402

SHIFTS = [(dy, dx) for dy in (-2, -1, 0, 1, 2) for dx in (-2, -1, 0, 1, 2) if (dy, dx) != (0, 0)]


def tiled(images: np.ndarray, labels: np.ndarray, size: int):
    """``size`` digits: ``images`` first, then copies shifted by a few pixels, in turn."""
    out_x, out_y, have, k = [images], [labels], len(labels), 0
    while have < size:
        dy, dx = SHIFTS[k % len(SHIFTS)]
        take = min(len(labels), size - have)
        out_x.append(np.roll(images[:take], (dy, dx), axis=(1, 2)))
        out_y.append(labels[:take])
        have, k = have + take, k + 1
    return np.concatenate(out_x)[:size], np.concatenate(out_y)[:size]


def make_data(source: Path, target: Path, size: int) -> Path:
    from trainer.data.idx import SPLIT_FILES, find_split, read_idx, write_idx

    images, labels = (read_idx(p) for p in find_split(source / "train", "train"))
    x, y = tiled(images, labels, size)
    (target / "train").mkdir(parents=True)
    write_idx(target / "train" / SPLIT_FILES["train"][0], x)
    write_idx(target / "train" / SPLIT_FILES["train"][1], y)
    shutil.copytree(source / "test", target / "test")
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[14262, 30000, 60000])
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in args.sizes:
            data = make_data(args.data_dir.resolve(), tmp / f"data-{size}", size)
            cache = tmp / f"cache-{size}"
            out = tmp / f"runs-{size}"
            # The first run decodes into the cache; the measured run reads it, as later runs do.
            for name in ("fill", "measured"):
                result = run([sys.executable, str(ROOT / "train.py"), "--net", "lenet",
                              "--epochs", "2", "--data-dir", str(data), "--output-dir",
                              str(out), "--run-name", name, "--no-plot"],
                             env={"MSTRAIN_CACHE": str(cache)})
            history = json.loads((out / "measured" / "history.json").read_text())
            seconds = history["rows"][-1]["epoch_time"]
            decoded = [p for p in (cache / "mstrain" / "decoded").iterdir()
                       if p.name.startswith("train-")]
            cache_mb = sum(f.stat().st_size for d in decoded for f in d.iterdir()) / 1e6
            rows.append((size, seconds, result.peak_rss_mb, cache_mb))
    base = rows[0]
    print("| training digits | s/epoch (epoch 2) | against the first | peak MB | cache MB |")
    print("|---|---|---|---|---|")
    for size, seconds, peak, cache_mb in rows:
        print(f"| {size:,} | {seconds:.2f} | {seconds / base[1]:.2f}x for {size / base[0]:.2f}x "
              f"the digits | {peak:.0f} | {cache_mb:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

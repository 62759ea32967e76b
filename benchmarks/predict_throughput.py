"""Throughput and accuracy of ``predict.py`` on real digits saved as ordinary image files.

The first ``--count`` test digits of an MNIST folder are written as PNG files the way a person
would draw them (dark digit on white, upscaled ``--scale`` times), and as an IDX test split. Then:

* ``predict.py`` runs on the folder of PNGs as a user would (a subprocess, timed whole, MindSpore
  start-up included), and in-process (reading and preprocessing the PNGs plus inference, timed
  ``--repeats`` times after a warm-up call, median reported) in both execution modes;
* ``train.py --eval-only`` evaluates the same digits from the IDX split, and ``predict.py`` runs on
  that IDX file with its labels.

The accuracy on the PNGs against the accuracy on the IDX digits shows what the MNIST-style
preprocessing (invert, crop, fit 20x20, centre by mass) costs or keeps.

    python benchmarks/predict_throughput.py --ckpt /tmp/eval-runs/subset3 \\
        --data-dir ../shared/data/mnist-subset
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_v", "3")


def write_inputs(data_dir: Path, work: Path, count: int, scale: int) -> np.ndarray:
    """Writes ``work/pngs/*.png`` and the IDX split ``work/idx``; returns the labels."""
    from PIL import Image

    from trainer.data.idx import SPLIT_FILES, find_split, read_idx, write_idx

    found = find_split(data_dir / "test", "test")
    if found is None:
        sys.exit(f"error: no test split in {data_dir / 'test'}")
    images, labels = read_idx(found[0])[:count], read_idx(found[1])[:count]
    pngs = work / "pngs"
    pngs.mkdir()
    size = 28 * scale
    for i, image in enumerate(images):
        picture = Image.fromarray(255 - image).resize((size, size), Image.Resampling.BILINEAR)
        picture.save(pngs / f"{i:04d}.png")
    test, train = work / "idx" / "test", work / "idx" / "train"
    test.mkdir(parents=True)
    train.mkdir()
    for name, array in zip(SPLIT_FILES["test"], (images, labels)):
        write_idx(test / name, array)
    # --eval-only checks that the training files exist too; it does not read them.
    for source in find_split(data_dir / "train", "train") or ():
        (train / source.name).symlink_to(source.resolve())
    return labels.astype(np.int64)


def run(argv: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "GLOG_v": "3"})
    elapsed = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{result.stderr}")
    return result, elapsed


def in_process(ckpt: str, folder: Path, labels: np.ndarray, mode: str,
               repeats: int) -> tuple[float, float, float]:
    """Median images/s of reading + preprocessing + inference, by the clock and per CPU second
    (the process's CPU time, which other load on the machine disturbs less), and the accuracy."""
    from trainer.serving.loading import load_network
    from trainer.serving.predict import collect_inputs, predict_probabilities

    loaded = load_network(ckpt, mode=mode)
    probs = None
    times, cpu = [], []
    for _ in range(repeats + 1):  # the first call compiles (graph mode) and warms caches
        start, start_cpu = time.perf_counter(), time.process_time()
        inputs = collect_inputs([folder])
        probs = predict_probabilities(loaded.cell, inputs.images, loaded.image_size)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return (len(labels) / statistics.median(times[1:]), len(labels) / statistics.median(cpu[1:]),
            float((probs.argmax(axis=1) == labels).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint or run directory")
    parser.add_argument("--data-dir", required=True, type=Path, help="MNIST folder with test/")
    parser.add_argument("--count", type=int, default=1000, help="digits (default: 1000)")
    parser.add_argument("--scale", type=int, default=3, help="upscaling of the PNGs (default: 3)")
    parser.add_argument("--repeats", type=int, default=5, help="timed in-process passes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="predict-bench-") as tmp:
        work = Path(tmp)
        labels = write_inputs(args.data_dir, work, args.count, args.scale)
        pngs = work / "pngs"
        print(f"{len(labels)} digits from {args.data_dir}, written as {28 * args.scale}px PNGs "
              "(dark digit on white)")

        result, wall = run(["predict.py", "--ckpt", args.ckpt, str(pngs), "--json"])
        report = json.loads(result.stdout)
        top = np.array([row["top"][0]["class"] for row in report["predictions"]])
        png_accuracy = float((top == labels).mean())
        print(f"predict.py on the PNG folder, whole command: {wall:.2f} s "
              f"({len(labels) / wall:.0f} images/s including MindSpore start-up)")

        for mode in ("pynative", "graph"):
            rate, per_cpu, accuracy = in_process(args.ckpt, pngs, labels, mode, args.repeats)
            print(f"in-process, {mode:8s}: {rate:.0f} images/s, {per_cpu:.0f} images per CPU "
                  f"second (medians of {args.repeats}; read + preprocess + infer), accuracy "
                  f"{accuracy:.4f}")

        run(["train.py", "--eval-only", "--ckpt", args.ckpt, "--data-dir", str(work / "idx"),
             "--results-dir", str(work / "eval")])
        evaluation = json.loads((work / "eval" / "evaluation.json").read_text())
        idx = work / "idx" / "test"
        result, _ = run(["predict.py", "--ckpt", args.ckpt, str(idx / "t10k-images-idx3-ubyte"),
                         "--labels", str(idx / "t10k-labels-idx1-ubyte"), "--json"])
        idx_accuracy = json.loads(result.stdout)["accuracy"]
        print(f"accuracy: predict.py on the PNGs {png_accuracy:.4f}; train.py --eval-only on the "
              f"same digits (IDX) {evaluation['accuracy']:.4f}; predict.py on the IDX file "
              f"{idx_accuracy:.4f}")


if __name__ == "__main__":
    main()

"""Samples per second of the training input pipeline alone, cached and streaming.

Iterates ``trainer.data.build_dataset``'s training pipeline (batch 32, shuffled, as ``train.py``
builds it) for whole epochs with nothing consuming the batches, after one warm-up epoch (which
also builds the decoded-data cache). ``cached`` (the default) cuts whole batches from the digits
decoded once; ``streaming`` (``--no-data-cache``) decodes, resizes and batches every sample on
every epoch through ``MnistDataset``.

    python benchmarks/pipeline_throughput.py --data-dir ../shared/data/mnist-subset
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")


def throughput(data_dir: Path, cache: bool, epochs: int, batch_size: int,
               num_workers: int) -> list[float]:
    """Samples per second of each timed epoch."""
    from trainer.data import build_dataset, prepare_split

    split = prepare_split(data_dir, "train")
    dataset = build_dataset(split.folder, "train", image_size=32, batch_size=batch_size,
                            training=True, num_workers=num_workers, cache=cache)
    iterator = dataset.create_tuple_iterator(num_epochs=epochs + 1)
    rates = []
    for epoch in range(epochs + 1):
        start, samples = time.perf_counter(), 0
        for _, labels in iterator:  # one epoch: the iterator stops at its end
            samples += labels.shape[0]
        if epoch:  # the first epoch is a warm-up
            rates.append(samples / (time.perf_counter() - start))
    return rates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args(argv)
    results = {}
    for cache in (True, False):
        name = "cached" if cache else "streaming"
        rates = throughput(args.data_dir, cache, args.epochs, args.batch_size, args.num_workers)
        results[name] = {"median_samples_per_s": statistics.median(rates), "epochs": rates}
        print(f"{name:<10} {statistics.median(rates):>10.0f} samples/s  "
              f"(epochs: {', '.join(f'{r:.0f}' for r in rates)})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The folders of raw IDX files a default ``train.py`` run reads, for the peers of the benchmarks
to read the same digits: the training files less the held-out tenth, the held-out tenth (under
the test split's file names), and the test split."""

from __future__ import annotations

import argparse
from pathlib import Path


def peer_parser(description: str) -> argparse.ArgumentParser:
    """The flags every peer of the README's command takes: the same recipe, the same data."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--eval-batch-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run_splits(data_dir: Path, val_split: float = 0.1) -> dict[str, Path]:
    """``{"train", "val", "test"}``: folders of raw IDX files holding the digits ``train.py``
    trains, validates and tests on (the rows ``--val-split`` holds out of the training files,
    chosen as ``train.py`` chooses them), written once into an entry of the tool's cache."""
    import hashlib

    from trainer.config import TrainConfig
    from trainer.data.entries import cached_entry
    from trainer.data.idx import SPLIT_FILES, read_idx, write_idx
    from trainer.data.pipeline import prepare_data

    cfg = TrainConfig(data_dir=str(data_dir), val_split=val_split, download=False)
    prepared = prepare_data(cfg, progress=False)
    source = prepared.source
    key = hashlib.sha1(f"peers|{val_split!r}|{source.key('train')}|{source.key('test')}"
                       .encode()).hexdigest()[:16]

    def fill(staging: Path) -> dict:
        train_images, train_labels = (read_idx(p) for p in source.files("train"))
        parts = {"train": (prepared.rows["train"], "train"),
                 "val/test": (prepared.rows["val"], "test")}
        for part, (rows, names) in parts.items():
            (staging / part).mkdir(parents=True)
            write_idx(staging / part / SPLIT_FILES[names][0], train_images[rows])
            write_idx(staging / part / SPLIT_FILES[names][1], train_labels[rows])
        return {"about": f"the splits train.py reads from {data_dir}, as IDX files for the "
                         "benchmarks' peers"}

    entry = cached_entry("benchmark-splits", key, fill, lambda target, meta: None)
    return {"train": entry / "train", "val": entry / "val" / "test",
            "test": source.folder("test").folder}

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
    """``{"train", "val", "test"}``: folders of raw IDX files, made as ``train.py`` makes them
    (decompressed once, the held-out digits written once under the cache folder)."""
    from trainer.config import TrainConfig
    from trainer.data.pipeline import locate_splits

    cfg = TrainConfig(data_dir=str(data_dir), val_split=val_split, download=False)
    return {name: info.folder for name, info in locate_splits(cfg, progress=False).items()}

"""Append one CSV row per epoch."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from mindspore.train import Callback

from callbacks.stats import EpochStats


class CSVLogger(Callback):
    """Appends each completed epoch's logs to a CSV file, flushing after every row.

    Unlike ``History``, which rewrites its files, this one only appends: it is the log to
    ``tail -f``. A resumed run appends to the same file; the header is written once, and columns
    that appear later (e.g. validation starting) are added as the file is rewritten once.

    Args:
        path: The CSV file.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None`.
    """

    launch_aware = True  # right when a step end covers several steps (stats.launch_steps)

    def __init__(self, path: str | os.PathLike, stats: EpochStats | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.stats = stats or EpochStats()

    def on_train_epoch_begin(self, run_context) -> None:
        self.stats.begin_epoch(run_context.original_args())

    def on_train_step_end(self, run_context) -> None:
        self.stats.on_step(run_context.original_args())

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        if self.stats.epoch_complete(cb_params):
            self.append(self.stats.epoch_logs(cb_params))

    def append(self, row: dict[str, Any]) -> None:
        """Appends ``row``, widening the header when it brings new columns."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header: list[str] = []
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="") as handle:
                header = next(csv.reader(handle), [])
        new = [k for k in row if k not in header]
        if new and header:
            from trainer.fileio import atomic_path

            with open(self.path, newline="") as handle:
                old_rows = list(csv.DictReader(handle))
            header += new
            with atomic_path(self.path, suffix=".csv") as tmp, open(tmp, "w", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=header)
                writer.writeheader()
                writer.writerows(old_rows)
        elif new:
            header = list(row)
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
            if handle.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
            handle.flush()

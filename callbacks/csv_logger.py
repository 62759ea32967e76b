"""Append one CSV row per epoch."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from callbacks.base import StatsCallback
from callbacks.stats import EpochStats
from trainer.errors import OutputError, os_fault


class CSVLogger(StatsCallback):
    """Appends each completed epoch's logs to a CSV file, flushing after every row.

    Unlike ``History``, which rewrites its files, this one only appends: it is the log to
    ``tail -f``. A resumed run appends to the same file; the header is written once, and columns
    that appear later (e.g. validation starting) are added as the file is rewritten once.

    Args:
        path: The CSV file.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None`.
    """

    def __init__(self, path: str | os.PathLike, stats: EpochStats | None = None) -> None:
        super().__init__(stats)
        self.path = Path(path)

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        if self.stats.epoch_complete(cb_params):
            try:
                self.append(self.stats.epoch_logs(cb_params))
            except OSError as exc:
                raise OutputError(f"Cannot append to {self.path}: {os_fault(exc)}. Free disk "
                                  "space or make the folder writable, then continue with "
                                  "--resume auto.") from None

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

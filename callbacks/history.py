"""Per-epoch history: kept in memory, written to JSON and CSV, drawn to a PNG."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

from callbacks.base import StatefulCallback, number_rows, state_value
from callbacks.plotting import PlotProcess, plot_history
from callbacks.stats import EpochStats
from trainer.errors import OutputError, os_fault
from trainer.fileio import atomic_write_text

logger = logging.getLogger("mstrain")

_FIRST_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time",
                  "test_loss", "test_accuracy")


class History(StatefulCallback):
    """Records every completed epoch and writes ``history.json``, ``history.csv``, ``history.png``.

    Each row holds ``epoch``, the mean training ``loss`` and ``accuracy`` (from the training
    forward pass), ``val_*`` metrics, the ``lr`` for the next step and ``epoch_time`` in seconds.
    :attr:`history` maps each name to its list of values, like Keras's ``History.history``.
    The JSON and CSV files are rewritten atomically after every epoch. The plot is redrawn on a
    background thread after an epoch only while drawing stays under ``plot_budget`` of the time
    training has run (the first drawing costs about a second with matplotlib's import, later ones
    0.2-0.5 s; a LeNet epoch on MNIST takes a few seconds, so a short run draws once or twice),
    and at the end unless the last drawing already shows every epoch.

    Args:
        directory: Where the files go; None keeps the history in memory only. Defaults to `None`.
        plot: Draw ``history.png``. Defaults to `True`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None` (a private one).
        plot_budget: Largest share of the wall time that redrawing during training may take.
            Defaults to `0.05`.
        last_plot_in_background: Draw the last plot, at train end, in the background (the
            caller calls :meth:`finish` before it reads ``history.png``), so it overlaps what
            follows training. Defaults to `False`: the plot is there when ``fit`` returns.
        plot_process: Draw in a child process (:class:`~callbacks.plotting.PlotProcess`,
            started at train begin) rather than in a thread of this one. Defaults to `False`.

    Example:
        >>> history = History("runs/demo")
        >>> model.fit(3, train, valid, callbacks=[history])  # doctest: +SKIP
        >>> history.history["val_accuracy"]  # doctest: +SKIP
        [0.93, 0.96, 0.97]
    """

    def __init__(self, directory: str | Path | None = None, plot: bool = True,
                 stats: EpochStats | None = None, plot_budget: float = 0.05,
                 last_plot_in_background: bool = False, plot_process: bool = False) -> None:
        super().__init__(stats)
        self.last_plot_in_background = last_plot_in_background
        self.plot_process = plot_process
        self._process: PlotProcess | None = None
        self._asked: tuple[list[dict[str, Any]], float] | None = None  # rows sent, when
        self.directory = Path(directory) if directory is not None else None
        self.plot = plot
        self.rows: list[dict[str, Any]] = []
        self.test: dict[str, Any] = {}  # the test split's scores at the end (see add_test)
        self._plotter: threading.Thread | None = None
        self.plot_budget = plot_budget
        self._draw_seconds = 1.0  # cost of the last drawing (before the first: an estimate)
        self._drawn_at = -float("inf")
        self._drawn_rows: list[dict[str, Any]] | None = None  # what history.png shows

    @property
    def history(self) -> dict[str, list]:
        """Column name to the values of each epoch (None where an epoch lacks the value)."""
        names = self._columns()
        return {name: [row.get(name) for row in self.rows] for name in names}

    @property
    def epochs(self) -> list[int]:
        """The epoch numbers recorded (1-based)."""
        return [int(row["epoch"]) for row in self.rows]

    def _columns(self) -> list[str]:
        seen = list(_FIRST_COLUMNS)
        for row in self.rows:
            seen += [k for k in row if k not in seen]
        present = {k for row in self.rows for k in row}
        return [k for k in seen if k in present]

    def on_train_begin(self, run_context) -> None:
        super().on_train_begin(run_context)
        self.test = {}
        self._drawn_at = time.perf_counter()  # the budget counts from the start of training
        if self.plot_process and self.plot and self.directory is not None and not self._process:
            try:
                self._process = PlotProcess()
            except OSError as exc:
                logger.warning("Drawing history.png in this process: %s", exc)

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        if not self.stats.epoch_complete(cb_params):
            return  # stopped part-way: the epoch is recorded when a resumed run completes it
        row = dict(self.stats.epoch_logs(cb_params))
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        self.write(background_plot=True)

    def on_train_end(self, run_context) -> None:
        self.wait()
        if self.rows:
            self.write(background_plot=self.last_plot_in_background, when_due=False)
        if not self.last_plot_in_background:
            self.finish()  # else the caller does, once it needs the plot

    def add_test(self, results: dict[str, Any]) -> None:
        """Records the test split's scores after training: the final weights' go into the last
        row (``test_accuracy``, ``test_loss``), and all of them, the best checkpoint's too, into
        ``history.json`` under ``"test"``; the files are written again."""
        self.test = dict(results)
        if self.rows:
            self.rows[-1].update(results.get("final", {}))
        self.write(draw=False)  # the plot shows the epochs only: it stays as it is

    def write(self, background_plot: bool = False, draw: bool = True,
              when_due: bool = True) -> None:
        """Writes the JSON and CSV files and (re)draws the PNG (``draw``; not when it shows
        these rows already; in the background only when the plot budget allows, unless not
        ``when_due``)."""
        if self.directory is None:
            return
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self._columns(), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.directory / "history.json",
                              json.dumps(_finite_only({"history": self.history, "rows": self.rows,
                                                       "test": self.test}),
                                         indent=2, default=_json_safe, allow_nan=False) + "\n")
            atomic_write_text(self.directory / "history.csv", buffer.getvalue())
        except OSError as exc:
            raise OutputError(f"Cannot write the history into {self.directory}: "
                              f"{os_fault(exc)}. Free disk space or make the folder writable; "
                              "the run's checkpoints keep the history, so continue with "
                              "--resume auto.") from None
        rows = [dict(r) for r in self.rows]
        if not self.plot or not draw or rows == self._drawn_rows:
            return
        if background_plot:
            if when_due and (time.perf_counter() - self._drawn_at
                             < self._draw_seconds / self.plot_budget):
                return  # drawn recently enough; the final drawing comes at train end
            self.wait()
            if self._process is not None:
                self._ask(rows)
                return
            self._plotter = threading.Thread(target=self._draw_quietly, args=(rows,), daemon=True)
            self._plotter.start()
        else:
            self.wait()
            if self._process is not None:
                self._ask(rows)
                self.wait()
            else:
                self._draw(rows)

    def _draw(self, rows: list[dict[str, Any]]) -> None:
        start = time.perf_counter()
        plot_history(rows, self.directory / "history.png")
        self._drawn_at = time.perf_counter()
        self._draw_seconds = self._drawn_at - start
        self._drawn_rows = rows

    def _ask(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._process.draw(rows, self.directory / "history.png")
            self._asked = (rows, time.perf_counter())
        except OSError as exc:
            logger.warning("Could not draw history.png: the plotting process ended (%s)", exc)
            self.finish()

    def wait(self) -> None:
        """Waits for a plot being drawn in the background."""
        if self._plotter is not None:
            self._plotter.join()
            self._plotter = None
        if self._asked is not None:
            rows, asked_at = self._asked
            self._asked = None
            try:
                self._process.result()
                self._drawn_at = time.perf_counter()
                self._draw_seconds = self._drawn_at - asked_at
                self._drawn_rows = rows
            except RuntimeError as exc:
                logger.warning("Could not draw history.png: %s", exc)

    def finish(self) -> None:
        """Waits for a plot being drawn in the background and ends the plotting process, if
        any (a later ``train`` call starts another)."""
        self.wait()
        if self._process is not None:
            self._process.close()
            self._process = None

    def _draw_quietly(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._draw(rows)
        except Exception as exc:  # a plot must never stop training
            logger.warning("Could not draw history.png: %s", exc)

    def reset_state(self) -> None:
        self.rows = []

    def state_dict(self) -> dict[str, Any]:
        """The recorded rows."""
        return {"rows": [dict(r) for r in self.rows]}

    @classmethod
    def check_state(cls, state: dict[str, Any]) -> None:
        """Refuses a saved state of the wrong shape (``ValueError``)."""
        super().check_state(state)
        number_rows(state_value(state, "rows", "list", []), "rows")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the recorded rows; missing keys keep the defaults."""
        self.check_state(state)
        self.rows = [dict(r) for r in state.get("rows", [])]


def _json_safe(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


def _finite_only(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_only(v) for v in value]
    return value

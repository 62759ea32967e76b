"""history.png: the drawing itself, and a child process that draws it beside training.

This module imports nothing of MindSpore, so the child process (:class:`PlotProcess`) starts in
a fraction of a second and spends its time on matplotlib only.
"""

from __future__ import annotations

import json
import math
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

# The folder holding the callbacks and trainer packages, for the child process's imports.
_ROOT = Path(__file__).resolve().parents[1]
# The longest a drawing may take before the process is given up: a bound for a process that
# hangs, far above what a drawing takes.
ANSWER_TIMEOUT_S = 120.0

# The child's program: this file run as a module of its own (the callbacks package would
# import MindSpore), with the packages' folder first on its path and nothing else from the
# parent's environment (-I).
_SERVE = ("import importlib.util, sys; sys.path.insert(0, sys.argv[1]); "
          "spec = importlib.util.spec_from_file_location('mstrain_plotting', sys.argv[2]); "
          "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
          "module.serve()")


def plot_history(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Draws loss and accuracy curves, training against validation, to a PNG (Agg backend).

    Args:
        rows: History rows as recorded by :class:`~callbacks.history.History`.
        path: The PNG to write (atomically).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from trainer.fileio import atomic_path

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    panels = (("loss", "Loss (cross-entropy)"), ("accuracy", "Accuracy"))
    for index, (name, title) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 2, index)
        for key, label, style in ((name, "training", "o-"), (f"val_{name}", "validation", "s-")):
            values = [r.get(key) for r in rows]
            if any(v is not None for v in values):
                ax.plot(epochs, [math.nan if v is None else v for v in values], style,
                        label=label, markersize=4)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 15 else epochs[:: max(1, len(epochs) // 10)])
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def serve() -> None:
    """The child process's loop: matplotlib's import at once (while the parent compiles its
    step), then one request a line on standard input (``{"rows": [...], "path": "..."}``),
    answered by one line on standard output, ``ok`` or ``error: <why>``; it ends at the end of
    its input (the parent closed it or ended)."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except Exception:  # noqa: BLE001 - the first request reports it
        pass
    for line in sys.stdin:
        try:
            request = json.loads(line)
            plot_history(request["rows"], Path(request["path"]))
            answer = "ok"
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which logs it
            answer = f"error: {type(exc).__name__}: {exc}"
        print(answer.replace("\n", " "), flush=True)


class PlotProcess:
    """A child Python process that draws history.png for a training run.

    In a thread of the training process, matplotlib's import and each drawing hold its
    interpreter lock, which the training loop and the final test need between their graph
    launches: they slow both (docs/speed.md). A process of its own imports matplotlib while
    the parent compiles, then draws beside training on whatever CPU time is free.

    Raises:
        OSError: the process could not be started.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _SERVE, str(_ROOT), str(Path(__file__).resolve())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, encoding="utf-8")
        self.pending = False

    def draw(self, rows: list[dict[str, Any]], path: Path) -> None:
        """Asks for a drawing of ``rows`` into ``path``; :meth:`result` waits for it.

        Raises:
            OSError: the process has ended.
        """
        self.proc.stdin.write(json.dumps({"rows": rows, "path": str(path)}, default=str) + "\n")
        self.proc.stdin.flush()
        self.pending = True

    def result(self) -> None:
        """Waits for the drawing asked for, if any.

        Raises:
            RuntimeError: the drawing failed, or the process ended, with why.
        """
        if not self.pending:
            return
        self.pending = False
        ready, _, _ = select.select([self.proc.stdout], [], [], ANSWER_TIMEOUT_S)
        if not ready:
            self.proc.kill()
            raise RuntimeError(f"the plotting process gave no answer in {ANSWER_TIMEOUT_S:.0f} s")
        answer = self.proc.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(answer.removeprefix("error: ") or
                               f"the plotting process ended (status {self.proc.poll()})")

    def close(self) -> None:
        """Ends the process (after the drawing in progress, if any)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()

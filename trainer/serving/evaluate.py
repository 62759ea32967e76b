"""Where a trained network fails: the per-class table, plots and a JSON report of a checkpoint.

:func:`evaluate_checkpoint` loads a checkpoint's network, scores it on the test split with
:func:`trainer.evaluation.evaluate_network` (the loop the end of training uses too) and prints the
table; :func:`write_report` then writes ``confusion.png``, ``mistakes.png`` and
``evaluation.json`` (all atomically).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from trainer.evaluation import Evaluation, evaluate_network
from trainer.fileio import atomic_path, atomic_write_text

CONFUSION_PNG = "confusion.png"
MISTAKES_PNG = "mistakes.png"
EVALUATION_JSON = "evaluation.json"


def format_report(ev: Evaluation) -> str:
    """The per-class table and the confusion matrix as aligned text."""
    rows = ev.per_class()
    side = max(5, *(len(row["name"]) for row in rows))
    lines = [f"{'class':<{side}}  count  correct  accuracy  precision"]
    for row in rows:
        acc = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "-"
        prec = f"{row['precision']:.4f}" if row["precision"] is not None else "-"
        lines.append(f"{row['name']:>{side}}  {row['count']:>5}  {row['correct']:>7}  "
                     f"{acc:>8}  {prec:>9}")
    lines.append(f"{'all':>{side}}  {ev.count:>5}  {ev.correct:>7}  {ev.accuracy:>8.4f}")
    width = max(4, len(str(int(ev.matrix.max(initial=0)))) + 1)
    n = ev.matrix.shape[0]
    named = any(ev.name(k) != str(k) for k in range(n))
    lines += ["", "Confusion matrix (rows: true class, columns: predicted class):",
              "true\\pred" + "".join(f"{k:>{width}}" for k in range(n))]
    for k in range(n):
        lines.append(f"{k:>9}" + "".join(f"{v:>{width}}" for v in ev.matrix[k]))
    if named:
        lines.append("Classes: " + ", ".join(f"{k} {ev.name(k)}" for k in range(n)))
    return "\n".join(lines)


def output_folder(checkpoint: str | os.PathLike) -> Path:
    """Where reports about a checkpoint go: its run directory, or the folder it lies in.

    A bundle saved by a run lives in ``RUN/checkpoints/``, so its reports go to ``RUN``; a
    checkpoint anywhere else gets them beside it.
    """
    path = Path(checkpoint)
    folder = path.parent
    return folder.parent if folder.name == "checkpoints" else folder


def write_report(ev: Evaluation, folder: str | os.PathLike) -> dict[str, Path]:
    """Writes ``confusion.png``, ``mistakes.png`` and ``evaluation.json`` into ``folder``.

    Returns:
        The paths written, by kind (``confusion``, ``mistakes``, ``json``).

    Raises:
        OSError: the folder cannot be created or written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"confusion": folder / CONFUSION_PNG, "mistakes": folder / MISTAKES_PNG,
             "json": folder / EVALUATION_JSON}
    plot_confusion(ev, paths["confusion"])
    plot_mistakes(ev, paths["mistakes"])
    report = ev.to_dict()
    report["files"] = {k: str(v) for k, v in paths.items() if k != "json"}
    atomic_write_text(paths["json"], json.dumps(report, indent=2, allow_nan=False) + "\n")
    return paths


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def plot_confusion(ev: Evaluation, path: str | os.PathLike) -> None:
    """Draws the confusion matrix as a heatmap with the counts in the cells (Agg backend)."""
    matrix = ev.matrix
    n = matrix.shape[0]
    extra = 0.07 * max(len(ev.name(k)) for k in range(n))  # room for long class names
    fig = _figure(max(5.0, 0.55 * n + 2.2 + extra), max(4.4, 0.5 * n + 1.8 + extra))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="samples")
    top = matrix.max(initial=0)
    for (row, col), value in np.ndenumerate(matrix):
        if value:
            ax.text(col, row, str(value), ha="center", va="center", fontsize=8,
                    color="white" if value > top / 2 else "black")
    labels = [ev.name(k) for k in range(n)]
    ax.set_xticks(range(n), labels, rotation=90 if max(map(len, labels)) > 2 else 0, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    name = f"{ev.net}: " if ev.net else ""
    ax.set_title(f"{name}accuracy {ev.accuracy:.2%} ({ev.correct}/{ev.count}), "
                 f"loss {ev.loss:.4f}", fontsize=10)
    fig.tight_layout()
    _save(fig, Path(path))


def plot_mistakes(ev: Evaluation, path: str | os.PathLike) -> None:
    """Draws the most confident mistakes in a grid: the digit, its label, the prediction and p."""
    shown = ev.mistakes
    wrong = ev.count - ev.correct
    if not shown:
        fig = _figure(4.0, 1.5)
        fig.text(0.5, 0.5, f"No misclassified images ({ev.count} evaluated).", ha="center",
                 va="center")
        _save(fig, Path(path))
        return
    cols = min(6, len(shown))
    rows = -(-len(shown) // cols)
    fig = _figure(1.35 * cols + 0.3, 1.5 * rows + 0.6)
    for k, mistake in enumerate(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        if mistake.image.ndim == 3:  # colour, shown in colour
            ax.imshow(mistake.image, vmin=0.0, vmax=1.0)
        else:
            ax.imshow(mistake.image, cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(f"true {ev.name(mistake.label)[:12]}, pred "
                     f"{ev.name(mistake.predicted)[:12]}\n"
                     f"p={mistake.probability:.2f}  #{mistake.index}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{len(shown)} of {wrong} misclassified test images, most confident first",
                 fontsize=9)
    fig.tight_layout()
    _save(fig, Path(path))


def evaluate_checkpoint(ckpt, cfg, results_dir: str | os.PathLike | None = None, *,
                        net: str | None = None, source: Any = None,
                        recorded: bool = False) -> dict[str, Any]:
    """Evaluates a checkpoint's weights on the test split and writes a report.

    One pass over the test split of ``cfg``'s data gives the loss, the accuracy, per-class
    accuracy and the confusion matrix; the table is printed, and ``confusion.png``,
    ``mistakes.png`` and ``evaluation.json`` go into ``results_dir``.

    Args:
        ckpt: A bundle, a plain MindSpore checkpoint, a ``latest.json`` or a run directory (its
            ``best.ckpt`` when there is one).
        cfg: The configuration naming the data, device and mode.
        results_dir: Folder for the report. Defaults to `None`: the checkpoint's run directory
            (the folder holding ``checkpoints/``), or the folder the checkpoint is in.
        net: The network to build instead of the one the checkpoint records. Defaults to
            `None`.
        source: A data source object to evaluate on instead of ``cfg.data_source`` (what
            ``Trainer(source=...)`` trained on). Defaults to `None`.
        recorded: Evaluate on the data source and folder the checkpoint's run recorded (the
            command line named neither). Defaults to `False`.

    Returns:
        ``{"accuracy", "loss", "count", "correct", "per_class", "confusion_matrix", "files",
        "checkpoint"}``.

    Raises:
        CheckpointError: the checkpoint is missing, damaged or of another network.
        OutputError: the report cannot be written.
    """
    import logging
    import sys

    from trainer.data import build_run_data, prepare_data
    from trainer.errors import DataError, OutputError, os_fault
    from trainer.extras import check_tracking
    from trainer.serving.loading import load_network, recorded_data
    from trainer.tracking import report_serving

    logger = logging.getLogger("mstrain")
    check_tracking(cfg.trackers())  # a missing extra is refused before any work
    loaded = load_network(ckpt, net=net, device=cfg.device, mode=cfg.mode)
    if recorded and source is None:
        cfg = recorded_data(cfg, loaded.bundle)
    prepared = prepare_data(cfg, progress=sys.stderr.isatty(), need_train=False, source=source)
    info = prepared.info
    if info.channels != loaded.in_channels or info.num_classes > loaded.num_classes:
        raise DataError(f"Checkpoint {loaded.bundle.path} was trained on {loaded.in_channels}-"
                        f"channel images of {loaded.num_classes} classes, but --data-source "
                        f"{cfg.data_source} ({info.about}) has {info.channels}-channel images of "
                        f"{info.num_classes} classes. Evaluate it on the data it was trained on "
                        "(--data-source and --data-dir as in its config.yaml).")
    data = build_run_data(cfg, prepared, loaded.image_size, normalisation=loaded.normalisation)
    ev = evaluate_network(loaded.cell, data.valid, loaded.num_classes,
                          normalisation=data.normalisation)
    ev.checkpoint, ev.net = str(loaded.bundle.path), loaded.net
    ev.class_names = loaded.class_names or list(info.class_names)
    logger.info("Checkpoint %s: test accuracy %.4f (%d/%d), test loss %.4f.", loaded.bundle.path,
                ev.accuracy, ev.correct, ev.count, ev.loss)
    logger.info("%s", format_report(ev))
    folder = Path(results_dir) if results_dir else output_folder(loaded.bundle.path)
    try:
        files = write_report(ev, folder)
    except OSError as exc:
        raise OutputError(f"Cannot write the evaluation report into {folder}: {os_fault(exc)}. "
                          "Pass --results-dir DIR, a folder you may write to.") from None
    logger.info("Wrote %s", ", ".join(str(p) for p in files.values()))
    report_serving(cfg, loaded.bundle, output_folder(loaded.bundle.path),
                   {"eval/accuracy": ev.accuracy, "eval/loss": ev.loss},
                   [(files["confusion"], "image"), (files["mistakes"], "image"),
                    (files["json"], "file")], what="evaluation")
    return {"accuracy": ev.accuracy, "loss": ev.loss, "count": ev.count, "correct": ev.correct,
            "per_class": ev.per_class(), "confusion_matrix": ev.matrix.tolist(),
            "files": {k: str(v) for k, v in files.items()}, "checkpoint": str(loaded.bundle.path)}

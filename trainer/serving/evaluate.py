"""Where a trained network fails: a confusion matrix, per-class accuracy, plots and a JSON report.

:func:`evaluate_network` makes one pass over a dataset with the network in inference mode and
collects everything from the same logits: the loss (the mean over samples of the cross-entropy
that training minimises), the confusion matrix (accuracy is its trace over its total, so the two
always agree) and the most confident mistakes with their images. :func:`write_report` then writes
``confusion.png``, ``mistakes.png`` and ``evaluation.json`` (all atomically).
"""

from __future__ import annotations

import heapq
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.transforms import MNIST
from trainer.fileio import atomic_path, atomic_write_text

# How many misclassified digits mistakes.png shows (a 6 x 6 grid), most confident first.
MISTAKES_SHOWN = 36

CONFUSION_PNG = "confusion.png"
MISTAKES_PNG = "mistakes.png"
EVALUATION_JSON = "evaluation.json"


@dataclass
class Mistake:
    """One misclassified sample: where it was, what it is, what the network said."""

    index: int
    label: int
    predicted: int
    probability: float
    image: np.ndarray = field(repr=False)  # [H, W] or [H, W, 3] float32 in [0, 1], for plotting


@dataclass
class Evaluation:
    """The outcome of one pass over a test set.

    Attributes:
        matrix: Counts, rows the true class and columns the predicted class.
        loss: Mean cross-entropy over the samples.
        mistakes: The most confident mistakes (at most :data:`MISTAKES_SHOWN`), most confident
            first.
        checkpoint: The checkpoint evaluated, for the report. Defaults to `""`.
        net: The network's name, for the report. Defaults to `""`.
        class_names: One name per class, in label order. Defaults to `None`: the numbers.
    """

    matrix: np.ndarray
    loss: float
    mistakes: list[Mistake]
    checkpoint: str = ""
    net: str = ""
    class_names: list[str] | None = None

    def name(self, k: int) -> str:
        """The name of class ``k`` (its number when there are no names)."""
        names = self.class_names
        return names[k] if names and 0 <= k < len(names) else str(k)

    @property
    def count(self) -> int:
        """Samples evaluated."""
        return int(self.matrix.sum())

    @property
    def correct(self) -> int:
        """Samples whose top prediction is their label."""
        return int(np.trace(self.matrix))

    @property
    def accuracy(self) -> float:
        """Share of samples predicted correctly."""
        return self.correct / self.count if self.count else float("nan")

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: samples, correct, accuracy (recall) and precision (None if 0/0)."""
        rows = []
        true_totals, predicted_totals = self.matrix.sum(axis=1), self.matrix.sum(axis=0)
        for k in range(self.matrix.shape[0]):
            hits = int(self.matrix[k, k])
            count, predicted = int(true_totals[k]), int(predicted_totals[k])
            rows.append({"class": k, "name": self.name(k), "count": count, "correct": hits,
                         "accuracy": hits / count if count else None,
                         "precision": hits / predicted if predicted else None})
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: totals, per-class rows, the matrix and the mistakes shown."""
        return {"checkpoint": self.checkpoint, "net": self.net, "count": self.count,
                "correct": self.correct, "accuracy": self.accuracy, "loss": self.loss,
                "per_class": self.per_class(),
                "confusion_matrix": self.matrix.tolist(),
                "class_names": [self.name(k) for k in range(self.matrix.shape[0])],
                "confusion_matrix_axes": "rows: true class, columns: predicted class",
                "mistakes_shown": [{"index": m.index, "label": m.label, "predicted": m.predicted,
                                    "probability": m.probability} for m in self.mistakes]}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs as a ``[num_classes, num_classes]`` int64 array."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    flat = np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def evaluate_network(network, dataset, num_classes: int, *,
                     keep_mistakes: int = MISTAKES_SHOWN, eval_net=None,
                     normalisation=MNIST) -> Evaluation:
    """Runs ``network`` over ``dataset`` once and gathers the matrix, the loss and the mistakes.

    Args:
        network: A ``mindspore.nn.Cell`` giving logits; it is put in inference mode.
        dataset: Yields ``(images float32 [N, 1, S, S], labels int32 [N])`` batches, normalised
            as in training (see :func:`trainer.data.build_dataset`).
        num_classes: Outputs of the network.
        keep_mistakes: How many of the most confident mistakes to keep with their images.
            Defaults to `36`.
        eval_net: An ``nn.WithEvalCell`` around ``network`` with the mean cross-entropy to run
            instead of a new one: training passes the cell it validated with, whose graph is
            compiled already. Defaults to `None` (a new cell).
        normalisation: The mean and deviation the images were normalised with, to show the
            mistakes as they were. Defaults to MNIST's.

    Returns:
        An :class:`Evaluation` (``checkpoint`` and ``net`` left empty).
    """
    from mindspore import nn

    network.set_train(False)
    # The same cell as validation during training. The loss is weighted by batch size, so it
    # does not depend on how the split is batched (mindspore.train.Loss averages batch means,
    # which gives a short last batch the weight of a full one).
    if eval_net is None:
        eval_net = nn.WithEvalCell(network, nn.SoftmaxCrossEntropyWithLogits(sparse=True,
                                                                             reduction="mean"))
    eval_net.set_train(False)
    eval_net.phase = "eval"  # as Model.eval sets it: the graph validation compiled is reused
    loss_sum = 0.0
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    heap: list[tuple[float, int, Mistake]] = []  # the most confident mistakes, smallest on top
    seen = 0
    mean = np.asarray(normalisation.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(normalisation.std, dtype=np.float32)[:, None, None]
    for images, labels in dataset.create_tuple_iterator(num_epochs=1):
        loss, logits, _ = eval_net(images, labels)
        probs = softmax(logits.asnumpy())
        truth = labels.asnumpy().astype(np.int64)
        predicted = probs.argmax(axis=1)
        matrix += confusion_matrix(truth, predicted, num_classes)
        wrong = np.flatnonzero(predicted != truth)
        if wrong.size and keep_mistakes:
            pixels = None
            for i in wrong:
                p = float(probs[i, predicted[i]])
                if len(heap) == keep_mistakes and p <= heap[0][0]:
                    continue
                if pixels is None:
                    pixels = images.asnumpy()
                image = np.clip(pixels[i] * std + mean, 0.0, 1.0)
                image = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
                item = (p, seen + int(i), Mistake(seen + int(i), int(truth[i]),
                                                  int(predicted[i]), p, image))
                if len(heap) < keep_mistakes:
                    heapq.heappush(heap, item)
                else:
                    heapq.heapreplace(heap, item)
        loss_sum += float(loss.asnumpy()) * len(truth)
        seen += len(truth)
    mistakes = [m for _, _, m in sorted(heap, key=lambda t: (-t[0], t[1]))]
    return Evaluation(matrix=matrix, loss=loss_sum / seen if seen else float("nan"),
                      mistakes=mistakes)


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
                        net: str | None = None, source: Any = None) -> dict[str, Any]:
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
    from trainer.serving.loading import load_network
    from trainer.tracking import report_serving

    logger = logging.getLogger("mstrain")
    check_tracking(cfg.trackers())  # a missing extra is refused before any work
    loaded = load_network(ckpt, net=net, device=cfg.device, mode=cfg.mode)
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

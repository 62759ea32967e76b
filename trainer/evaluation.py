"""One pass of a network over a dataset: the loss, the confusion matrix and the most confident
mistakes, from the same logits.

:func:`evaluate_network` is the loop that the test split at the end of training and
``mstrain eval`` share; it puts the network in inference mode and takes the loss as the mean over
samples of the cross-entropy that training minimises, and the accuracy as the confusion matrix's
trace over its total, so the two always agree. The report of an :class:`Evaluation` (table,
plots, ``evaluation.json``) is written by :mod:`trainer.serving.evaluate`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.data.transforms import MNIST

# How many misclassified digits mistakes.png shows (a 6 x 6 grid), most confident first.
MISTAKES_SHOWN = 36


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

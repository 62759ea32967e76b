"""The one evaluation of the test split at the end of training, with the final weights and with
the best checkpoint's."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("mstrain")


def _score(network, dataset, num_classes: int, eval_net) -> dict[str, float]:
    from trainer.evaluation import evaluate_network

    ev = evaluate_network(network, dataset, num_classes, keep_mistakes=0, eval_net=eval_net)
    return {"test_accuracy": ev.accuracy, "test_loss": ev.loss}


def _values(network) -> dict[str, Any]:
    """Copies of the network's parameter values, by name."""
    return {p.name: p.asnumpy().copy() for p in network.get_parameters()}


def _same_weights(weights: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether a checkpoint's weights are, bit for bit, the values the network was scored with."""
    import numpy as np

    return set(weights) == set(values) and all(
        np.array_equal(np.asarray(weights[name].asnumpy()), values[name]) for name in weights)


@contextmanager
def _holding(network, bundle, net: str):
    """The checkpoint's weights in ``network`` while inside, its own values again afterwards."""
    from mindspore import Tensor

    from trainer.checkpoint import load_weights

    own = _values(network)
    load_weights(network, bundle, net=net)
    try:
        yield
    finally:
        for param in network.get_parameters():
            param.set_data(Tensor(own[param.name]))


def final_test(cfg, network, step, dataset, best_path, ema: bool,
               eval_net=None, num_classes: int | None = None) -> dict[str, Any]:
    """Scores the final weights (their moving average with ``--ema-decay``) and, when the run
    kept one, the best checkpoint on the test split.

    Both are scored by ``eval_net`` (the cell validation ran, whose graph is compiled already),
    the best checkpoint's weights put into ``network`` for it and the final ones back afterwards.
    When the best checkpoint holds exactly the weights just scored (the best epoch was the last),
    its scores are those, without a second pass.

    Returns:
        ``{"final": {"test_accuracy", "test_loss"}, "best": {..., "checkpoint", "epoch"}}``
        (``best`` only with a best checkpoint).
    """
    from callbacks.ema_validation import Swap
    from trainer.checkpoint import network_weights, read_checkpoint

    num_classes = num_classes or cfg.num_classes or 10
    swap = Swap(step.averaged, step.ema) if ema else None
    if swap is not None:
        swap()
    try:
        results: dict[str, Any] = {"final": _score(network, dataset, num_classes, eval_net)}
        scored = _values(network)
    finally:
        if swap is not None:
            swap()
        network.set_train(True)
    if best_path is not None and best_path.is_file():
        bundle = read_checkpoint(best_path)
        if _same_weights(network_weights(bundle), scored):
            best = dict(results["final"])
        else:
            with _holding(network, bundle, cfg.net):
                best = _score(network, dataset, num_classes, eval_net)
            network.set_train(True)
        results["best"] = {**best, "checkpoint": str(best_path), "epoch": bundle.epoch}
    final = results["final"]
    line = (f"Test accuracy: {final['test_accuracy']:.4f}, test loss: {final['test_loss']:.4f} "
            f"(final weights{', their moving average' if ema else ''})")
    if "best" in results:
        best = results["best"]
        line += (f"; best checkpoint (epoch {best['epoch']}): test accuracy: "
                 f"{best['test_accuracy']:.4f}, test loss: {best['test_loss']:.4f}")
    logger.info("%s.", line)
    return results

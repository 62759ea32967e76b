"""The one evaluation of the test split at the end of training, with the final weights and with
the best checkpoint's."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("mstrain")


def _score(network, dataset, num_classes: int) -> dict[str, float]:
    from trainer.serving.evaluate import evaluate_network

    ev = evaluate_network(network, dataset, num_classes, keep_mistakes=0)
    return {"test_accuracy": ev.accuracy, "test_loss": ev.loss}


def final_test(cfg, network, step, dataset, best_path, ema: bool) -> dict[str, Any]:
    """Scores the final weights (their moving average with ``--ema-decay``) and, when the run
    kept one, the best checkpoint on the test split.

    Returns:
        ``{"final": {"test_accuracy", "test_loss"}, "best": {..., "checkpoint"}}`` (``best``
        only with a best checkpoint).
    """
    from callbacks.ema_validation import Swap
    from trainer.checkpoint import load_weights, read_checkpoint
    from trainer.networks import build_network

    swap = Swap(step.weights, step.ema) if ema else None
    if swap is not None:
        swap()
    try:
        results: dict[str, Any] = {"final": _score(network, dataset, cfg.num_classes)}
    finally:
        if swap is not None:
            swap()
        network.set_train(True)
    if best_path is not None and best_path.is_file():
        bundle = read_checkpoint(best_path)
        best = build_network(cfg.net, cfg.num_classes).cell
        load_weights(best, bundle, net=cfg.net)
        results["best"] = {**_score(best, dataset, cfg.num_classes),
                           "checkpoint": str(best_path), "epoch": bundle.epoch}
    final = results["final"]
    line = (f"Test accuracy: {final['test_accuracy']:.4f}, test loss: {final['test_loss']:.4f} "
            f"(final weights{', their moving average' if ema else ''})")
    if "best" in results:
        best = results["best"]
        line += (f"; best checkpoint (epoch {best['epoch']}): test accuracy: "
                 f"{best['test_accuracy']:.4f}, test loss: {best['test_loss']:.4f}")
    logger.info("%s.", line)
    return results

"""Callbacks for the data-parallel tests: a per-worker report, and a signal to one worker."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

from mindspore.train import Callback

from trainer.engine import distributed


def weights_digest(named_arrays) -> str:
    """SHA-256 over ``(name, float32 array)`` pairs, in name order."""
    sha = hashlib.sha256()
    for name, array in sorted(named_arrays, key=lambda item: item[0]):
        sha.update(name.encode() + b"|" + array.astype("float32").tobytes())
    return sha.hexdigest()


class RankReport(Callback):
    """Writes ``folder/rank<R>.json`` at the end of training on every worker.

    The file holds the worker's rank and group size as :mod:`trainer.engine.distributed` sees
    them, the digest of the trained weights, each epoch's validation accuracy and mean training
    loss, the steps per epoch of this worker's shard, and the callbacks that ran on this worker.

    Args:
        folder: Where the reports go.
    """

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.val_accuracy: list[float] = []
        self.last_loss: list[float] = []

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        results = getattr(cb_params, "eval_results", None) or {}
        if "accuracy" in results:
            self.val_accuracy.append(float(results["accuracy"]))
        self.last_loss.append(float(cb_params.net_outputs.asnumpy()))

    def on_train_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        params = cb_params.train_network.trainable_params()
        report = {
            "rank": distributed.rank(), "size": distributed.world_size(),
            "main": distributed.is_main(),
            "digest": weights_digest((p.name, p.asnumpy()) for p in params),
            "weight_names": sorted(p.name for p in params),
            "val_accuracy": self.val_accuracy, "last_loss": self.last_loss,
            "steps_per_epoch": cb_params.batch_num,
            "callbacks": [type(cb).__name__ for cb in cb_params.list_callback],
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank{report['rank']}.json"
        path.write_text(json.dumps(report, indent=1))


class SignalWorker(Callback):
    """Sends ``sig`` to this process when the run's step counter reaches ``step``, on one rank.

    Args:
        step: ``cur_step_num`` at which to send it (counted from 1 in each ``fit`` call).
        rank: The worker that receives it. Defaults to `1`.
        sig: The signal's name. Defaults to `"SIGTERM"`.
    """

    def __init__(self, step: int, rank: int = 1, sig: str = "SIGTERM") -> None:
        super().__init__()
        self.step, self.rank, self.sig = step, rank, getattr(signal, sig)

    def on_train_step_end(self, run_context) -> None:
        if (run_context.original_args().cur_step_num == self.step
                and distributed.rank() == self.rank):
            os.kill(os.getpid(), self.sig)

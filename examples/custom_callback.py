"""A complete custom callback: stop when validation accuracy reaches a target.

Run it from the repository root:

    python train.py --data-source synthetic --epochs 10 \
        --callback "examples.custom_callback:StopAtAccuracy(target=0.9)"

or from Python: ``Trainer(cfg).fit(callbacks=[StopAtAccuracy(0.9)])``.
"""

from __future__ import annotations

from mindspore.train import Callback


class StopAtAccuracy(Callback):
    """Requests a stop once the epoch's validation accuracy reaches ``target``.

    Args:
        target: Accuracy in [0, 1] at which to stop. Defaults to `0.98`.
    """

    def __init__(self, target: float = 0.98) -> None:
        super().__init__()
        if not 0.0 < target <= 1.0:
            raise ValueError(f"target is {target!r}; it must be in (0, 1]")
        self.target = target
        self.reached_at: int | None = None

    def on_train_epoch_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        # cb_params is a dict: eval_results is there only on epochs that validated.
        accuracy = (cb_params.get("eval_results") or {}).get("accuracy")
        if accuracy is not None and accuracy >= self.target:
            self.reached_at = cb_params.cur_epoch_num
            print(f"Validation accuracy {accuracy:.4f} reached {self.target} at epoch "
                  f"{self.reached_at}; stopping.")
            run_context.request_stop()

    # Saved in every checkpoint and restored on resume.
    def state_dict(self) -> dict:
        return {"reached_at": self.reached_at}

    def load_state_dict(self, state: dict) -> None:
        self.reached_at = state.get("reached_at")

"""A callback that records which hooks MindSpore's ``Model`` calls, for the end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path

from mindspore.train import Callback

HOOKS = (
    "on_train_begin", "on_train_epoch_begin", "on_train_step_begin", "on_train_step_end",
    "on_train_epoch_end", "on_train_end", "on_eval_begin", "on_eval_epoch_begin",
    "on_eval_step_begin", "on_eval_step_end", "on_eval_epoch_end", "on_eval_end",
)


class HookRecorder(Callback):
    """Counts every hook call and rewrites ``path`` as JSON after each one.

    Args:
        path: The JSON file to write: ``{"args": {...}, "calls": {hook: count}, "order": [...]}``.
        tag: Any value; echoed back so a test can check how arguments were passed.
    """

    def __init__(self, path: str, tag: object = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.tag = tag
        self.calls: dict[str, int] = {}
        self.order: list[str] = []
        self.eval_accuracy: list[float] = []

    def _record(self, hook: str, run_context) -> None:
        self.calls[hook] = self.calls.get(hook, 0) + 1
        if not self.order or self.order[-1] != hook:
            self.order.append(hook)
        if hook == "on_train_epoch_end":
            results = getattr(run_context.original_args(), "eval_results", None) or {}
            if "accuracy" in results:
                self.eval_accuracy.append(float(results["accuracy"]))
        self.path.write_text(json.dumps({"args": {"path": str(self.path), "tag": self.tag},
                                         "calls": self.calls, "order": self.order,
                                         "eval_accuracy": self.eval_accuracy}))
        if hook == "on_train_end":
            # As a careless user's callback would: written, never flushed nor closed. A normal
            # interpreter exit keeps every byte, and so must the command's.
            self.left_open = open(self.path.with_suffix(".log"), "w")
            self.left_open.write("written in on_train_end\n" * 1000)


def _make_hook(name: str):
    def hook(self, run_context) -> None:
        self._record(name, run_context)

    hook.__name__ = name
    return hook


for _name in HOOKS:
    setattr(HookRecorder, _name, _make_hook(_name))

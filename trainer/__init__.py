"""A MindSpore training toolkit: ``Trainer`` runs ``mindspore.train.Model`` with the callbacks,
checkpoints and history a training run needs.

Importing this package is cheap: MindSpore is imported only when :class:`Trainer` is first used,
so ``train.py --help`` and configuration errors answer at once.

Example:
    >>> from trainer import Trainer, TrainConfig
    >>> trainer = Trainer(TrainConfig(net="lenet", epochs=1))  # doctest: +SKIP
    >>> history = trainer.fit()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from trainer.config import TrainConfig, load_config
from trainer.errors import CheckpointError, ConfigError, DataError, UserError

__all__ = ["CheckpointError", "ConfigError", "DataError", "History", "TrainConfig", "Trainer",
           "UserError", "load_config"]

_LAZY = {"Trainer": "trainer.engine.trainer", "History": "callbacks.history"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")

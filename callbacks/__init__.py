"""Callbacks for ``mindspore.train.Model``: each subclasses ``mindspore.train.Callback`` and works
with a plain ``Model`` as well as inside ``trainer.Trainer``.

Example:
    >>> from callbacks import LossMonitor, History
    >>> cbs = [LossMonitor(100), History("runs/demo")]
    >>> model.fit(3, train, valid, callbacks=cbs)  # doctest: +SKIP
"""

from callbacks.base import StatefulCallback, StatsCallback
from callbacks.checkpoint import ModelCheckpoint
from callbacks.csv_logger import CSVLogger
from callbacks.early_stopping import EarlyStopping
from callbacks.ema_validation import EMAValidation
from callbacks.history import History
from callbacks.launch_counter import LaunchCounter
from callbacks.loss_monitor import LossMonitor
from callbacks.lr_monitor import LearningRateMonitor
from callbacks.monitor import MonitorCallback
from callbacks.progress_bar import ProgressBar
from callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from callbacks.stats import EpochStats
from callbacks.stop_on_request import StopOnRequest
from callbacks.terminate_on_nan import TerminateOnNaN
from callbacks.val_acc_monitor import ValAccMonitor

__all__ = [
    "CSVLogger",
    "EMAValidation",
    "EarlyStopping",
    "EpochStats",
    "History",
    "LaunchCounter",
    "LearningRateMonitor",
    "LossMonitor",
    "MLflowLogger",
    "ModelCheckpoint",
    "MonitorCallback",
    "OptunaPruning",
    "ProgressBar",
    "ReduceLROnPlateau",
    "StatefulCallback",
    "StatsCallback",
    "StopOnRequest",
    "TensorBoardLogger",
    "TerminateOnNaN",
    "TrackingLogger",
    "ValAccMonitor",
]

# Imported on first use: an Optuna callback is for studies (pip install -e ".[tune]"), the
# trackers for --report-to (pip install -e ".[tracking]").
_LAZY = {"OptunaPruning": "callbacks.optuna_pruning", "TrackingLogger": "callbacks.tracking",
         "TensorBoardLogger": "callbacks.tensorboard_logger",
         "MLflowLogger": "callbacks.mlflow_logger"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'callbacks' has no attribute {name!r}")

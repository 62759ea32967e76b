"""mindvision's validation-accuracy monitor, made to run inside ``Trainer`` and ``Model.fit``."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from mindspore.train import Callback

from trainer.errors import ConfigError


def _import_callbacks() -> ModuleType:
    from trainer.extras import import_mindvision

    return import_mindvision("mindvision.engine.callback", "The callback ValAccMonitor")


class ValAccMonitor(Callback):
    """mindvision's ``ValAccMonitor``, made to run inside ``Trainer`` and ``Model.fit``.

    mindvision's ``mindvision.engine.callback.ValAccMonitor(model, dataset_val, num_epochs)``
    cannot be used there directly: it needs the ``Model`` and the validation dataset when it is
    created, before ``Trainer.fit`` has built them, and it implements the old ``epoch_end`` /
    ``end`` hooks, which ``Model.fit`` refuses (``ValueError``) in callbacks whose class name it
    does not know. This callback creates mindvision's monitor after the first validation, from
    the run's own evaluation network and validation dataset, and calls its hooks: after each epoch
    it evaluates again (mindvision's own evaluation, about the cost of one validation), prints
    mindvision's lines, and saves ``best.ckpt`` when the accuracy does not decrease.

    It takes only literal arguments, so it also works from the command line:
    ``--callback "callbacks:ValAccMonitor(ckpt_directory='runs/mv-best')"``.

    Args:
        num_epochs: Shown in mindvision's lines. Defaults to `None`: the run's epochs.
        interval: Evaluate every N epochs. Defaults to `1`.
        eval_start_epoch: First epoch to evaluate. Defaults to `1`.
        save_best_ckpt: Save the best weights (a plain MindSpore checkpoint of the train
            network, written by mindvision). Defaults to `True`.
        ckpt_directory: Where ``best_ckpt_name`` goes. Defaults to `"./"` (mindvision's default).
        best_ckpt_name: Defaults to `"best.ckpt"`.
        metric_name: Name of the accuracy in mindvision's lines. Defaults to `"Accuracy"`.

    Raises:
        ConfigError: mindvision is missing or broken, or the run does not validate.

    Example:
        >>> trainer = Trainer(TrainConfig(data_source="mindvision", epochs=3))  # doctest: +SKIP
        >>> trainer.fit(callbacks=[ValAccMonitor(ckpt_directory="runs/mv")])  # doctest: +SKIP
    """

    def __init__(self, num_epochs: int | None = None, interval: int = 1,
                 eval_start_epoch: int = 1, save_best_ckpt: bool = True,
                 ckpt_directory: str = "./", best_ckpt_name: str = "best.ckpt",
                 metric_name: str = "Accuracy") -> None:
        super().__init__()
        self.options: dict[str, Any] = dict(
            num_epochs=num_epochs, interval=interval, eval_start_epoch=eval_start_epoch,
            save_best_ckpt=save_best_ckpt, ckpt_directory=ckpt_directory,
            best_ckpt_name=best_ckpt_name, metric_name=metric_name)
        self.monitor = None
        self._mindvision: ModuleType | None = None

    def on_train_begin(self, run_context) -> None:
        self._mindvision = _import_callbacks()
        self.monitor = None

    def _build(self, cb) -> None:
        from mindspore.train import Accuracy, Model

        if getattr(cb, "valid_dataset", None) is None or getattr(cb, "eval_network", None) is None:
            raise ConfigError("ValAccMonitor needs a run that validates: use it with Trainer.fit, "
                              "or with Model.fit(..., valid_dataset=...).")
        options = dict(self.options)
        if options["num_epochs"] is None:
            options["num_epochs"] = cb.epoch_num
        # WithEvalCell (built by Trainer and by Model) returns (loss, logits, label).
        model = Model(cb.train_network, eval_network=cb.eval_network,
                      metrics={options["metric_name"]: Accuracy()}, eval_indexes=[0, 1, 2])
        self.monitor = self._mindvision.ValAccMonitor(model, cb.valid_dataset,
                                                      dataset_sink_mode=False, **options)

    def on_train_epoch_end(self, run_context) -> None:
        cb = run_context.original_args()
        if self.monitor is None:
            self._build(cb)
        self.monitor.epoch_end(run_context)
        # mindvision's evaluation left the shared backbone in evaluation mode.
        cb.train_network.set_train(True)

    def on_train_end(self, run_context) -> None:
        if self.monitor is not None:
            self.monitor.end(run_context)

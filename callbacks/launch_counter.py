"""Keeps ``Model``'s step count in training steps when a launch runs several of them."""

from __future__ import annotations

from mindspore.train import Callback


class LaunchCounter(Callback):
    """Keeps ``Model``'s step count in training steps when a launch runs several of them.

    ``Model`` adds one to ``cb_params.cur_step_num`` for each element of the dataset; with
    ``trainer.engine.step.LaunchSteps`` an element holds ``k`` steps. Placed first among the
    callbacks, this adds the other ``k - 1`` before any callback sees the step and records ``k`` as
    ``cb_params.launch_steps``, the convention of MindSpore's dataset-sink mode, where
    ``cur_step_num`` also advances by the steps of a sink. It also sets ``cb_params.batch_num``
    to the steps (not elements) of an epoch, and shows callbacks the single-step network as
    ``cb_params.train_network`` (the same parameters, so checkpoints and statistics read it as
    usual).

    Args:
        step: The ``TrainStep`` inside the ``trainer.engine.step.LaunchSteps``.
        steps_per_epoch: Training steps in one epoch.
    """

    launch_aware = True

    def __init__(self, step, steps_per_epoch: int) -> None:
        super().__init__()
        self.step = step
        self.steps_per_epoch = steps_per_epoch

    def on_train_begin(self, run_context) -> None:
        cb_params = run_context.original_args()
        cb_params.batch_num = self.steps_per_epoch
        cb_params.train_network = self.step
        cb_params.launch_steps = 1

    def on_train_step_begin(self, run_context) -> None:
        cb_params = run_context.original_args()
        launched = int(cb_params.train_dataset_element[0].shape[0])
        cb_params.cur_step_num += launched - 1
        cb_params.launch_steps = launched

"""How many training steps run in one graph launch."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mindspore.train import Callback

logger = logging.getLogger("mstrain")

# What auto (steps_per_launch 0) picks: with MindSpore's operators the step stops getting
# cheaper beyond 16 steps a launch (benchmarks/launch_sweep.py, BENCHMARKS.md), and 16 keeps
# progress and Ctrl-C prompt. A step through the native kernels is several times shorter, so a
# launch of 50 is as prompt, and two launches per 100 steps (the loss lines' interval) instead
# of seven save time (docs/speed.md).
AUTO_STEPS_PER_LAUNCH = 16
AUTO_STEPS_PER_LAUNCH_NATIVE = 50

_STEP_HOOKS = ("on_train_step_begin", "on_train_step_end", "step_begin", "step_end")


def sees_steps(callback: Any) -> bool:
    """Whether a callback has a step-level training hook of its own (epoch-level hooks are the
    same with any number of steps per launch)."""
    return any(name in vars(callback)
               or getattr(type(callback), name, None) is not getattr(Callback, name, None)
               for name in _STEP_HOOKS)


def choose_steps_per_launch(cfg, callbacks: Sequence[Any], steps_per_epoch: int,
                            network: Any = None) -> int:
    """The steps each graph launch runs: ``--steps-per-launch``, or for auto (0) 16 (50 when
    ``network`` trains through the native kernels) unless the run must launch one at a time
    (``TrainConfig``'s single-step reasons) or a callback has step hooks without declaring
    ``launch_aware = True``. Never more than an epoch's steps."""
    from trainer.config import launch_blocker

    unaware = [type(cb).__name__ for cb in callbacks
               if sees_steps(cb) and not getattr(cb, "launch_aware", False)]
    blocker = launch_blocker(cfg)
    steps = cfg.steps_per_launch
    if steps == 0:
        auto = (AUTO_STEPS_PER_LAUNCH_NATIVE if getattr(network, "native", False)
                else AUTO_STEPS_PER_LAUNCH)
        steps = 1 if blocker or unaware else auto
        if unaware and not blocker:
            logger.info("Launching one step at a time, since callback(s) %s have step hooks and "
                        "do not declare launch_aware = True (see --steps-per-launch in the "
                        "README).", ", ".join(unaware))
    elif steps > 1 and unaware:
        logger.info("Running %d steps per launch: callback(s) %s see one step end per launch, "
                    "with cur_step_num advanced by its steps.", steps, ", ".join(unaware))
    return min(steps, steps_per_epoch)


def build_model(cells, train_dataset, steps: int, steps_per_epoch: int, cuts: tuple[int, ...]):
    """The ``Model`` of a run and the training data it reads, for ``steps`` per launch.

    With several steps per launch the cached feed is regrouped (groups end at every multiple of
    ``cuts`` and at each epoch's end) and the train network is ``LaunchSteps``; callbacks then
    need ``LaunchCounter`` first in their list, which is returned too (else None).

    Returns:
        ``(model, train_dataset, launch_counter)``.
    """
    from mindspore.train import Accuracy, Loss, Model

    from callbacks.launch_counter import LaunchCounter
    from trainer.data import launch_dataset
    from trainer.engine.step import LaunchSteps

    network, counter = cells.step, None
    if steps > 1:
        train_dataset = launch_dataset(train_dataset, steps, cuts=cuts)
        network = LaunchSteps(cells.step)
        counter = LaunchCounter(cells.step, steps_per_epoch)
    model = Model(network, eval_network=cells.eval_network,
                  metrics={"accuracy": Accuracy(), "loss": Loss()}, eval_indexes=[0, 1, 2])
    return model, train_dataset, counter

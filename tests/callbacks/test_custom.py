"""A user's callback gets every hook, from a plain Model and from Trainer."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from mindspore.train import Callback

from callbacks import History, LossMonitor
from tests.cbkit import STEPS_PER_EPOCH, digits, make_run
from trainer.checkpoint import LATEST, load_bundle

TRAIN_HOOKS = ["on_train_begin", "on_train_epoch_begin", "on_train_step_begin",
               "on_train_step_end", "on_train_epoch_end", "on_train_end"]
EVAL_HOOKS = ["on_eval_begin", "on_eval_epoch_begin", "on_eval_step_begin", "on_eval_step_end",
              "on_eval_epoch_end", "on_eval_end"]
VALID_STEPS = 2  # 400 test digits in batches of 200


class HookLog(Callback):
    """Records each hook call, what the epoch end saw, and carries a state of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.eval_at_epoch_end: list[dict] = []
        for hook in TRAIN_HOOKS + EVAL_HOOKS:
            setattr(self, hook, self._recorder(hook))

    def _recorder(self, hook):
        def record(run_context) -> None:
            self.calls.append(hook)
            if hook == "on_train_epoch_end":
                results = run_context.original_args().get("eval_results") or {}
                self.eval_at_epoch_end.append(dict(results))

        return record

    def state_dict(self) -> dict:
        return {"calls": len(self.calls)}

    def load_state_dict(self, state: dict) -> None:
        pass


def epoch_pattern(steps: int, valid_steps: int) -> list[str]:
    train = ["on_train_step_begin", "on_train_step_end"] * steps
    evaluation = (["on_eval_begin", "on_eval_epoch_begin"]
                  + ["on_eval_step_begin", "on_eval_step_end"] * valid_steps
                  + ["on_eval_epoch_end", "on_eval_end"])
    return ["on_train_epoch_begin", *train, *evaluation, "on_train_epoch_end"]


@pytest.mark.parametrize("kind", ["plain", "step"])
def test_every_hook_reaches_a_custom_callback(digits_dir, kind):
    run = make_run(0.05, kind=kind)
    log = HookLog()
    train, valid = digits(digits_dir)
    run.model.fit(2, train, valid, callbacks=[LossMonitor(0, printer=lambda line: None),
                                              History(), log], dataset_sink_mode=False)
    pattern = epoch_pattern(STEPS_PER_EPOCH, VALID_STEPS)
    assert log.calls == ["on_train_begin", *pattern, *pattern, "on_train_end"]
    for results in log.eval_at_epoch_end:
        assert {"accuracy", "loss"} <= set(results)


def test_trainer_passes_every_hook_to_a_custom_callback(tmp_path, digits_dir, clean_logger):
    from trainer import TrainConfig, Trainer

    log = HookLog()
    trainer = Trainer(TrainConfig(data_source="mnist", data_dir=str(digits_dir), epochs=1,
                                  val_split=0,
                                  batch_size=64, output_dir=str(tmp_path), run_name="x",
                                  progress=False, plot=False))
    history = trainer.fit(callbacks=[log])
    counts = Counter(log.calls)
    for hook in TRAIN_HOOKS + EVAL_HOOKS:
        assert counts[hook] >= 1, hook
    assert counts["on_train_step_end"] == STEPS_PER_EPOCH
    assert log.calls[0] == "on_train_begin" and log.calls[-1] == "on_train_end"
    assert log.calls.index("on_eval_end") < log.calls.index("on_train_epoch_end")
    assert {"accuracy", "loss"} <= set(log.eval_at_epoch_end[0])
    assert history.epochs == [1]
    # The callback's state travels in the checkpoint, under its class name.
    folder = tmp_path / "x" / "checkpoints"
    bundle = load_bundle(folder / json.loads((folder / LATEST).read_text())["file"])
    assert bundle.meta.callbacks["HookLog"]["calls"] > 0


class LaunchLog(Callback):
    """Declares that it copes with several steps per step end, and records what it sees."""

    launch_aware = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int, int]] = []

    def on_train_step_end(self, run_context) -> None:
        cb_params = run_context.original_args()
        self.seen.append((cb_params.cur_step_num, cb_params.launch_steps, cb_params.batch_num))


def test_a_launch_aware_callback_sees_one_step_end_per_launch(tmp_path, digits_dir,
                                                              clean_logger):
    from trainer import TrainConfig, Trainer

    log = LaunchLog()
    Trainer(TrainConfig(data_dir=str(digits_dir), epochs=2, batch_size=64,
                        val_split=0, log_every=10,
                        output_dir=str(tmp_path), run_name="x", progress=False,
                        plot=False)).fit(callbacks=[log])
    # Auto: launches cut at the loss monitor's steps (10, 20) and at epoch ends.
    assert [steps for _, steps, _ in log.seen] == [10, 10, 5] * 2
    assert [step for step, _, _ in log.seen] == [10, 20, 25, 35, 45, 50]
    assert {per_epoch for *_, per_epoch in log.seen} == {STEPS_PER_EPOCH}


class EpochOnly(Callback):
    """No step hooks: launches stay on without declaring anything."""

    def __init__(self) -> None:
        super().__init__()
        self.last_launch: list[int] = []

    def on_train_epoch_end(self, run_context) -> None:
        self.last_launch.append(run_context.original_args().launch_steps)


def test_an_epoch_level_callback_keeps_several_steps_per_launch(tmp_path, digits_dir,
                                                                clean_logger):
    from trainer import TrainConfig, Trainer

    log = EpochOnly()
    trainer = Trainer(TrainConfig(data_dir=str(digits_dir), epochs=2, batch_size=64,
                                  val_split=0, output_dir=str(tmp_path), run_name="x",
                                  progress=False, plot=False))
    trainer.fit(callbacks=[log])
    # 25 steps an epoch: one launch with the native kernels (auto: 50), else launches of 16, 9.
    assert log.last_launch == ([25, 25] if trainer.network.native else [9, 9])

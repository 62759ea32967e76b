"""The engine owns the callbacks' states: it saves every callback's state by state key, whatever
the callback's place beside the checkpoint, and restores them all before the first hook."""

from __future__ import annotations

import json

import pytest
from mindspore.train import Callback

from callbacks import LearningRateMonitor
from tests.cbkit import STEPS_PER_EPOCH
from trainer.checkpoint import LATEST, load_bundle
from trainer.checkpoint.states import collect_states, restore_states


class Tally(Callback):
    """A user's stateful callback: counts the training steps of the run, across resumes."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0
        self.at_begin: int | None = None

    def on_train_begin(self, run_context) -> None:
        self.at_begin = self.steps  # what the first hook sees: the state is in place by then

    def on_train_step_end(self, run_context) -> None:
        self.steps += 1

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state.get("steps", 0))


def _place(monkeypatch, where: str) -> list[Tally]:
    """Puts the last callback of the returned list just before or just after the checkpoint in
    the run's callbacks (Trainer puts a user's callbacks before it; the order is forced here to
    show it does not matter)."""
    from trainer.engine import wiring

    build, extra = wiring.build_callbacks, []

    def placed(*args, **kwargs):
        run = build(*args, **kwargs)
        at = run.all.index(run.checkpoint) + (where == "after")
        run.all.insert(at, extra[-1])
        return run

    monkeypatch.setattr(wiring, "build_callbacks", placed)
    return extra


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_users_state_is_saved_and_restored_in_either_order(tmp_path, digits_dir, monkeypatch,
                                                             clean_logger, where):
    from trainer import TrainConfig, Trainer

    placed = _place(monkeypatch, where)

    def fit(epochs: int, resume: str | None) -> Tally:
        tally = Tally()
        placed.append(tally)
        Trainer(TrainConfig(data_dir=str(digits_dir), epochs=epochs, batch_size=64,
                            val_split=0, output_dir=str(tmp_path), run_name="r",
                            progress=False, plot=False)).fit(resume=resume)
        return tally

    first = fit(1, None)
    assert first.steps == STEPS_PER_EPOCH
    folder = tmp_path / "r" / "checkpoints"
    bundle = load_bundle(folder / json.loads((folder / LATEST).read_text())["file"])
    assert bundle.meta.callbacks["Tally"] == {"steps": STEPS_PER_EPOCH}
    assert "ModelCheckpoint" in bundle.meta.callbacks and "History" in bundle.meta.callbacks

    resumed = fit(2, "auto")
    assert resumed.at_begin == STEPS_PER_EPOCH  # restored before on_train_begin
    assert resumed.steps == 2 * STEPS_PER_EPOCH


class _Keyed(LearningRateMonitor):
    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    @property
    def state_key(self) -> str:
        return self.key


def test_two_instances_with_their_own_keys_keep_their_own_states():
    a, b = _Keyed("lr-a"), _Keyed("lr-b")
    a.records, b.records = [{"step": 1, "lr": 0.1}], [{"step": 2, "lr": 0.2}]
    states = json.loads(json.dumps(collect_states([a, b])))
    assert list(states) == ["lr-a", "lr-b"]
    again = [_Keyed("lr-b"), _Keyed("lr-a")]  # another order: the keys decide
    assert restore_states(again, states) == ["lr-b", "lr-a"]
    assert again[0].records == b.records and again[1].records == a.records


def test_a_bundle_keyed_by_the_plain_class_name_still_restores():
    """Bundles written before keys were qualified names used the class name, which differs for
    a class defined inside a function."""

    class Inner(Tally):
        pass

    cb = Inner()
    assert list(collect_states([cb])) == [Inner.__qualname__]
    assert restore_states([cb], {"Inner": {"steps": 7}}) == ["Inner"]
    assert cb.steps == 7

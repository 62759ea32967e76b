"""Callbacks' states in a bundle: one keying rule, checked before anything is loaded."""

from __future__ import annotations

import json
import re

import pytest
from mindspore.train import Callback

from callbacks import EarlyStopping, History, LearningRateMonitor
from trainer.checkpoint.states import check_states, collect_states, restore_states
from trainer.errors import CheckpointError


def through_json(states):
    return json.loads(json.dumps(states))


def history(tmp_path):
    hist = History(tmp_path / "h", plot=False)
    hist.rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}]
    return hist


class _Plain(Callback):
    pass


def test_collect_and_restore_states_by_class_name(tmp_path):
    first, second = LearningRateMonitor(), LearningRateMonitor()
    first.records = [{"step": 1, "epoch": 1, "lr": 0.1}]
    second.records = [{"step": 2, "epoch": 1, "lr": 0.2}]
    hist = history(tmp_path)
    states = collect_states([first, _Plain(), hist, second])
    assert list(states) == ["LearningRateMonitor", "History", "LearningRateMonitor#2"]

    targets = [LearningRateMonitor(), _Plain(), History(), LearningRateMonitor()]
    restored = restore_states(targets, through_json(states))
    assert restored == ["LearningRateMonitor", "History", "LearningRateMonitor#2"]
    assert targets[0].records == first.records and targets[3].records == second.records
    assert targets[2].rows == hist.rows
    assert restore_states([EarlyStopping()], states) == []  # nothing for it: untouched


@pytest.mark.parametrize("cb, state, field", [
    (History(), {"rows": {"epoch": 1}}, "rows"),
    (History(), {"rows": [{"epoch": "one", "loss": 1.0}]}, "rows[0]"),
    (History(), {"rows": [[1, 2]]}, "rows[0]"),
    (LearningRateMonitor(), {"records": 5}, "records"),
    (EarlyStopping(), {"wait": -1}, "wait"),
    (EarlyStopping(), {"wait": "2"}, "wait"),
    (EarlyStopping(), {"best": [1]}, "best"),
])
def test_a_state_of_the_wrong_shape_is_damage_and_nothing_is_loaded(cb, state, field):
    key = type(cb).__name__
    before = cb.state_dict()
    with pytest.raises(CheckpointError,
                       match=rf"damaged: the saved state of {key} .*{re.escape(field)}"):
        restore_states([cb], {key: state}, "b.ckpt")
    assert cb.state_dict() == before


def test_every_state_is_checked_before_any_is_loaded():
    hist, stop = History(), EarlyStopping()
    states = {"History": {"rows": [{"epoch": 1, "loss": 0.5}]}, "EarlyStopping": {"wait": "x"}}
    with pytest.raises(CheckpointError):
        restore_states([hist, stop], states)
    assert hist.rows == []  # the good state was not loaded either


def test_check_states_passes_well_formed_states(tmp_path):
    hist = history(tmp_path)
    check_states([History()], through_json(collect_states([hist])))

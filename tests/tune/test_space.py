"""Tuning recipes: the search space and the study's settings are checked before any trial."""

from __future__ import annotations

import re
import sys
import textwrap

import optuna
import pytest

from tests.conftest import ROOT, config_error, write_yaml
from trainer.tune import SearchSpace, load_tune_recipe
from trainer.tune.cli import main as tune_main

GOOD = """
search:
  lr: {low: 0.001, high: 0.3, log: true}
  batch_size: [32, 64]
  momentum: {low: 0.8, high: 0.95, step: 0.05}
  warmup_epochs: {low: 0, high: 1}
  accumulate_steps: {low: 1, high: 4}
  augment: [false, true]
tune:
  trials: 7
  enqueue:
    - {lr: 0.01, batch_size: 32}
net: mlp
epochs: 3
"""


def recipe(tmp_path, text: str, **kwargs):
    return load_tune_recipe(write_yaml(tmp_path, textwrap.dedent(text)), **kwargs)


def test_a_recipe_gives_the_space_fixed_options_and_settings(tmp_path):
    r = recipe(tmp_path, GOOD, overrides={"epochs": 2, "output_dir": str(tmp_path / "out")},
               settings={"sampler": "random"})
    kinds = {p.name: p.kind for p in r.space.params}
    assert kinds == {"lr": "float", "batch_size": "categorical", "momentum": "float",
                     "warmup_epochs": "float", "accumulate_steps": "int",
                     "augment": "categorical"}
    assert r.space["lr"].log and r.space["momentum"].step == 0.05
    assert r.fixed == {"net": "mlp", "epochs": 2, "output_dir": str(tmp_path / "out")}
    assert (r.settings.trials, r.settings.sampler, r.epochs) == (7, "random", 2)
    assert r.enqueue == [{"lr": 0.01, "batch_size": 32}]
    assert r.study_name == "recipe" and r.study_dir == tmp_path / "out" / "recipe"
    # A trial's configuration: fixed options, the drawn values, its own run directory.
    cfg = r.trial_config({"lr": 0.02, "batch_size": 64}, "trial-0003")
    assert (cfg.net, cfg.lr, cfg.batch_size, cfg.epochs) == ("mlp", 0.02, 64, 2)
    assert (cfg.output_dir, cfg.run_name) == (str(r.study_dir), "trial-0003")
    # The best trial's recipe keeps the flags that shape training, not this machine's paths.
    assert r.recipe_for({"lr": 0.02}) == {"net": "mlp", "epochs": 2, "lr": 0.02}


def test_trials_draw_inside_the_space(tmp_path):
    r = recipe(tmp_path, GOOD)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        values = r.space.suggest(study.ask())
        assert 0.001 <= values["lr"] <= 0.3 and values["batch_size"] in (32, 64)
        assert round(values["momentum"] / 0.05, 6) == round(values["momentum"] / 0.05)
        assert isinstance(values["accumulate_steps"], int) and 1 <= values["accumulate_steps"] <= 4
        assert isinstance(values["augment"], bool)
        r.trial_config(values, "t")  # every draw is a valid run


@pytest.mark.parametrize("search, expected", [
    ("lrr: {low: 0.001, high: 0.1}", "Unknown option 'lrr' in the search space.*did you mean 'lr'"),
    ("lr: {low: 0.1, high: 0.1}", "empty range: low 0.1 is not below high 0.1"),
    ("lr: {low: 0.3, high: 0.1}", "empty range"),
    ("lr: {low: 0, high: 0.1, log: true}", "log range that starts at 0"),
    ("weight_decay: {low: -1.0e-4, high: 1.0e-3, log: true}", "log range that starts at -0.0001"),
    ("lr: {low: 0, high: 0.1}", "range end 0.0, which a run refuses.*must be above 0"),
    ("momentum: {low: 0.5, high: 1.5}", "range end 1.5.*at most 1.0"),
    ("optimizer: [momentum, nadam]", "choice 'nadam', which a run refuses.*Choose one of"),
    ("optimizer: {low: 1, high: 2}", "'optimizer' is not a number; list the values"),
    ("epochs: {low: 1, high: 5}", "'epochs' cannot be searched"),
    ("run_name: [a, b]", "'run_name' cannot be searched"),
    ("batch_size: {low: 16.5, high: 64}", "takes whole numbers"),
    ("batch_size: [32]", "single choice 32"),
    ("batch_size: [32, 32]", "lists 32 twice"),
    ("lr: {low: 0.001, high: 0.1, log: true, step: 0.01}", "both 'log' and 'step'"),
    ("lr: {low: 0.001}", "needs both 'low' and 'high'"),
    ("lr: {min: 0.001, max: 0.1}", "unknown key\\(s\\) 'min', 'max'"),
    ("lr: 0.01", "give a range"),
    ("warmup_epochs: {low: 0, high: 5}", "range end 5.0.*warm-up must be shorter"),
])
def test_a_bad_search_space_is_refused_naming_the_fix(tmp_path, search, expected):
    message = config_error(recipe, tmp_path, f"search:\n  {search}\nepochs: 3\n")
    assert re.search(expected, message), message


@pytest.mark.parametrize("text, expected", [
    ("net: mlp\n", "needs a 'search' mapping"),
    ("search: {lr: [0.1, 0.2]}\nlr: 0.1\n", "'lr' is both fixed \\(0.1\\) and searched"),
    ("search: {lr: [0.1, 0.2]}\nserch: 1\n", "Unknown key 'serch'.*did you mean 'search'"),
    ("search: {lr: [0.1, 0.2]}\nepochs: 0\n", "fixed options.*'epochs' is 0"),
    ("search: {lr: [0.1, 0.2]}\ntune: {trails: 3}\n", "Unknown tune setting 'trails'.*'trials'"),
    ("search: {lr: [0.1, 0.2]}\ntune: {trials: 0}\n", "'trials' is 0, but it must be at least 1"),
    ("search: {lr: [0.1, 0.2]}\ntune: {pruner: asha}\n", "'pruner' is 'asha'; choose one of"),
    ("search: {lr: [0.1, 0.2]}\ntune: {storage: study.db}\n", "not a database URL"),
    ("search: {lr: [0.1, 0.2]}\ntune: {study_name: a/b}\n", "plain folder name"),
    ("search: {lr: [0.1, 0.2]}\ntune: {enqueue: [{lr: 0.5}]}\n",
     "sets 'lr' to 0.5, which the search space cannot draw"),
    ("search: {lr: [0.1, 0.2]}\ntune: {enqueue: [{momentum: 0.5}]}\n",
     "sets 'momentum', which is not in the search space"),
    ("search: {lr: {low: 0.01, high: 0.1}}\ntune: {sampler: grid}\n",
     "grid needs a finite set of values.*without a step"),
])
def test_a_bad_recipe_is_refused(tmp_path, text, expected):
    message = config_error(recipe, tmp_path, text)
    assert re.search(expected, message), message


def test_the_grid_lists_every_value():
    space = SearchSpace.parse({"lr": {"low": 0.01, "high": 0.05, "step": 0.02},
                               "batch_size": {"low": 16, "high": 48, "step": 16},
                               "nesterov": [False, True]}, fixed={})
    assert space.grid() == {"lr": [0.01, 0.03, 0.05], "batch_size": [16, 32, 48],
                            "nesterov": [False, True]}
    assert space.grid_size() == 18


def test_the_command_refuses_a_bad_space_before_any_trial(tmp_path, capsys):
    path = write_yaml(tmp_path, "search:\n  lr: {low: 0, high: 0.1, log: true}\nepochs: 1\n")
    out = tmp_path / "out"
    assert tune_main(["--config", str(path), "--output-dir", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: ") and err.count("error:") == 1 and "Traceback" not in err
    assert "log range" in err and "low: 1.0e-5" in err
    assert not out.exists()  # no study, no trial, nothing written


def test_without_optuna_the_command_names_the_extra(tmp_path, capsys, monkeypatch):
    path = write_yaml(tmp_path, "search:\n  lr: [0.01, 0.1]\nepochs: 1\n")
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an environment without it gives
    from trainer.cli.commands import main as mstrain

    assert mstrain(["tune", "--config", str(path), "--output-dir", str(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: mstrain tune needs the package optuna, which is not installed")
    assert 'pip install -e ".[tune]"' in err and err.count("error:") == 1
    assert not (tmp_path / "recipe").exists()


def test_the_shipped_recipe_is_valid():
    r = load_tune_recipe(ROOT / "configs" / "tune_lenet.yaml")
    assert r.study_name == "tune_lenet" and r.settings.trials == 20 and r.base.net == "lenet"
    assert len(r.enqueue) == 1 and set(r.enqueue[0]) == set(r.space.names)


def test_a_study_is_never_mixed_into_a_run_directory(tmp_path, capsys):
    run = tmp_path / "runs" / "tune_lenet"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("net: lenet\n")
    recipe = ROOT / "configs" / "tune_lenet.yaml"
    code = tune_main(["--config", str(recipe), "--output-dir", str(tmp_path / "runs")])
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: ") and "is a run directory (config.yaml)" in err
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # nothing written there

"""The run configuration: defaults, YAML recipes, command-line overrides and validation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import config_error, write_yaml
from trainer.cli import parse_args
from trainer.config import (
    CONFIG_FIELDS,
    DEVICES,
    FINGERPRINT_FIELDS,
    MODES,
    OPTIMIZERS,
    TrainConfig,
    load_config,
    load_yaml,
    save_config,
)

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "configs" / "lenet_mnist.yaml"
# Options of the tutorial recipe that only decide how much is printed, not what is trained.
OUTPUT_ONLY = {"log_every"}


# ------------------------------------------------------------------------------------ defaults
def test_defaults_are_the_tutorial_recipe():
    recipe = yaml.safe_load(TUTORIAL.read_text())
    default = TrainConfig().validate()
    tutorial = load_config(TUTORIAL)
    for key, value in recipe.items():
        if key in OUTPUT_ONLY:
            continue
        if key == "data_dir":
            assert default.resolved_data_dir() == Path(value)
            continue
        assert getattr(default, key) == value, key
    # Whatever the recipe does not name is the default there too.
    for key in CONFIG_FIELDS:
        if key not in recipe:
            assert getattr(tutorial, key) == getattr(default, key), key


def test_tutorial_hyperparameters():
    cfg = TrainConfig().validate()
    assert (cfg.net, cfg.epochs, cfg.batch_size) == ("lenet", 10, 32)
    assert (cfg.optimizer, cfg.lr, cfg.momentum) == ("momentum", 0.01, 0.9)
    assert (cfg.lr_schedule, cfg.weight_decay, cfg.device) == ("constant", 0.0, "CPU")


def test_every_shipped_recipe_loads():
    recipes = [p for p in sorted((ROOT / "configs").glob("*.yaml"))
               if not p.name.startswith("tune_")]  # search spaces: tests/tune reads them
    assert len(recipes) >= 5
    for path in recipes:
        cfg = load_config(path)
        assert isinstance(cfg, TrainConfig), path


# ---------------------------------------------------------------------------------------- YAML
def test_yaml_recipe_is_loaded(tmp_path):
    path = write_yaml(tmp_path, "net: mlp\nepochs: 4\nbatch_size: 64\nlr: 0.1\nplot: false\n"
                                "lr_milestones: [2, 3]\n")
    cfg = load_config(path)
    assert (cfg.net, cfg.epochs, cfg.batch_size, cfg.lr, cfg.plot) == ("mlp", 4, 64, 0.1, False)
    assert cfg.lr_milestones == [2, 3]
    assert cfg.optimizer == TrainConfig().optimizer  # untouched options keep their defaults


def test_empty_yaml_gives_defaults(tmp_path):
    assert load_config(write_yaml(tmp_path, "# nothing\n")) == TrainConfig().validate()


def test_whole_number_is_accepted_for_a_float_option(tmp_path):
    cfg = load_config(write_yaml(tmp_path, "lr: 1\n"))
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)


def test_overrides_win_over_yaml_in_load_config(tmp_path):
    path = write_yaml(tmp_path, "epochs: 4\nlr: 0.2\n")
    cfg = load_config(path, lr=0.03)
    assert (cfg.epochs, cfg.lr) == (4, 0.03)


# ---------------------------------------------------------------------------- refused values
def test_unknown_yaml_key_is_named_with_a_suggestion(tmp_path):
    path = write_yaml(tmp_path, "epochs: 2\nbatchsize: 16\n")
    message = config_error(load_config, path)
    assert "'batchsize'" in message
    assert "did you mean 'batch_size'" in message
    assert str(path) in message


def test_unknown_override_key_is_refused():
    message = config_error(load_config, None, learning_rate=0.1)
    assert "'learning_rate'" in message


@pytest.mark.parametrize("key, value, allowed", [
    ("epochs", 0, "at least 1"),
    ("batch_size", 0, "at least 1"),
    ("lr", 0.0, "above 0.0"),
    ("lr", -0.1, "above 0.0"),
    ("momentum", 1.5, "at most 1.0"),
    ("num_workers", 0, "at least 1"),
])
def test_out_of_range_values_are_refused(tmp_path, key, value, allowed):
    path = write_yaml(tmp_path, f"{key}: {value}\n")
    message = config_error(load_config, path)
    assert f"'{key}'" in message and str(value) in message and allowed in message


@pytest.mark.parametrize("key, value, choices", [
    ("optimizer", "lamb", OPTIMIZERS),
    ("device", "TPU", DEVICES),
    ("mode", "eager", MODES),
])
def test_unknown_choices_are_refused_listing_the_allowed(tmp_path, key, value, choices):
    message = config_error(load_config, write_yaml(tmp_path, f"{key}: {value}\n"))
    assert f"'{key}'" in message and repr(value) in message
    assert all(choice in message for choice in choices)
    # The command line refuses them too, naming the flag, the value and the choices.
    flag = "--" + key.replace("_", "-")
    message = config_error(parse_args, [flag, value])
    assert flag in message and value in message and all(c in message for c in choices)


@pytest.mark.parametrize("text, key, type_word", [
    ("epochs: ten\n", "epochs", "whole number"),
    ("epochs: 2.5\n", "epochs", "whole number"),
    ("lr: fast\n", "lr", "a number"),
    ("plot: maybe\n", "plot", "true or false"),
    ("epochs: true\n", "epochs", "whole number"),
    ("lr_milestones: 5\n", "lr_milestones", "a list"),
])
def test_wrong_types_in_yaml_are_refused(tmp_path, text, key, type_word):
    message = config_error(load_config, write_yaml(tmp_path, text))
    assert f"'{key}'" in message and type_word in message
    assert text.split(":", 1)[1].strip() in message.lower()


def test_bad_milestones_are_refused():
    message = config_error(load_config, None, lr_milestones=[8, 5])
    assert "'lr_milestones'" in message and "[8, 5]" in message and "increasing" in message


def test_unknown_network_name_is_refused():
    message = config_error(load_config, None, net="resnet")
    assert "'resnet'" in message and "lenet" in message and "mlp" in message
    assert "pkg.module:function" in message


@pytest.mark.parametrize("overrides, named", [
    ({"mode": "pynative"}, "--mode pynative"),
    ({"data_cache": False}, "--no-data-cache"),
    ({"data_source": "mindvision"}, "--data-source mindvision"),
    ({"distributed": True}, "--distributed"),
])
def test_several_steps_per_launch_are_refused_where_each_step_launches_alone(overrides, named):
    message = config_error(load_config, None, steps_per_launch=8, **overrides)
    assert "'steps_per_launch' is 8" in message and named in message
    assert "--steps-per-launch at 0 (auto) or 1" in message
    for allowed in (0, 1):  # auto quietly launches one step at a time there
        assert load_config(None, steps_per_launch=allowed, **overrides).steps_per_launch == allowed


def test_nan_is_refused():
    message = config_error(load_config, None, lr=float("nan"))
    assert "'lr'" in message and "NaN" in message


def test_invalid_yaml_names_the_line(tmp_path):
    path = write_yaml(tmp_path, "net: lenet\nepochs: 3\n  lr: 0.1\n")
    message = config_error(load_config, path)
    assert str(path) in message and "not valid YAML" in message and "line 3" in message


def test_yaml_holding_a_list_is_refused(tmp_path):
    path = write_yaml(tmp_path, "- epochs: 3\n- lr: 0.1\n")
    message = config_error(load_config, path)
    assert str(path) in message and "mapping" in message and "list" in message


def test_missing_config_file_is_named(tmp_path):
    path = tmp_path / "absent.yaml"
    message = config_error(load_config, path)
    assert str(path) in message and "does not exist" in message and "configs/" in message


def test_unreadable_config_file_is_refused(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00epochs: 3\n")
    message = config_error(load_yaml, path)
    assert str(path) in message and "cannot be read" in message
    message = config_error(load_yaml, tmp_path)  # a folder
    assert str(tmp_path) in message and "cannot be read" in message


# ------------------------------------------------------------------------ saving, fingerprint
def test_saved_config_loads_back_equal(tmp_path):
    cfg = parse_args(["--net", "mlp", "--epochs", "3", "--lr", "0.05", "--no-plot",
                      "--lr-milestones", "1", "2", "--callback", "a.b:C(x=1, y='z')"]).config
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert not [p for p in tmp_path.iterdir() if p.name != "config.yaml"]  # no temporary left


def test_fingerprint_is_stable_and_follows_the_training_options():
    base = TrainConfig().validate()
    assert base.fingerprint() == TrainConfig().validate().fingerprint()
    assert set(base.fingerprint_fields()) == set(FINGERPRINT_FIELDS)
    assert TrainConfig(batch_size=64).validate().fingerprint() != base.fingerprint()
    assert TrainConfig(seed=1).validate().fingerprint() != base.fingerprint()
    # Options that do not change what a checkpoint means leave it alone.
    same = TrainConfig(epochs=3, log_every=5, plot=False, run_name="x").validate()
    assert same.fingerprint() == base.fingerprint()


def test_fingerprint_is_the_same_in_another_process():
    code = "from trainer.config import TrainConfig; print(TrainConfig().validate().fingerprint())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == TrainConfig().validate().fingerprint()


def test_to_dict_round_trips():
    cfg = TrainConfig(net="mlp", lr_milestones=[1, 4]).validate()
    assert TrainConfig(**cfg.to_dict()).validate() == cfg
    assert set(cfg.to_dict()) == {f.name for f in dataclasses.fields(TrainConfig)}


# ------------------------------------------------------------------------------------ callbacks
def test_callback_specs_from_yaml(tmp_path):
    path = write_yaml(tmp_path, "callbacks:\n"
                                "  - class: pkg.mod.Class\n    args: {patience: 3, name: x}\n"
                                "  - pkg.other.Plain\n"
                                "  - {class: ' pkg.mod:Spaced '}\n")
    cfg = load_config(path)
    assert cfg.callbacks == [
        {"class": "pkg.mod.Class", "args": {"patience": 3, "name": "x"}},
        {"class": "pkg.other.Plain", "args": {}},
        {"class": "pkg.mod:Spaced", "args": {}},
    ]


@pytest.mark.parametrize("text, expected", [
    ("callbacks:\n  - {class: a.B, kwargs: {}}\n", "kwargs"),
    ("callbacks:\n  - {args: {x: 1}}\n", "callbacks[0]"),
    ("callbacks:\n  - {class: a.B, args: [1, 2]}\n", "callbacks[0].args"),
    ("callbacks:\n  - {class: ''}\n", "callbacks[0].class"),
    ("callbacks:\n  - 3\n", "callbacks[0]"),
    ("callbacks: a.B\n", "'callbacks'"),
])
def test_bad_callback_specs_in_yaml_are_refused(tmp_path, text, expected):
    assert expected in config_error(load_config, write_yaml(tmp_path, text))


# ------------------------------------------------------------------- values the step sees
@pytest.mark.parametrize("key, value, became", [
    ("clip_grad_norm", 1e-300, "0 in float32"),
    ("clip_grad_norm", 1e300, "infinity in float32"),
    ("clip_grad_value", 3.5e38, "infinity in float32"),
    ("lr", 1e-40, "a subnormal number in float32"),
    ("weight_decay", 1e39, "infinity in float32"),
    ("min_lr", 1e-50, "0 in float32"),
    ("lr_gamma", 1e-45, "a subnormal number in float32"),
])
def test_numbers_outside_float32_are_refused(key, value, became):
    # Valid Python floats, but the compiled step computes in float32.
    message = config_error(TrainConfig(**{key: value}).validate)
    assert f"Option '{key}' is {value!r}, which is {became}" in message
    assert "1.2e-38 to 3.4e+38" in message


@pytest.mark.parametrize("key", ["ema_decay", "label_smoothing", "plateau_factor"])
def test_a_factor_that_rounds_to_one_in_float32_is_refused(key):
    message = config_error(TrainConfig(**{key: 1 - 1e-9}).validate)
    assert f"Option '{key}' is {1 - 1e-9!r}" in message and "below 1 in float32" in message


def test_values_at_the_ends_of_float32_are_kept_as_given():
    cfg = TrainConfig(clip_grad_norm=3e38, lr=2e-38, ema_decay=0.9999999, min_lr=0.0).validate()
    assert (cfg.clip_grad_norm, cfg.lr, cfg.ema_decay) == (3e38, 2e-38, 0.9999999)

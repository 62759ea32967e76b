"""Run configuration: one dataclass, YAML recipes, command-line overrides, validated once.

Every option is declared once, as a field of :class:`TrainConfig` with its help text and its
constraints; the command line (``trainer/cli.py``) and the YAML loader are both generated from
those declarations, so the two cannot drift apart. This module does not import MindSpore: the
help text and configuration errors answer instantly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.device import DEVICES, MODES
from trainer.errors import ConfigError, shown
from trainer.limits import MAX_CLASSES, SOURCE_MAX_SIDE
from trainer.registry import NETWORKS, OPTIMIZERS, SCHEDULES, SOURCES, TRACKERS, Registry

# The fixed choices of options (the pluggable ones, networks, data sources, optimizers,
# schedules and trackers, come from their registries, trainer.registry).
# Initialisers of convolution and dense weights; "default" keeps each layer's own.
INITS = ("default", "normal", "xavier", "he", "uniform")
# Who computes the training step's convolutions and pooling on CPU (trainer/networks/native).
KERNELS = ("native", "mindspore")
# Mixed-precision levels of mindspore.amp.auto_mixed_precision, and the loss scaling of the step.
AMP_LEVELS = ("O0", "O1", "O2", "O3", "auto")
LOSS_SCALES = ("none", "fixed", "dynamic")
MONITOR_MODES = ("min", "max")
# What a run logs every epoch that --monitor may watch (val_* are measured on the validation data).
MONITORS = ("val_accuracy", "val_loss", "accuracy", "loss")

# Fields that decide what a checkpoint's tensors mean and how training proceeds from them. A resume
# is refused when any of them differs; everything else (epochs, logging, output) may change.
FINGERPRINT_FIELDS = (
    "net", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "lr_schedule",
    "warmup_epochs", "min_lr", "lr_gamma", "lr_step_size", "lr_milestones", "lr_power", "seed",
    "data_source", "data_cache", "val_split", "augment", "nesterov", "init", "decay_bias",
    "clip_grad_norm", "clip_grad_value", "accumulate_steps", "ema_decay", "label_smoothing",
    "amp_level", "loss_scale", "loss_scale_value",
    "image_size", "channels", "test_split",
)
# Fingerprint fields added later: left out of the hash at their defaults, so runs saved before
# they existed still resume.
_LATER_FIELDS = ("image_size", "channels", "test_split", "amp_level", "loss_scale",
                 "loss_scale_value")




def launch_blocker(cfg: TrainConfig) -> str | None:
    """Why ``cfg`` must launch one step at a time, or None when several steps per launch work."""
    if cfg.mode != "graph":
        return "--mode pynative runs operator by operator"
    if cfg.data_source in SOURCES and SOURCES.info(cfg.data_source, "own_pipeline", False):
        return f"--data-source {cfg.data_source} reads through its own pipeline"
    if not cfg.data_cache:
        return "--no-data-cache streams single batches from the source's reader"
    if cfg.distributed:
        return "--distributed averages gradients step by step"
    return None


# Whole-number options without a bound of their own stay within a C int, so nothing MindSpore or
# numpy is handed can overflow.
_INT_MAX = 2**31 - 1
# The normal float32 range: a value used inside the compiled step outside it becomes 0, a
# subnormal that the CPU's kernels may flush to 0, or infinity.
FLOAT32_TINY = 1.1754943508222875e-38
FLOAT32_MAX = 3.4028234663852886e38


def as_float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as the compiled step sees it (``inf`` past
    the float32 range)."""
    if abs(value) > FLOAT32_MAX * (1 + 2**-24):  # beyond what rounds down to FLOAT32_MAX
        return math.copysign(math.inf, value)
    return struct.unpack("f", struct.pack("f", value))[0]


def _opt(default: Any, help: str, *, choices: tuple | None = None, minimum: float | None = None,
         above: float | None = None, maximum: float | None = None, cli: bool = True,
         metavar: str | None = None, group: str = "training", float32: bool = False,
         registry: Registry | None = None, plugin: str = "",
         listed: Registry | None = None) -> Any:
    """Declares one option: its default, help text, the values allowed and its help group;
    ``float32`` for a number the compiled step uses in float32, so its bounds are checked on
    the value it has there; ``registry`` for a name that must be one of a registry's (its
    choices, read when needed), or with ``plugin`` (its form, ``pkg.module:factory``) a user's
    own; ``listed``
    for a registry whose names the help lists without checking the value against it."""
    if maximum is None and isinstance(default, int) and not isinstance(default, bool):
        maximum = _INT_MAX
    meta = {"help": help, "choices": choices, "minimum": minimum, "above": above,
            "maximum": maximum, "cli": cli, "metavar": metavar, "group": group,
            "float32": float32, "registry": registry, "plugin": plugin,
            "listed": listed or registry}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Everything a training run needs, with the defaults of MindSpore's MNIST tutorial.

    Build one directly (``TrainConfig(net="mlp", epochs=3)``), from a YAML recipe
    (:func:`load_config`), or from the command line (``trainer.cli.parse_args``). Call
    :meth:`validate` once; every consumer can then trust the values.

    Example:
        >>> cfg = TrainConfig(epochs=3, batch_size=64).validate()
        >>> cfg.lr
        0.01
    """

    # What to train.
    net: str = _opt("lenet", "network: a built-in one, or your own as 'pkg.module:function' (a "
                    "factory taking num_classes, and in_channels and image_size if it wants "
                    "them)", metavar="NAME", group="network", registry=NETWORKS,
                    plugin="pkg.module:function")
    num_classes: int = _opt(0, "outputs of the network; 0: the data source's class count (a "
                            "larger count leaves outputs unused)", minimum=0,
                            maximum=MAX_CLASSES, group="network")
    # Data.
    data_source: str = _opt("mnist", "where the images come from: a built-in source, or your "
                            "own as 'pkg.module:factory' (a trainer.data.sources.Source subclass "
                            "or a function returning one)", metavar="NAME", group="data",
                            registry=SOURCES, plugin="pkg.module:factory")
    data_dir: str = _opt("", "the data folder (default: data/SOURCE, e.g. data/mnist; "
                         "imagefolder needs one)", metavar="DIR", group="data")
    download: bool = _opt(True, "download the data into --data-dir when files are missing",
                          group="data")
    image_size: int = _opt(0, "side the images are resized to; 0: the network's input size, "
                           "else the source's", minimum=0, maximum=SOURCE_MAX_SIDE, metavar="N",
                           group="data")
    channels: int = _opt(0, "channels of the images (1: grayscale, 3: RGB); imagefolder "
                         "converts to them; 0: the source's own", choices=(0, 1, 3),
                         metavar="N", group="data")
    test_split: float = _opt(0.2, "share of each class of an image folder without test/ held "
                             "out as its test split, by a seeded stratified choice", above=0.0,
                             maximum=0.9, metavar="F", group="data")
    synthetic_train_size: int = _opt(6000, "generated training digits", minimum=1,
                                     maximum=100_000, group="data")
    synthetic_test_size: int = _opt(1000, "generated test digits", minimum=1, maximum=100_000,
                                    group="data")
    num_workers: int = _opt(2, "parallel workers of the input pipeline", minimum=1, maximum=64,
                            group="data")
    data_cache: bool = _opt(True, "decode and resize the digits once, through MindSpore's "
                            "reader, into a cache ($MSTRAIN_CACHE or ~/.cache/mstrain) and feed "
                            "whole batches from it; --no-data-cache decodes every digit on every "
                            "epoch instead", group="data")
    eval_batch_size: int = _opt(1000, "samples per validation batch; fewer, larger batches "
                                "validate faster", minimum=1, maximum=65_536, group="data")
    val_split: float = _opt(0.1, "digits held out of the training files for validation, by a "
                            "fixed class-stratified choice: a fraction (0.1) or a count (5000); "
                            "0 validates on the test split", minimum=0.0, metavar="F",
                            group="data")
    augment: bool = _opt(False, "augment the training images, drawn from (seed, epoch, step): "
                         "shifts, small rotations and scaling of digits; random crops (4-pixel "
                         "padding) and horizontal flips of photos", group="data")
    # Optimisation.
    epochs: int = _opt(10, "number of epochs", minimum=1, maximum=100_000, group="optimisation")
    batch_size: int = _opt(32, "samples per training step", minimum=1, maximum=65_536,
                           group="optimisation")
    optimizer: str = _opt("momentum", "optimizer", group="optimisation", registry=OPTIMIZERS)
    lr: float = _opt(0.01, "base learning rate", above=0.0, group="optimisation", float32=True)
    momentum: float = _opt(0.9, "momentum (momentum optimizer) or beta1 (adam)", minimum=0.0,
                           maximum=1.0, group="optimisation", float32=True)
    weight_decay: float = _opt(0.0, "L2 weight decay", minimum=0.0, group="optimisation",
                               float32=True)
    decay_bias: bool = _opt(True, "also decay biases (--no-decay-bias: weights only)",
                            group="optimisation")
    nesterov: bool = _opt(False, "Nesterov momentum (momentum and sgd optimizers)",
                          group="optimisation")
    init: str = _opt("default", "initialiser of convolution and dense weights (default: each "
                     "layer's own)", choices=INITS, group="optimisation")
    clip_grad_norm: float = _opt(0.0, "clip the gradients' global norm to X (0: off)",
                                 minimum=0.0, group="optimisation", float32=True)
    clip_grad_value: float = _opt(0.0, "clip every gradient value to [-X, X] (0: off)",
                                  minimum=0.0, group="optimisation", float32=True)
    accumulate_steps: int = _opt(1, "micro-batches of --batch-size per optimizer update",
                                 minimum=1, maximum=1024, group="optimisation")
    ema_decay: float = _opt(0.0, "keep an exponential moving average of the weights with this "
                            "decay, used for validation, the best checkpoint and export (0: off)",
                            minimum=0.0, group="optimisation", float32=True)
    label_smoothing: float = _opt(0.0, "label smoothing of the cross-entropy", minimum=0.0,
                                  group="optimisation", float32=True)
    amp_level: str = _opt("O0", "mixed precision of the training step (mindspore.amp): O0 "
                          "float32; O1 float16 for the operators on MindSpore's white list "
                          "(convolutions, dense layers); O2 float16 except batch norm; O3 float16 "
                          "throughout; auto MindSpore's own choice per operator. Weights, "
                          "validation, checkpoints and export stay float32",
                          choices=AMP_LEVELS, group="optimisation")
    loss_scale: str = _opt("none", "loss scaling against float16 gradient underflow: none, fixed "
                           "(--loss-scale-value throughout), or dynamic (starts at "
                           "--loss-scale-value, halves on an overflow, doubles after 1000 clean "
                           "updates); an update whose gradients overflow is skipped and counted",
                           choices=LOSS_SCALES, group="optimisation")
    loss_scale_value: float = _opt(1024.0, "the loss scale (fixed) or its starting value "
                                   "(dynamic)", minimum=1.0, group="optimisation", float32=True)
    seed: int = _opt(0, "random seed: the same seed gives bit-identical weights", minimum=0,
                     maximum=2**32 - 1, group="optimisation")
    # The learning-rate schedule.
    lr_schedule: str = _opt("constant", "learning-rate schedule", group="schedule",
                            registry=SCHEDULES)
    warmup_epochs: float = _opt(0.0, "linear warm-up before the schedule, in epochs", minimum=0.0,
                                group="schedule")
    min_lr: float = _opt(0.0, "floor of the cosine and polynomial schedules", minimum=0.0,
                         group="schedule", float32=True)
    lr_gamma: float = _opt(0.1, "decay factor of the step, multistep and exponential schedules",
                           above=0.0, maximum=1.0, group="schedule", float32=True)
    lr_step_size: int = _opt(3, "epochs between decays of the step schedule", minimum=1,
                             maximum=100_000, group="schedule")
    lr_milestones: list = _opt([5, 8], "epochs at which the multistep schedule decays",
                               group="schedule")
    lr_power: float = _opt(1.0, "power of the polynomial schedule", above=0.0, maximum=100.0,
                           group="schedule")
    # Where and how it runs.
    device: str = _opt("CPU", "where MindSpore computes: CPU, or a GPU (CUDA 11.1/11.6 with cuDNN "
                       "8) or an Ascend NPU (CANN 8.5.0) set up as docs/devices.md says",
                       choices=DEVICES, group="run")
    mode: str = _opt("graph", "graph compiles each step (fast); pynative runs op by op",
                     choices=MODES, group="run")
    kernels: str = _opt("native", "who computes the training step's convolutions and pooling "
                        "on CPU: native (C++ kernels compiled on this machine at first use into "
                        "the cache; MindSpore's operators, with one line saying why, where there "
                        "is no compiler or the CPU lacks AVX2) or mindspore; inference always "
                        "uses MindSpore's operators, and checkpoints are the same either way",
                        choices=KERNELS, group="run")
    steps_per_launch: int = _opt(0, "training steps per graph launch; callbacks then see one "
                                 "step end per launch, with cur_step_num advanced by all its "
                                 "steps. 0 (auto): 16 in graph mode on the cached feed (50 with "
                                 "the native kernels), unless a callback with step hooks lacks "
                                 "launch_aware = True; 1: every step on its own",
                                 minimum=0, maximum=256, metavar="N", group="run")
    distributed: bool = _opt(False, "train data-parallel across the workers that msrun starts "
                             "(each reads its shard of the training set; --batch-size is per "
                             "worker); launch with msrun, see the README", group="run")
    output_dir: str = _opt("runs", "folder that holds run directories", metavar="DIR",
                           group="run")
    run_name: str = _opt("", "run directory name inside --output-dir; default NET-DATE-TIME",
                         metavar="NAME", group="run")
    # Monitoring, checkpoints and callbacks.
    log_every: int = _opt(100, "print a loss line every N steps (0: only at epoch end)",
                          minimum=0, group="monitoring")
    progress: bool = _opt(True, "show a progress bar when the output is a terminal",
                          group="monitoring")
    plot: bool = _opt(True, "draw history.png after every epoch", group="monitoring")
    csv_log: bool = _opt(False, "also append one row per epoch to log.csv", group="monitoring")
    monitor: str = _opt("val_accuracy", "metric watched by the best checkpoint, early stopping "
                        "and plateau", choices=MONITORS, metavar="METRIC", group="monitoring")
    monitor_mode: str = _opt("max", "whether a higher or lower --monitor is better",
                             choices=MONITOR_MODES, group="monitoring")
    min_delta: float = _opt(0.0, "smallest change of --monitor that counts as an improvement",
                            minimum=0.0, group="monitoring")
    early_stopping_patience: int = _opt(0, "stop after N epochs without improvement (0: off)",
                                        minimum=0, maximum=100_000, group="monitoring")
    restore_best_weights: bool = _opt(False, "on early stopping, return to the best weights",
                                      group="monitoring")
    plateau_patience: int = _opt(0, "cut the learning rate after N epochs without improvement "
                                 "(0: off)", minimum=0, maximum=100_000, group="monitoring")
    plateau_factor: float = _opt(0.1, "factor applied to the learning rate on a plateau",
                                 above=0.0, maximum=1.0, group="monitoring", float32=True)
    save_every_epochs: int = _opt(1, "save a checkpoint every N epochs (0: off)", minimum=0,
                                  group="checkpoints")
    save_every_steps: int = _opt(0, "save a checkpoint every N steps (0: off)", minimum=0,
                                 group="checkpoints")
    keep_last: int = _opt(3, "keep the newest K periodic checkpoints (0: keep all)", minimum=0,
                          group="checkpoints")
    save_best: bool = _opt(True, "keep the checkpoint with the best --monitor value",
                           group="checkpoints")
    # Experiment tracking.
    report_to: str = _opt("none", "record the run in trackers as well: none, or one or more "
                          "trackers comma-separated; needs pip install -e \".[tracking]\"",
                          metavar="LIST", group="tracking", listed=TRACKERS)
    mlflow_uri: str = _opt("", "MLflow tracking URI (http://host:port or a database); default "
                           "$MLFLOW_TRACKING_URI, else sqlite:///OUTPUT_DIR/mlflow.db",
                           metavar="URI", group="tracking")
    mlflow_experiment: str = _opt("", "MLflow experiment name; default $MLFLOW_EXPERIMENT_NAME, "
                                  "else mstrain", metavar="NAME", group="tracking")
    callbacks: list = _opt([], "extra callbacks: [{class: pkg.mod.Class, args: {...}}]",
                           cli=False, group="monitoring")

    def validate(self) -> TrainConfig:
        """Checks every value against its declaration and the rules between values.

        Returns:
            The same object, so ``TrainConfig(...).validate()`` reads naturally.

        Raises:
            ConfigError: naming the key, the value received and what is allowed.
        """
        for f in dataclasses.fields(self):
            setattr(self, f.name, _check_value(f, getattr(self, f.name)))
        if not self.net.strip():
            raise ConfigError("Option 'net' is empty. Name a network: "
                              + ", ".join(NETWORKS.names())
                              + ", or a factory as 'pkg.module:function'.")
        milestones = self.lr_milestones
        if (not milestones or len(milestones) > 1000
                or not all(isinstance(m, int) and not isinstance(m, bool) and 0 < m <= 100_000
                           for m in milestones)
                or list(milestones) != sorted(set(milestones))):
            raise ConfigError(f"Option 'lr_milestones' is {shown(milestones)}; it must be a "
                              "non-empty, strictly increasing list of whole epochs from 1 to "
                              "100000, e.g. [5, 8].")
        _check_run_name(self.run_name)
        self.report_to = _check_report_to(self.report_to)
        _check_train_options(self)
        if as_float32(self.plateau_factor) >= 1.0:
            raise ConfigError(f"Option 'plateau_factor' is {self.plateau_factor!r}; it must be "
                              "below 1 in float32, the precision the learning rate is kept in, "
                              "or a plateau would not lower the learning rate.")
        self.callbacks = [_check_callback_spec(i, spec) for i, spec in enumerate(self.callbacks)]
        if self.steps_per_launch > 1:
            single = launch_blocker(self)
            if single:
                raise ConfigError(f"Option 'steps_per_launch' is {self.steps_per_launch}, but "
                                  f"{single}, which launches one step at a time. Leave "
                                  "--steps-per-launch at 0 (auto) or 1.")
        _check_schedule(self)
        return self

    def trackers(self) -> list[str]:
        """The trackers ``report_to`` names, in order (empty for ``none``)."""
        return [] if self.report_to == "none" else self.report_to.split(",")

    def resolved_data_dir(self) -> Path:
        """The data folder, with the default that depends on the data source (``data`` for
        one without a default)."""
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        if self.data_source in SOURCES:
            return Path(SOURCES.info(self.data_source, "default_dir") or "data")
        return Path("data")

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON- and YAML-safe copy of every option."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def fingerprint(self) -> str:
        """A short hash of the options that must match for a checkpoint to resume this run."""
        values = {k: getattr(self, k) for k in FINGERPRINT_FIELDS
                  if k not in _LATER_FIELDS or getattr(self, k) != default_of(CONFIG_FIELDS[k])}
        blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def fingerprint_fields(self) -> dict[str, Any]:
        """The values behind :meth:`fingerprint`, for explaining a mismatch."""
        return {k: getattr(self, k) for k in FINGERPRINT_FIELDS}


CONFIG_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _type_name(default: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}[type(default)]


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _check_value(f: dataclasses.Field, value: Any) -> Any:
    """Coerces harmless forms (1 for 1.0) and refuses the rest, naming key, value and rule."""
    default, meta, key = default_of(f), f.metadata, f.name
    expected = type(default)
    ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value, ok = float(value), True
        except OverflowError:  # a whole number too large for a float
            ok = False
    if not ok:
        raise ConfigError(f"Option '{key}' is {shown(value)} ({type(value).__name__}), but it "
                          f"must be {_type_name(default)} (default {default!r}). "
                          f"{meta['help'].capitalize()}.")
    if expected is float and not math.isfinite(value):
        what = "NaN" if value != value else value
        raise ConfigError(f"Option '{key}' is {what}; it must be a finite number "
                          f"({meta['help']}).")
    if meta.get("float32"):
        _check_float32(key, value, meta)
        value_in_use = as_float32(value)
    else:
        value_in_use = value
    if expected is str and len(value) > 4096:
        raise ConfigError(f"Option '{key}' is a string of {len(value)} characters, "
                          f"{shown(value)}; it is limited to 4096 ({meta['help']}).")
    registry = meta.get("registry")
    if registry is not None:
        _check_name(key, value, registry, meta.get("plugin", ""))
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"Option '{key}' is {shown(value)}, which is not allowed. Choose one "
                          f"of: {', '.join(map(str, choices))}.")
    if meta.get("minimum") is not None and value_in_use < meta["minimum"]:
        raise ConfigError(f"Option '{key}' is {shown(value)}, but it must be at least "
                          f"{meta['minimum']!r} ({meta['help']}).")
    if meta.get("above") is not None and value_in_use <= meta["above"]:
        raise ConfigError(f"Option '{key}' is {shown(value)}, but it must be above "
                          f"{meta['above']!r} ({meta['help']}).")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise ConfigError(f"Option '{key}' is {shown(value)}, but it must be at most "
                          f"{meta['maximum']!r} ({meta['help']}).")
    return value


def _check_name(key: str, value: str, registry: Registry, plugin: str) -> None:
    """A registry's name, or with ``plugin`` a ``pkg.module:factory`` (checked when used)."""
    if value in registry or (plugin and ":" in value and value.strip() == value):
        return
    own = f", or your own as '{plugin}'" if plugin else ""
    raise ConfigError(f"Option '{key}' is {shown(value)}, which is not a known {registry.kind}. "
                      f"Choose one of: {', '.join(registry.names())}{own}.")


def _check_float32(key: str, value: float, meta: dict[str, Any]) -> None:
    """Refuses a number that the compiled step, computing in float32, would see as 0, as a
    subnormal or as infinity."""
    if value == 0:
        return
    rounded = as_float32(value)
    if math.isinf(rounded) or abs(rounded) < FLOAT32_TINY:
        became = "infinity" if math.isinf(rounded) else ("0" if rounded == 0 else
                                                           "a subnormal number")
        raise ConfigError(f"Option '{key}' is {shown(value)}, which is {became} in float32, the "
                          "precision training uses it in; give a value from 1.2e-38 to 3.4e+38"
                          f"{' (or 0 for off)' if meta.get('minimum') == 0.0 else ''} "
                          f"({meta['help']}).")


def _check_report_to(value: str) -> str:
    """``report_to`` in its plain form (``tensorboard,mlflow``), or a ConfigError."""
    names = [part.strip().lower() for part in value.split(",")]
    names = [n for i, n in enumerate(names) if n and n not in names[:i]]
    bad = [n for n in names if n not in (*TRACKERS.names(), "none")]
    if bad or not names or ("none" in names and len(names) > 1):
        raise ConfigError(f"Option 'report_to' is {shown(value)}; name none, or one or more of "
                          f"{', '.join(TRACKERS.names())} separated by commas (e.g. "
                          "--report-to tensorboard,mlflow).")
    return ",".join(names)


def _check_run_name(name: str) -> None:
    """A run name is one folder name inside --output-dir, never a path out of it."""
    if name and (name in (".", "..") or any(c in name for c in "/\\\0") or len(name) > 200):
        raise ConfigError(f"Option 'run_name' is {shown(name)}; it must be a plain folder name "
                          "(no '/', not '.' or '..', at most 200 characters), created inside "
                          "--output-dir. Use --output-dir to choose where runs go.")


def _check_schedule(cfg: TrainConfig) -> None:
    """The rules between a configuration's schedule options that hold for any data size.

    The one place a schedule's settings are checked (the declarations check each on its own),
    so a schedule that cannot be built is refused before any data is prepared. Only what
    depends on the data's size, a warm-up that rounds to the whole run and the run's length, is
    left to ``trainer.engine.schedules.build_schedule``.
    """
    if SCHEDULES.info(cfg.lr_schedule, "floor", False) and not as_float32(
            cfg.min_lr) < as_float32(cfg.lr):
        raise ConfigError(
            f"Option 'min_lr' is {cfg.min_lr!r}, but the {cfg.lr_schedule} schedule decays from "
            f"--lr {cfg.lr!r} down to it, so it must be below --lr. Lower --min-lr or raise --lr."
        )
    if not SCHEDULES.info(cfg.lr_schedule, "warmup", True) and cfg.warmup_epochs > 0:
        raise ConfigError(
            f"Option 'warmup_epochs' is {cfg.warmup_epochs!r}, but the {cfg.lr_schedule} "
            "schedule warms up by itself; leave --warmup-epochs at 0 with --lr-schedule "
            f"{cfg.lr_schedule}."
        )
    if cfg.warmup_epochs >= cfg.epochs:
        raise ConfigError(
            f"Option 'warmup_epochs' is {cfg.warmup_epochs!r}, but the run has only "
            f"{cfg.epochs} epoch(s); the warm-up must be shorter than the run. Lower "
            "--warmup-epochs or raise --epochs."
        )


def _check_train_options(cfg: TrainConfig) -> None:
    """The rules between the optimisation options."""
    if cfg.val_split >= 1 and cfg.val_split != int(cfg.val_split):
        raise ConfigError(f"Option 'val_split' is {cfg.val_split!r}; give a fraction below 1 "
                          "(0.1) or a whole count of digits (5000).")
    for key in ("ema_decay", "label_smoothing"):
        if as_float32(getattr(cfg, key)) >= 1.0:
            raise ConfigError(f"Option '{key}' is {getattr(cfg, key)!r}; it must be below 1 in "
                              "float32, the precision training uses it in (a value within 6e-8 "
                              "of 1 rounds to 1 there).")
    if cfg.nesterov and (not OPTIMIZERS.info(cfg.optimizer, "nesterov", False)
                         or cfg.momentum == 0):
        ahead = " or ".join(n for n in OPTIMIZERS.names() if OPTIMIZERS.info(n, "nesterov"))
        raise ConfigError(f"Option 'nesterov' is on, but --optimizer {cfg.optimizer} with "
                          f"--momentum {cfg.momentum} has no momentum to look ahead with; use "
                          f"--optimizer {ahead} with --momentum above 0.")
    own = cfg.data_source in SOURCES and SOURCES.info(cfg.data_source, "own_pipeline", False)
    if cfg.augment and (own or not cfg.data_cache):
        raise ConfigError("Option 'augment' works on the decoded-data cache's feed; it does not "
                          f"go with {'--data-source ' + cfg.data_source if own else ''}"
                          f"{'' if own else '--no-data-cache'}.")
    if (not cfg.data_dir and cfg.data_source in SOURCES
            and SOURCES.info(cfg.data_source, "needs_dir", False)):
        raise ConfigError(f"Option 'data_source' is {cfg.data_source}, which reads the folder "
                          "you name: pass --data-dir DIR (e.g. a folder holding train/<class>/ "
                          "with your images).")
    if cfg.num_classes == 1:
        raise ConfigError("Option 'num_classes' is 1; a classifier needs at least 2 outputs. "
                          "Leave it at 0 to take the data source's class count.")
    if cfg.clip_grad_norm and cfg.clip_grad_value:
        raise ConfigError("Options 'clip_grad_norm' and 'clip_grad_value' are both set; clip by "
                          "the global norm or by value, not both.")


def _check_callback_spec(index: int, spec: Any) -> dict[str, Any]:
    where = f"callbacks[{index}]"
    if isinstance(spec, str):
        spec = {"class": spec}
    if not isinstance(spec, dict) or "class" not in spec:
        raise ConfigError(f"Option '{where}' is {spec!r}; each callback is a mapping like "
                          "{class: my_pkg.my_mod.MyCallback, args: {patience: 3}}.")
    unknown = set(spec) - {"class", "args"}
    if unknown:
        raise ConfigError(f"Option '{where}' has unknown key(s) {', '.join(sorted(unknown))}; "
                          "allowed keys are 'class' and 'args'.")
    target, args = spec["class"], spec.get("args") or {}
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"Option '{where}.class' is {target!r}; name the callback class as "
                          "'pkg.module.Class' or 'pkg.module:Class'.")
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ConfigError(f"Option '{where}.args' is {args!r}; it must map argument names to "
                          "values.")
    return {"class": target.strip(), "args": dict(args)}


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a YAML recipe into a mapping of option names to values.

    The file is read within the bounds of :mod:`trainer.limits` (size, nodes with aliases
    expanded, depth); duplicate keys and tags are refused (see :mod:`trainer.config.recipe`).

    Raises:
        ConfigError: the file is missing, unreadable, too large, not valid YAML, not a mapping,
            or names an option that does not exist (the message lists the options that do).
    """
    from trainer.config.recipe import read_recipe

    data = read_recipe(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {str(path)!r} must be a mapping of option names to "
                          f"values (e.g. 'epochs: 10'), but it holds a {type(data).__name__}.")
    check_keys(data, f"config file {str(path)!r}")
    return data


def check_keys(values: dict[str, Any], where: str) -> None:
    """Refuses keys that are not options, listing the ones that are."""
    unknown = [k for k in values if k not in CONFIG_FIELDS]
    if unknown:
        import difflib

        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), CONFIG_FIELDS, n=1)
            hints.append(shown(key) + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"Unknown option(s) in {where}: {', '.join(hints[:10])}. Known options: "
                          f"{', '.join(CONFIG_FIELDS)}.")


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> TrainConfig:
    """Builds a validated configuration: defaults, then the YAML recipe, then ``overrides``.

    Args:
        path: A YAML recipe such as ``configs/lenet_mnist.yaml``. Defaults to `None`.
        **overrides: Option values that win over the recipe.

    Raises:
        ConfigError: for an unreadable recipe, an unknown key or a value that is not allowed.

    Example:
        >>> cfg = load_config(None, net="mlp", epochs=2)
        >>> (cfg.net, cfg.epochs)
        ('mlp', 2)
    """
    values: dict[str, Any] = load_yaml(path) if path else {}
    check_keys(overrides, "the overrides")
    values.update(overrides)
    return TrainConfig(**values).validate()


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Writes the resolved configuration as YAML, atomically."""
    import yaml

    from trainer.fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

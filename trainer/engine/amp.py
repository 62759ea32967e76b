"""Mixed precision for the training step: ``--amp-level`` and ``--loss-scale``.

The level is applied with ``mindspore.amp.auto_mixed_precision`` to a *twin* of the network: a
copy of its cells that holds the very same ``Parameter`` objects. The twin trains (its graph
computes in float16 where the level says so); the network itself is left in float32, so
validation, the final test, the best checkpoint's choice, and everything after training
(``mstrain eval``, ``predict``, ``export``, which build a new float32 network from a checkpoint)
judge the float32 weights that are saved. The weights are float32 at every level: MindSpore casts
them to float16 inside the compiled graph, never in place.

Loss scaling uses ``mindspore.amp.StaticLossScaler`` (``fixed``) or ``DynamicLossScaler``
(``dynamic``) inside the one :class:`~trainer.engine.step.TrainStep`; their ``Parameter`` s are
renamed ``loss_scale.*`` and belong to the step, so every checkpoint bundle carries the scale, the
dynamic scaler's counter and the count of overflowed updates.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.errors import ConfigError

logger = logging.getLogger("mstrain")

# DynamicLossScaler: the scale doubles after this many updates in a row without an overflow
# (MindSpore's DynamicLossScaleManager waits 2000, PyTorch's GradScaler 2000; an MNIST epoch at
# batch 32 has 1875 steps, so 1000 lets a scale that fell recover within an epoch).
SCALE_FACTOR = 2
SCALE_WINDOW = 1000


def describe(cfg: TrainConfig) -> str:
    """How the run computes, for the log: ``float32``, or the level and the loss scaling."""
    if cfg.amp_level == "O0" and cfg.loss_scale == "none":
        return "float32"
    text = f"mixed precision {cfg.amp_level}" if cfg.amp_level != "O0" else "float32"
    if cfg.loss_scale == "none":
        return text + ", no loss scaling"
    how = (f"dynamic loss scale from {cfg.loss_scale_value:g} (x{SCALE_FACTOR} after "
           f"{SCALE_WINDOW} updates without overflow, /{SCALE_FACTOR} on one)"
           if cfg.loss_scale == "dynamic" else f"fixed loss scale {cfg.loss_scale_value:g}")
    return f"{text}, {how}; an update whose gradients overflow is skipped"


def announce(cfg: TrainConfig) -> None:
    """Logs how the step computes, unless it is the plain float32 step."""
    if cfg.amp_level != "O0" or cfg.loss_scale != "none":
        logger.info("Training step: %s.", describe(cfg))


def mixed_precision(network: Any, level: str) -> Any:
    """The cell that trains at ``level``: ``network`` itself for ``O0``, else a twin of it
    converted by ``mindspore.amp.auto_mixed_precision``, sharing its parameters.

    The native CPU kernels (``--kernels native``) compute in float32 only, so a network that
    would use them trains with MindSpore's operators instead, saying so in one line.

    Raises:
        ConfigError: the network cannot be copied or converted (a user's network holding
            something that cannot be copied, or code MindSpore's rewrite cannot parse at O1).
    """
    if level == "O0":
        return network
    from mindspore import amp, ops

    if getattr(network, "native", False):
        # Read when the training graph compiles: the network (and its twin) then take
        # MindSpore's operators, which run float16.
        network.native = False
        logger.info("Native kernels are float32 only; --amp-level %s trains with MindSpore's "
                    "operators.", level)
    params = {id(p): p for p in network.get_parameters()}
    # Custom operators (the native kernels) cannot be copied; they hold no state, so the twin
    # may share them.
    shared = {**params, **{id(op): op for _, cell in network.cells_and_names()
                           for op in getattr(cell, "_primitives", {}).values()
                           if isinstance(op, ops.Custom)}}
    name = type(network).__name__
    try:
        twin = copy.deepcopy(network, shared)
    except Exception as exc:  # a user's network may hold anything
        raise ConfigError(
            f"--amp-level {level} needs a copy of the network {name} that shares its weights (the "
            "copy trains in mixed precision, the network itself validates and exports in "
            f"float32), but copying it failed ({type(exc).__name__}: {exc}). Make the network "
            "copyable with copy.deepcopy, or train with --amp-level O0.") from None
    try:
        with _rewrite_folder():
            converted = amp.auto_mixed_precision(twin, level)
    except Exception as exc:  # MindSpore's rewrite (O1) parses the network's own code
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"MindSpore could not convert the network {name} to --amp-level {level} ({first}). "
            "Try another level (O2 and O3 convert whole cells and do not parse the network's "
            "code, O1 does), or --amp-level O0.") from None
    if {id(p) for p in converted.get_parameters()} != set(params):
        raise ConfigError(
            f"--amp-level {level} changed the parameters of the network {name} (its mixed-"
            "precision copy does not share them), so the trained weights would not be the ones "
            "saved. Train it with --amp-level O0.")
    return converted


@contextlib.contextmanager
def _rewrite_folder() -> Iterator[Path]:
    """Runs MindSpore's rewrite (O1) in a folder of the cache: it writes the converted network's
    code to ``./rewritten_network/`` and imports it from there, which would leave files in the
    user's folder. The folder is this process's own and is removed when the process exits (the
    graph compiler reads that code when the step compiles)."""
    from trainer.fileio import cache_root

    folder = cache_root() / "amp-rewrite" / f"{os.getpid()}-{time.time_ns()}"
    folder.mkdir(parents=True, exist_ok=True)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    here = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(here)


def loss_scaler(cfg: TrainConfig) -> Any:
    """The ``mindspore.amp`` loss scaler of ``--loss-scale``, or None for ``none``."""
    if cfg.loss_scale == "none":
        return None
    from mindspore import amp

    value = float(cfg.loss_scale_value)
    if cfg.loss_scale == "fixed":
        return amp.StaticLossScaler(value)
    return amp.DynamicLossScaler(value, SCALE_FACTOR, SCALE_WINDOW)


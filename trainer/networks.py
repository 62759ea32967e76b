"""Networks: LeNet-5 and the tutorial MLP, a registry, and users' own factories.

A network is named either by its registry name (``lenet``, ``mlp``, ``mindvision-lenet``) or as
``pkg.module:factory``, a callable taking ``num_classes`` and returning a ``mindspore.nn.Cell``.
The input size the network expects (32 for LeNet, 28 for the MLP) decides whether the data
pipeline resizes; a user's network declares it with an ``image_size`` attribute on the factory
or the cell, and gets MNIST's native 28 otherwise.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mindspore import nn
from mindspore.common.initializer import Normal

from trainer import mindvision_source
from trainer.errors import ConfigError


class LeNet5(nn.Cell):
    """LeNet-5 as in MindSpore's tutorials: two 5x5 valid convolutions and three dense layers.

    Args:
        num_classes: Number of output logits. Defaults to `10`.
        num_channel: Input channels. Defaults to `1`.
    """

    image_size = 32

    def __init__(self, num_classes: int = 10, num_channel: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_channel, 6, 5, pad_mode="valid")
        self.conv2 = nn.Conv2d(6, 16, 5, pad_mode="valid")
        self.fc1 = nn.Dense(16 * 5 * 5, 120, weight_init=Normal(0.02))
        self.fc2 = nn.Dense(120, 84, weight_init=Normal(0.02))
        self.fc3 = nn.Dense(84, num_classes, weight_init=Normal(0.02))
        self.relu = nn.ReLU()
        self.max_pool2d = nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = nn.Flatten()

    def construct(self, x):
        x = self.max_pool2d(self.relu(self.conv1(x)))
        x = self.max_pool2d(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


class MLP(nn.Cell):
    """The dense network of MindSpore's quick start: flatten 28x28, 512-512 with ReLU, logits.

    Args:
        num_classes: Number of output logits. Defaults to `10`.
    """

    image_size = 28

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.dense_relu_sequential = nn.SequentialCell(
            nn.Dense(28 * 28, 512), nn.ReLU(),
            nn.Dense(512, 512), nn.ReLU(),
            nn.Dense(512, num_classes),
        )

    def construct(self, x):
        return self.dense_relu_sequential(self.flatten(x))


# mindvision's LeNet imports mindvision only when it is built (see trainer/mindvision_source.py).
REGISTRY: dict[str, Callable[..., nn.Cell]] = {"lenet": LeNet5, "mlp": MLP,
                                               "mindvision-lenet": mindvision_source.lenet}


@dataclass
class BuiltNetwork:
    """A network and the input size its data pipeline must produce."""

    cell: nn.Cell
    image_size: int


def resolve_factory(spec: str) -> Callable[..., nn.Cell]:
    """Finds the factory for a registry name or a ``pkg.module:attr`` spec.

    The current working directory is importable, as it is for ``python -m``, so a network in
    ``./my_nets.py`` is named ``my_nets:build``.

    Raises:
        ConfigError: unknown name, module not importable, or attribute missing / not callable.
    """
    if spec in REGISTRY:
        return REGISTRY[spec]
    return import_object(spec, what="network", option="net",
                         hint="a callable taking num_classes and returning a mindspore.nn.Cell")


def import_object(spec: str, *, what: str, option: str, hint: str) -> Callable:
    """Imports ``pkg.module:attr`` (or ``pkg.module.attr``) and checks it is callable."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    else:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"Option '{option}' is {spec!r}; name the {what} as 'pkg.module:Name' "
                          f"({hint}).")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"Option '{option}' is {spec!r}, but module {module_name!r} cannot be "
                          f"imported ({exc}). Check the spelling, and that the module is on "
                          "PYTHONPATH or in the current folder.") from None
    except Exception as exc:  # a user's module may fail in any way while it is imported
        raise ConfigError(f"Option '{option}' is {spec!r}, but importing module {module_name!r} "
                          f"failed: {type(exc).__name__}: {exc}. Fix the module (run 'python -c "
                          f"\"import {module_name}\"' to see the traceback).") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(module) if not n.startswith("_"))
            raise ConfigError(f"Option '{option}' is {spec!r}, but module {module_name!r} has no "
                              f"attribute {attr!r}. It defines: {', '.join(names[:20])}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"Option '{option}' is {spec!r}, but {attr!r} is not callable; it must "
                          f"be {hint}.")
    return obj


def build_network(spec: str, num_classes: int = 10) -> BuiltNetwork:
    """Builds the network named by ``spec``.

    Args:
        spec: A registry name or ``pkg.module:factory``.
        num_classes: Number of output classes. Defaults to `10`.

    Raises:
        ConfigError: the network cannot be found, or the factory fails or returns no Cell.

    Example:
        >>> built = build_network("lenet")
        >>> built.image_size
        32
    """
    factory = resolve_factory(spec)
    try:
        cell = factory(num_classes=num_classes)
    except ConfigError:  # already a complete message (e.g. mindvision is not installed)
        raise
    except Exception as exc:  # a user's factory may fail in any way; say whose fault it is
        raise ConfigError(f"Network factory {spec!r} failed when called with "
                          f"num_classes={num_classes}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(cell, nn.Cell):
        raise ConfigError(f"Network factory {spec!r} returned {type(cell).__name__}, not a "
                          "mindspore.nn.Cell.")
    size = getattr(cell, "image_size", None) or getattr(factory, "image_size", None) or 28
    return BuiltNetwork(cell=cell, image_size=int(size))

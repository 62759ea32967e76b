"""Networks by name: the built-in registry and users' own factories.

A network is named either by its registry name (``lenet``, ``mlp``, ``mindvision-lenet``) or as
``pkg.module:factory``: an ``nn.Cell`` subclass, or a function with a ``num_classes`` parameter
that returns an ``nn.Cell`` (see :mod:`trainer.plugins` for what is checked before it is called).
The input size the network expects (32 for LeNet, 28 for the MLP) decides whether the data
pipeline resizes; a user's network declares it with an ``image_size`` attribute on the factory
or the cell, and gets MNIST's native 28 otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainer.errors import ConfigError

# Name to "module:attribute", imported when built; mindvision's LeNet imports mindvision only then.
REGISTRY: dict[str, str] = {
    "lenet": "trainer.networks.lenet:LeNet5",
    "mlp": "trainer.networks.mlp:MLP",
    "mindvision-lenet": "trainer.networks.mindvision:lenet",
}
# The built-in networks whose training step can run the native CPU kernels (--kernels).
NATIVE_KERNELS = ("lenet",)


@dataclass
class BuiltNetwork:
    """A network and the input size its data pipeline must produce."""

    cell: Any
    image_size: int


def is_builtin(spec: str) -> bool:
    """Whether ``spec`` names a network of the registry (no user code involved)."""
    return spec in REGISTRY


def resolve_factory(spec: str) -> Callable[..., Any]:
    """The class or function that builds ``spec``, checked but not called.

    Raises:
        ConfigError: unknown name, module not importable, or something that is not a network
            class or factory function.
    """
    if spec in REGISTRY:
        module, _, attr = REGISTRY[spec].partition(":")
        return getattr(importlib.import_module(module), attr)
    from trainer.plugins import network_factory

    return network_factory(spec)


def build_network(spec: str, num_classes: int = 10, kernels: str = "mindspore") -> BuiltNetwork:
    """Builds the network named by ``spec``.

    Args:
        spec: A registry name or ``pkg.module:factory``.
        num_classes: Number of output classes. Defaults to `10`.
        kernels: ``native`` or ``mindspore``: who computes the training step's convolutions
            and pooling, for the built-in networks that have native kernels (LeNet-5); others
            ignore it. Defaults to `"mindspore"`.

    Raises:
        ConfigError: the network cannot be found, is not a network, or its factory fails or
            returns no Cell.

    Example:
        >>> built = build_network("lenet")
        >>> built.image_size
        32
    """
    from mindspore import nn

    factory = resolve_factory(spec)
    try:
        extra = {"kernels": kernels} if spec in NATIVE_KERNELS else {}
        cell = factory(num_classes=num_classes, **extra)
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

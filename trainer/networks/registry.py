"""Networks by name: the built-in ones (registered where they are defined with
``@register_network``, see :mod:`trainer.registry`) and users' own factories.

A network is named either by its registry name (``lenet``, ``mlp``, ...) or as
``pkg.module:factory``: an ``nn.Cell`` subclass, or a function with a ``num_classes`` parameter
that returns an ``nn.Cell`` (see :mod:`trainer.plugins` for what is checked before it is called).
Each is told what the data is: ``num_classes``, ``in_channels`` and ``image_size``, whichever of
them its factory declares as parameters.

The input side is ``--image-size`` when given, else the network's own (LeNet-5 takes 32x32; a
built-in network declares it in the registry, a user's with an ``image_size`` attribute on its
factory), else the data source's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainer.errors import ConfigError
from trainer.registry import NETWORKS


@dataclass
class BuiltNetwork:
    """A network and the input its data pipeline must produce."""

    cell: Any
    image_size: int
    in_channels: int = 1


def is_builtin(spec: str) -> bool:
    """Whether ``spec`` names a network of the registry (no user code involved)."""
    return spec in NETWORKS


def resolve_factory(spec: str) -> Callable[..., Any]:
    """The class or function that builds ``spec``, checked but not called.

    Raises:
        ConfigError: unknown name, module not importable, or something that is not a network
            class or factory function.
    """
    if spec in NETWORKS:
        return NETWORKS.get(spec)
    from trainer.plugins import network_factory

    return network_factory(spec)


def preferred_size(spec: str, factory: Any = None) -> int | None:
    """The input side a network asks for (a built-in's registered ``image_size``, or a user's
    factory's ``image_size`` attribute), or None: it takes the data's."""
    if spec in NETWORKS:
        return NETWORKS.info(spec, "image_size")
    size = getattr(factory, "image_size", None)
    return int(size) if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def input_size(spec: str, image_size: int = 0, native: int = 28, factory: Any = None) -> int:
    """The side of the images a run feeds ``spec``: ``image_size`` (``--image-size``) when not
    0, else the network's own, else ``native`` (the data source's)."""
    return image_size or preferred_size(spec, factory) or native


def build_network(spec: str, num_classes: int = 10, kernels: str = "mindspore", *,
                  in_channels: int = 1, image_size: int = 0, native: int = 28) -> BuiltNetwork:
    """Builds the network named by ``spec`` for the data it will see.

    Args:
        spec: A registry name or ``pkg.module:factory``.
        num_classes: Number of output classes. Defaults to `10`.
        kernels: ``native`` or ``mindspore``: who computes the training step's convolutions
            and pooling, for the built-in networks that have native kernels (LeNet-5); others
            ignore it. Defaults to `"mindspore"`.
        in_channels: Channels of the input images. Defaults to `1`.
        image_size: ``--image-size`` (0: the network's own side, else ``native``). Defaults to
            `0`.
        native: The data source's image side. Defaults to `28`.

    Raises:
        ConfigError: the network cannot be found, is not a network, takes other inputs than the
            data gives, or its factory fails or returns no Cell.

    Example:
        >>> built = build_network("lenet")
        >>> built.image_size
        32
    """
    from mindspore import nn

    from trainer.plugins import declared_arguments

    factory = resolve_factory(spec)
    size = input_size(spec, image_size, native, factory)
    if spec in NETWORKS:
        fixed = NETWORKS.info(spec, "channels")
        if fixed and fixed != in_channels:
            raise ConfigError(f"Network {spec!r} takes {fixed}-channel images, but the data has "
                              f"{in_channels} channels. Choose another --net (lenet, mlp, ...).")
    available = {"num_classes": num_classes, "in_channels": in_channels, "image_size": size}
    if spec in NETWORKS and NETWORKS.info(spec, "native_kernels"):
        available["kernels"] = kernels
    arguments = declared_arguments(factory, available)
    try:
        cell = factory(**arguments)
    except ConfigError:  # already a complete message (e.g. mindvision is not installed)
        raise
    except Exception as exc:  # a user's factory may fail in any way; say whose fault it is
        shown = ", ".join(f"{k}={v}" for k, v in arguments.items())
        raise ConfigError(f"Network factory {spec!r} failed when called with {shown}: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(cell, nn.Cell):
        raise ConfigError(f"Network factory {spec!r} returned {type(cell).__name__}, not a "
                          "mindspore.nn.Cell.")
    if "image_size" not in arguments:  # a network that chose its own input side says so
        own = getattr(cell, "image_size", None)
        if isinstance(own, int) and not isinstance(own, bool) and own > 0:
            size = own
    return BuiltNetwork(cell=cell, image_size=int(size), in_channels=in_channels)

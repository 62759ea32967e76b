"""Networks: LeNet-5 and the tutorial MLP, mindvision's LeNet, and users' own factories.

Importing this package does not import MindSpore; the network classes load when first used.
"""

from __future__ import annotations

from typing import Any

from trainer.networks.registry import (
    REGISTRY,
    BuiltNetwork,
    build_network,
    is_builtin,
    resolve_factory,
)

__all__ = ["MLP", "REGISTRY", "BuiltNetwork", "LeNet5", "build_network", "is_builtin",
           "resolve_factory"]

_LAZY = {"LeNet5": "trainer.networks.lenet", "MLP": "trainer.networks.mlp"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trainer.networks' has no attribute {name!r}")

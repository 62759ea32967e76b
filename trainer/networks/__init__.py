"""Networks: LeNet-5, the tutorial MLP, mindvision's LeNet, and users' own factories.

Importing this package does not import MindSpore; the network classes load when first used.
"""

from __future__ import annotations

from typing import Any

from trainer.networks.registry import (
    BuiltNetwork,
    build_network,
    input_size,
    is_builtin,
    resolve_factory,
)
from trainer.registry import NETWORKS

__all__ = ["MLP", "NETWORKS", "BuiltNetwork", "LeNet5", "build_network", "input_size",
           "is_builtin", "resolve_factory"]

_LAZY = {"LeNet5": "trainer.networks.lenet", "MLP": "trainer.networks.mlp"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trainer.networks' has no attribute {name!r}")

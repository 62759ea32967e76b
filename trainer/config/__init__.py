"""Run configuration: one dataclass, YAML recipes, command-line overrides, validated once.

The names of networks, data sources, optimizers, schedules and trackers come from their
registries (:mod:`trainer.registry`); ``NETWORKS``, ``DATA_SOURCES``, ``OPTIMIZERS``,
``LR_SCHEDULES`` and ``TRACKERS`` are kept here as tuples of those names.
"""

from typing import Any

from trainer.config.options import (
    CONFIG_FIELDS,
    DEVICES,
    FINGERPRINT_FIELDS,
    INITS,
    KERNELS,
    MODES,
    MONITOR_MODES,
    MONITORS,
    TrainConfig,
    check_keys,
    default_of,
    launch_blocker,
    load_config,
    load_yaml,
    save_config,
)

__all__ = ["CONFIG_FIELDS", "DATA_SOURCES", "DEVICES", "FINGERPRINT_FIELDS",
           "INITS", "KERNELS", "LR_SCHEDULES", "MODES", "MONITORS", "MONITOR_MODES", "NETWORKS",
           "OPTIMIZERS", "TRACKERS", "TrainConfig", "check_keys", "default_of",
           "launch_blocker", "load_config", "load_yaml", "save_config"]

_NAMES = {"NETWORKS": "NETWORKS", "DATA_SOURCES": "SOURCES", "OPTIMIZERS": "OPTIMIZERS",
          "LR_SCHEDULES": "SCHEDULES", "TRACKERS": "TRACKERS"}


def __getattr__(name: str) -> Any:
    """The registries' names as tuples, read when asked for, for code that imports them from
    here."""
    if name in _NAMES:
        from trainer import registry

        return getattr(registry, _NAMES[name]).names()
    raise AttributeError(f"module 'trainer.config' has no attribute {name!r}")

"""Run configuration: one dataclass, YAML recipes, command-line overrides, validated once."""

from trainer.config.choices import (
    DATA_SOURCES,
    DEVICES,
    EXPORT_FORMATS,
    INITS,
    LR_SCHEDULES,
    MODES,
    MONITOR_MODES,
    MONITORS,
    NETWORKS,
    OPTIMIZERS,
)
from trainer.config.options import (
    CONFIG_FIELDS,
    FINGERPRINT_FIELDS,
    TrainConfig,
    check_keys,
    default_of,
    launch_blocker,
    load_config,
    load_yaml,
    save_config,
)

__all__ = ["CONFIG_FIELDS", "DATA_SOURCES", "DEVICES", "EXPORT_FORMATS", "FINGERPRINT_FIELDS",
           "INITS", "LR_SCHEDULES", "MODES", "MONITORS", "MONITOR_MODES", "NETWORKS", "OPTIMIZERS",
           "TrainConfig", "check_keys", "default_of", "launch_blocker", "load_config",
           "load_yaml", "save_config"]

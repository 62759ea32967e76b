"""Checkpoint bundles: written atomically with a checksum, read back checked, found by one
resolver."""

from trainer.checkpoint.bundle import (
    FORMAT,
    Bundle,
    check_parameters,
    load_bundle,
    load_into,
    load_weights,
    network_weights,
    save_bundle,
)
from trainer.checkpoint.resolve import read_checkpoint
from trainer.checkpoint.store import BEST, LATEST, CheckpointStore

__all__ = ["BEST", "FORMAT", "LATEST", "Bundle", "CheckpointStore", "check_parameters",
           "load_bundle", "load_into", "load_weights", "network_weights", "read_checkpoint",
           "save_bundle"]

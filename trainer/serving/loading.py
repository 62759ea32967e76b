"""Building the network a checkpoint records and loading its weights, for evaluate, predict and
export."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.checkpoint import Bundle, load_weights, read_checkpoint
from trainer.errors import CheckpointError

logger = logging.getLogger("mstrain")


@dataclass
class LoadedNetwork:
    """A network in inference mode with a checkpoint's weights.

    Attributes:
        cell: The ``mindspore.nn.Cell``.
        image_size: Side of the square input it expects.
        net: The network's name (a registry name, or a ``pkg.mod:factory`` you named).
        num_classes: Its outputs.
        bundle: The checkpoint that was loaded.
        in_channels: Channels of its input. Defaults to `1`.
        class_names: The data's class names, in label order, or None (not recorded).
        kind: ``digits`` or ``natural``: how predict.py prepares a picture. Defaults to
            `"digits"`.
        normalisation: The mean and deviation the run normalised with (MNIST's for runs saved
            before it was recorded).
    """

    cell: Any
    image_size: int
    net: str
    num_classes: int
    bundle: Bundle
    in_channels: int = 1
    class_names: list[str] | None = None
    kind: str = "digits"
    normalisation: Any = None

    def class_name(self, index: int) -> str:
        """The name of class ``index`` (its number when the run recorded no names)."""
        names = self.class_names
        return names[index] if names and 0 <= index < len(names) else str(index)


def recorded_data(cfg, bundle: Bundle):
    """``cfg`` with the data source and folder the checkpoint's run recorded, for a command
    given neither: a built-in source only, since a checkpoint never makes the tool import
    code. Unchanged for a plain MindSpore checkpoint."""
    import dataclasses

    from trainer.registry import SOURCES

    run = bundle.meta.run if bundle.meta else None
    source = run.config.get("data_source") if run else None
    folder = run.config.get("data_dir") if run else None
    if not isinstance(source, str) or source not in SOURCES:
        return cfg
    folder = folder if isinstance(folder, str) else ""
    if (source, folder) != (cfg.data_source, cfg.data_dir):
        logger.info("Data: --data-source %s%s, as the checkpoint's run recorded (name "
                    "--data-source or --data-dir for other data).", source,
                    f" --data-dir {folder}" if folder else "")
    return dataclasses.replace(cfg, data_source=source, data_dir=folder).validate()


def network_of(bundle: Bundle, net: str | None = None) -> tuple[str, int]:
    """The network to build for ``bundle`` and its class count.

    ``net`` (what the user named) wins. Otherwise the network the checkpoint records is built
    when it is a built-in one; a checkpoint never causes code of its own choosing to be
    imported, so a user's ``pkg.mod:factory`` recorded there must be named again. A plain
    MindSpore checkpoint records nothing and gets LeNet.

    Raises:
        CheckpointError: the checkpoint records a user's factory that was not named.
    """
    from trainer.networks import is_builtin

    run = bundle.meta.run if bundle.meta else None
    recorded = run.net if run else None
    num_classes = run.num_classes if run else 10
    if net:
        return net, num_classes
    if recorded is None:
        return "lenet", num_classes
    if not is_builtin(recorded):
        raise CheckpointError(
            f"Checkpoint {bundle.path} was trained with your own network {recorded!r}. A "
            "checkpoint never makes the tool import code, so name the network yourself: add "
            f"--net {recorded} (after checking that it is the module you expect).")
    return recorded, num_classes


def load_network(checkpoint: str | os.PathLike | Bundle, *, net: str | None = None,
                 device: str = "CPU", mode: str = "graph") -> LoadedNetwork:
    """Sets up MindSpore, builds the network a checkpoint records and loads its weights.

    Args:
        checkpoint: A bundle already read, a ``.ckpt`` (bundle or plain MindSpore checkpoint), a
            ``latest.json``, or a run directory or its ``checkpoints/`` folder, whose
            ``best.ckpt`` is used when there is one (the log says which file).
        net: The network to build instead of the recorded one. Defaults to `None`.
        device: Device target. Defaults to `"CPU"`.
        mode: ``"graph"`` or ``"pynative"``. Defaults to `"graph"`.

    Raises:
        CheckpointError: the checkpoint is missing, damaged, of another network, or records a
            user's network that was not named.
        ConfigError: the network cannot be built, or the device cannot be used.
    """
    from trainer.device import set_mode_and_device
    from trainer.networks import build_network

    bundle = checkpoint if isinstance(checkpoint, Bundle) else read_checkpoint(checkpoint)
    if not isinstance(checkpoint, Bundle) and Path(checkpoint).is_dir():
        logger.info("Using %s.", bundle.describe())
    from trainer.data.sources import Normalisation
    from trainer.data.transforms import MNIST

    name, num_classes = network_of(bundle, net)
    run = bundle.meta.run if bundle.meta else None
    channels = run.in_channels if run else 1
    set_mode_and_device(mode, device)
    built = build_network(name, num_classes, in_channels=channels,
                          image_size=(run.image_size or 0) if run else 0)
    load_weights(built.cell, bundle, net=name)
    built.cell.set_train(False)
    norm = Normalisation.from_dict(run.data, channels) if run else None
    return LoadedNetwork(built.cell, built.image_size, name, num_classes, bundle,
                         in_channels=channels, class_names=run.class_names if run else None,
                         kind=run.kind if run else "digits",
                         normalisation=norm or (MNIST if channels == 1 else None))

"""MindSpore's process-wide mode and device, set the same way for training and serving."""

from __future__ import annotations

import os

from trainer.errors import ConfigError

#: Device targets and execution modes (``--device``, ``--mode``).
DEVICES = ("CPU", "GPU", "Ascend")
MODES = ("graph", "pynative")


def quiet_compiler_files() -> None:
    """Sends the graph dumps MindSpore writes when a compilation fails (``rank_0/om/...``) to the
    tool's cache folder instead of the current folder, unless ``MS_OM_PATH`` is set already."""
    from trainer.fileio import cache_root

    os.environ.setdefault("MS_OM_PATH", str(cache_root() / "mindspore-om"))


def set_mode_and_device(mode: str, device: str) -> None:
    """Graph or PyNative mode on ``device``; the device can be chosen once per process.

    Raises:
        ConfigError: the device cannot be used by this MindSpore build.
    """
    import mindspore as ms

    quiet_compiler_files()
    try:
        ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
        if ms.get_context("device_target") != device:
            ms.set_device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"Device {device!r} cannot be used here ({str(exc).splitlines()[0]}). "
                          "This MindSpore build runs on CPU; use --device CPU, or install the "
                          "MindSpore package for your accelerator.") from None

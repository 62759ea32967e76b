"""MindSpore's process-wide mode and device, set the same way for training and serving.

The pinned ``mindspore`` wheel carries the CPU, GPU and Ascend back ends in one package; which
ones work depends on what the machine has. Before MindSpore is asked for a GPU or an Ascend NPU,
the libraries its back end loads are probed here (``ctypes``, no MindSpore), so a device that
cannot work ends in one paragraph naming what is missing, never in MindSpore's own trace. See
``docs/devices.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Callable, Iterator

from trainer.errors import ConfigError

#: Device targets and execution modes (``--device``, ``--mode``).
DEVICES = ("CPU", "GPU", "Ascend")
MODES = ("graph", "pynative")

# The shared libraries MindSpore 2.7.2's GPU back end (lib/plugin/libmindspore_gpu.so.11.1 and
# .11.6) links against, by what they are. CUDA 11's runtime keeps the soname libcudart.so.11.0
# for every 11.x release.
GPU_LIBRARIES = (
    ("the CUDA 11 runtime", "libcudart.so.11.0"), ("cuBLAS 11", "libcublas.so.11"),
    ("cuDNN 8", "libcudnn.so.8"), ("cuRAND 10", "libcurand.so.10"),
    ("cuSOLVER 11", "libcusolver.so.11"), ("cuFFT 10", "libcufft.so.10"),
    ("cuSPARSE 11", "libcusparse.so.11"))
NEWER_CUDA = ("libcudart.so.12", "libcudart.so.13")
# What the Ascend back end needs from the CANN toolkit first (MindSpore 2.7.2 pairs with CANN
# 8.5.0).
ASCEND_LIBRARIES = (("AscendCL", "libascendcl.so"), ("the graph engine", "libge_runner.so"))
GPU_NEEDS = ("MindSpore 2.7.2 runs on an NVIDIA GPU with CUDA 11.1 or 11.6 and cuDNN 8 "
             "(8.0 or 8.5), found through LD_LIBRARY_PATH; it has no CUDA 12 build")
ASCEND_NEEDS = ("MindSpore 2.7.2 runs on an Ascend NPU with the CANN 8.5.0 toolkit, whose "
                "environment comes from 'source /usr/local/Ascend/ascend-toolkit/set_env.sh'")
CHECK_HINT = ("docs/devices.md says what each device needs; python -c \"import mindspore as ms; "
              "ms.set_device('{device}'); ms.run_check()\" checks MindSpore's own set-up. Use "
              "--device CPU meanwhile")
_CUDA_ERROR_NO_DEVICE = 100

Loader = Callable[[str], "ctypes.CDLL | None"]


def load_library(name: str) -> ctypes.CDLL | None:
    """The shared library ``name`` as the dynamic loader finds it, or None."""
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def gpu_problem(load: Loader = load_library) -> str | None:
    """What stops MindSpore from using a GPU here, in a few words, or None when nothing is known
    to be missing: no NVIDIA driver, no GPU it sees, a driver too old for CUDA 11.1, or a
    library of CUDA 11 or cuDNN 8 that cannot be loaded (naming a newer CUDA when one is
    installed instead)."""
    driver = load("libcuda.so.1")
    if driver is None:
        return ("no NVIDIA driver was found (libcuda.so.1 cannot be loaded), so this machine has "
                "no GPU that MindSpore can use")
    status = int(driver.cuInit(0))
    if status == _CUDA_ERROR_NO_DEVICE:
        return ("the NVIDIA driver finds no GPU (CUDA_ERROR_NO_DEVICE; check "
                "CUDA_VISIBLE_DEVICES, and that the GPU is passed to this container)")
    if status != 0:
        return f"the NVIDIA driver does not start (cuInit returned CUDA error {status})"
    count = ctypes.c_int(0)
    if int(driver.cuDeviceGetCount(ctypes.byref(count))) != 0 or count.value < 1:
        return "no GPU found (the NVIDIA driver reports none)"
    version = ctypes.c_int(0)
    if int(driver.cuDriverGetVersion(ctypes.byref(version))) == 0 and 0 < version.value < 11010:
        major, minor = divmod(version.value // 10, 100)
        return (f"the NVIDIA driver supports CUDA up to {major}.{minor}, older than the CUDA "
                "11.1 that MindSpore's GPU build needs (update the driver)")
    missing = [f"{what} ({soname})" for what, soname in GPU_LIBRARIES if load(soname) is None]
    if not missing:
        return None
    newer = [soname for soname in NEWER_CUDA if load(soname) is not None]
    found = (f"; CUDA {newer[0].rsplit('.', 1)[-1]} is installed ({newer[0]}), which this "
             "MindSpore has no build for") if newer else ""
    return f"{', '.join(missing)} cannot be loaded{found}"


def ascend_problem(load: Loader = load_library) -> str | None:
    """What stops MindSpore from using an Ascend NPU here (the CANN libraries it loads first),
    or None when they load."""
    missing = [f"{what} ({soname})" for what, soname in ASCEND_LIBRARIES if load(soname) is None]
    if not missing:
        return None
    return f"the CANN toolkit is not set up: {', '.join(missing)} cannot be loaded"


def device_problem(device: str, load: Loader = load_library) -> str | None:
    """What stops ``device`` from being used here, found without MindSpore, or None."""
    if device == "GPU":
        return gpu_problem(load)
    if device == "Ascend":
        return ascend_problem(load)
    return None


def _needs(device: str) -> str:
    return GPU_NEEDS if device == "GPU" else ASCEND_NEEDS


def unusable(device: str, what: str) -> ConfigError:
    """The paragraph for a device that cannot be used: what is missing, what it needs, how to
    check, and what works meanwhile."""
    return ConfigError(f"--device {device} cannot be used here: {what}. {_needs(device)}. "
                       f"{CHECK_HINT.format(device=device)}.")


@contextlib.contextmanager
def quiet_mindspore() -> Iterator[None]:
    """Keeps MindSpore's own log lines (its ERROR and CRITICAL lines about a back end it cannot
    load, or a save that failed) from the user: the paragraph raised instead says what
    happened and what to do."""
    try:
        from mindspore import log as ms_log

        ms_logger = ms_log._get_logger()
    except (ImportError, AttributeError):
        yield
        return
    level = ms_logger.level
    ms_logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        ms_logger.setLevel(level)


def quiet_compiler_files() -> None:
    """Sends the graph dumps MindSpore writes when a compilation fails (``rank_0/om/...``) to the
    tool's cache folder instead of the current folder, unless ``MS_OM_PATH`` is set already."""
    from trainer.fileio import cache_root

    os.environ.setdefault("MS_OM_PATH", str(cache_root() / "mindspore-om"))


def set_mode_and_device(mode: str, device: str) -> None:
    """Graph or PyNative mode on ``device``; the device can be chosen once per process.

    A GPU or an Ascend NPU is probed first (:func:`device_problem`); MindSpore then loads its
    back end. Nothing runs on the device here: under msrun, MindSpore gives each worker its
    device when the cluster starts, which must come before the first kernel.

    Raises:
        ConfigError: the device cannot be used here, naming what is missing.
    """
    import mindspore as ms

    quiet_compiler_files()
    if device != "CPU" and ms.get_context("device_target") != device:
        problem = device_problem(device)
        if problem:
            raise unusable(device, problem)
    try:
        with quiet_mindspore():
            ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
            if ms.get_context("device_target") != device:
                ms.set_device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if device == "CPU":
            raise ConfigError(f"--device CPU cannot be used here ({first}). Reinstall the "
                              "pinned MindSpore (pip install -e . in a fresh virtual "
                              "environment).") from None
        raise unusable(device, f"MindSpore could not use its {device} back end ({first})"
                       ) from None


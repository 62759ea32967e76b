"""Native CPU kernels for a small CNN's training step: direct convolutions, 2x2 max pooling and
dense layers.

MindSpore 2.7.2 runs LeNet's convolutions through oneDNN's ``gemm:jit`` on plain NCHW tensors,
its pooling's backward pass at several times the forward's cost and each small dense layer as
several operators (docs/speed.md); these kernels (``kernels.cc``, compiled on the machine that
runs them, see :mod:`.build`) do the same arithmetic directly, fused with the ReLU and the
pooling, each call shared between the calling thread and a small pool of the library's own, as
``ops.Custom`` operators inside the compiled step (:mod:`.ops`). They serve training, and the
engine's validation and final test (:class:`.ops.NativeInference`); the network's own inference
mode (evaluation, prediction, export) keeps MindSpore's operators, so exported files run
anywhere.

``--kernels native`` (the default) uses them where they are available: on CPU, with a C++
compiler, on a CPU with AVX-512 or AVX2 and FMA. Anywhere else the run uses MindSpore's
operators and says why in one line. Checkpoints are the same either way.
"""

from __future__ import annotations

import logging
import os

from trainer.networks.native.build import Built, Unavailable, build

__all__ = ["KERNELS", "Unavailable", "library", "threads", "use_native"]

logger = logging.getLogger("mstrain")

KERNELS = ("native", "mindspore")

# The outcome of the first request in this process: the library, or why there is none.
_outcome: tuple[Built | None, str] | None = None


def library() -> Built:
    """The kernels' library for this machine (built into the cache on first use).

    Raises:
        Unavailable: with the reason, in a few words.
    """
    global _outcome
    if _outcome is None:
        try:
            built = build()
            _outcome = (built, "")
            if built.seconds:
                logger.info("Built the native kernels (%s) in %.1f s into %s.", built.isa,
                            built.seconds, built.path.parent)
        except Unavailable as exc:
            _outcome = (None, str(exc))
    built, reason = _outcome
    if built is None:
        raise Unavailable(reason)
    return built


def threads(limit: int = 0) -> int:
    """The threads one kernel call uses in this process; ``limit`` > 0 first sets the most it
    may use (the results are the same for any number).

    Raises:
        Unavailable: the kernels cannot be used here.
    """
    import ctypes

    call = ctypes.CDLL(str(library().path)).mstrain_kernels_threads
    call.argtypes, call.restype = [ctypes.c_int], ctypes.c_int
    return int(call(int(limit)))


def msrun_workers() -> int:
    """The number of workers msrun started (``MS_WORKER_NUM`` in a worker's environment, at
    most 4096), 1 outside msrun."""
    if os.environ.get("MS_ROLE") != "MS_WORKER":
        return 1
    try:
        return min(max(int(os.environ.get("MS_WORKER_NUM", "1")), 1), 4096)
    except ValueError:
        return 1


def use_native(kernels: str, device: str | None = None) -> str | None:
    """The library's path when ``kernels`` is ``native`` and the kernels can run here, else None,
    having said once in the log why MindSpore's operators are used instead.

    Args:
        kernels: ``native`` or ``mindspore``.
        device: The device target. Defaults to `None` (MindSpore's current one).
    """
    if kernels != "native":
        return None
    if device is None:
        import mindspore as ms

        device = ms.get_context("device_target")
    if device != "CPU":
        return None  # accelerators have their own kernels
    first = _outcome is None
    try:
        path = str(library().path)
        if first and msrun_workers() > 1:
            # msrun's workers on one machine share its CPUs: each pool takes its share.
            threads(max(1, len(os.sched_getaffinity(0)) // msrun_workers()))
        return path
    except Unavailable as exc:
        if first:
            logger.info("Native kernels unavailable (%s); using MindSpore's operators.", exc)
        return None


def reset() -> None:
    """Forgets this process's outcome, so the next request builds or loads again (tests)."""
    global _outcome
    _outcome = None


# The layer shapes the fused kernels were measured faster for than MindSpore's operators
# (benchmarks/native_step.py, docs/speed.md): LeNet-5's two convolutions, 1->6 channels at 32x32
# and 6->16 at 14x14, 5x5. Larger layers were not measured, so they keep MindSpore's operators.
MAX_OUT_CHANNELS = 16
MAX_TERMS = 150  # in_channels * kernel height * kernel width: the length of each output's sum
MAX_SIZE = 32


def faster_here(in_channels: int, out_channels: int, kernel_size: int, size: int) -> bool:
    """Whether a layer of this shape is within the shapes the native convolution (with its
    ReLU and pooling) measured faster than MindSpore's operators."""
    return (out_channels <= MAX_OUT_CHANNELS and in_channels * kernel_size ** 2 <= MAX_TERMS
            and size <= MAX_SIZE)


def native_conv_relu_pool(kernels: str, conv, size: int):
    """A :class:`~.ops.NativeConv2d` doing ``conv``'s work with a ReLU and a 2x2 max pooling,
    or None when ``kernels`` is not ``native``, the kernels are unavailable here, the layer is
    one they do not cover (stride, dilation, groups, padding) or one they are not faster for.

    Args:
        kernels: ``native`` or ``mindspore``.
        conv: The ``nn.Conv2d`` whose weight (and bias) the network passes at each call.
        size: The height and width of the layer's input.
    """
    if kernels != "native":
        return None
    k = conv.kernel_size
    if (conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.group != 1
            or conv.pad_mode not in ("valid", "same") or conv.data_format != "NCHW"
            or k[0] != k[1]
            or not faster_here(conv.in_channels, conv.out_channels, k[0], size)):
        return None
    path = use_native(kernels)
    if path is None:
        return None
    from trainer.networks.native.ops import NativeConv2d

    return NativeConv2d(path, pad_mode=conv.pad_mode, relu=True, pool=True,
                        has_bias=conv.has_bias)


# The dense layers the fused kernel was measured faster for than MindSpore's MatMul, BiasAdd and
# ReLU (benchmarks/native_step.py, docs/speed.md): LeNet-5's three, up to 400 -> 120 at batch 32.
MAX_DENSE_WEIGHTS = 64 * 1024


def native_dense(kernels: str, dense, relu: bool):
    """A :class:`~.ops.NativeDense` doing ``dense``'s work (with a ReLU after it when ``relu``),
    or None when ``kernels`` is not ``native``, the kernels are unavailable here, or the layer
    has an activation of its own or more weights than the kernel was measured faster for.

    Args:
        kernels: ``native`` or ``mindspore``.
        dense: The ``nn.Dense`` whose weight (and bias) the network passes at each call.
        relu: Whether the network applies a ReLU to the layer's output.
    """
    if (kernels != "native" or dense.activation_flag
            or dense.in_channels * dense.out_channels > MAX_DENSE_WEIGHTS):
        return None
    path = use_native(kernels)
    if path is None:
        return None
    from trainer.networks.native.ops import NativeDense

    return NativeDense(path, relu=relu, has_bias=dense.has_bias)

"""Forward plus backward time of LeNet-5's two convolutions on CPU, written four ways.

``nn.Conv2d`` as the project builds it, im2col + MatMul in MindSpore operators, ``nn.Conv2d`` in
NHWC, and PyTorch's ``conv2d`` for reference.

    python benchmarks/conv_formulations.py --iters 200

The layers are the ones ``--net lenet`` builds (``trainer/networks/lenet.py``): conv1, 1 -> 6
channels on 32x32 digits, and conv2, 6 -> 16 channels on the 14x14 maps after the first pooling;
5x5 kernels, ``pad_mode="valid"``, no bias, float32, NCHW, ``--batch`` images per call. Each
MindSpore formulation is a Cell computing the same convolution; the timed call is one compiled
(GRAPH_MODE) ``value_and_grad`` of the sum of its output, giving the gradient with respect to both
the input and the weight, with ``.asnumpy()`` on the value so the work is really done.

* ``nn.Conv2d``: the baseline, what the project uses.
* ``im2col (unfold) + MatMul``: patches from ``ops.unfold`` (the Im2Col kernel, gradient
  Col2Im), shape (N, C*k*k, OH*OW), then one ``ops.matmul`` with the weight reshaped to
  (out, C*k*k), broadcast over the batch.
* ``im2col (slices) + MatMul``: the same patches built from k*k strided slices of the input,
  stacked and reshaped, then the same MatMul. ``nn.Unfold`` (ExtractImagePatches) was tried too:
  it has no CPU kernel in MindSpore 2.7.2, so it is not a row.
* ``nn.Conv2d NHWC``: ``data_format="NHWC"``, where this MindSpore accepts it on CPU (2.7.2 does
  not: the row is skipped with a note saying why).
* ``torch conv2d``: ``torch.nn.functional.conv2d`` and ``torch.autograd.grad`` for the input and
  the weight, eager, default thread count; skipped if torch does not import.

Each is run ``--warmup`` calls first (compilation included), then ``--repeats`` times
``--iters`` calls; the figure is the median repeat divided by ``--iters``. Before timing, every
formulation gets the same random input and the same weights as ``nn.Conv2d``, and the table gives
the largest absolute difference from ``nn.Conv2d`` of the convolution's output and of the two
gradients, and that difference over the largest |value| of ``nn.Conv2d``'s (``rel``): with the
sum as the loss, each weight gradient adds up batch x OH x OW products, so its values are in the
hundreds and float32 rounding alone leaves absolute differences of 1e-4 to 1e-3 there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")

# (name, in channels, out channels, input side) as LeNet-5 builds them; kernel 5, valid padding.
LAYERS = [("conv1", 1, 6, 32), ("conv2", 6, 16, 14)]
KERNEL = 5


def build_cells(c_in: int, c_out: int, weight: np.ndarray):
    """The MindSpore formulations as ``{name: (cell, to_layout, from_layout)}``; ``to_layout`` and
    ``from_layout`` turn an NCHW numpy array into the cell's input layout and back. Also returns
    the notes of formulations that could not be built."""
    import mindspore as ms
    from mindspore import Parameter, Tensor, nn, ops

    k = KERNEL

    class Im2colUnfold(nn.Cell):
        """Patches with ``ops.unfold`` (Im2Col), then one MatMul."""

        def __init__(self) -> None:
            super().__init__()
            self.weight = Parameter(Tensor(weight.copy()), name="weight")

        def construct(self, x):
            n, _, h, w = x.shape
            cols = ops.unfold(x, k)  # (n, c_in*k*k, oh*ow), channel-major like the weight
            out = ops.matmul(self.weight.reshape(c_out, -1), cols)
            return out.reshape(n, c_out, h - k + 1, w - k + 1)

    class Im2colSlices(nn.Cell):
        """Patches from k*k strided slices, stacked after the channel axis, then one MatMul."""

        def __init__(self) -> None:
            super().__init__()
            self.weight = Parameter(Tensor(weight.copy()), name="weight")

        def construct(self, x):
            n, c, h, w = x.shape
            oh, ow = h - k + 1, w - k + 1
            slices = []
            for i in range(k):  # graph mode takes one ``for`` per comprehension: plain loops
                for j in range(k):
                    slices.append(x[:, :, i:i + oh, j:j + ow])
            cols = ops.stack(slices, axis=2).reshape(n, c * k * k, oh * ow)
            out = ops.matmul(self.weight.reshape(c_out, -1), cols)
            return out.reshape(n, c_out, oh, ow)

    def nchw(a: np.ndarray) -> np.ndarray:
        return a

    def nhwc(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1))

    def back_to_nchw(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2))

    baseline = nn.Conv2d(c_in, c_out, k, pad_mode="valid", has_bias=False,
                         weight_init=Tensor(weight.copy()))
    cells = {"nn.Conv2d": (baseline, nchw, nchw),
             "im2col (unfold) + MatMul": (Im2colUnfold(), nchw, nchw),
             "im2col (slices) + MatMul": (Im2colSlices(), nchw, nchw)}
    notes = []
    try:
        # The NHWC weight is (out, kh, kw, in) as MindSpore documents it (not checked: CPU
        # refuses NHWC); its gradient is turned back to NCHW for the comparison.
        cell = nn.Conv2d(c_in, c_out, k, pad_mode="valid", has_bias=False, data_format="NHWC",
                         weight_init=Tensor(nhwc(weight)))
        cell(Tensor(np.zeros((1, k, k, c_in), np.float32))).asnumpy()
        cells["nn.Conv2d NHWC"] = (cell, nhwc, back_to_nchw)
    except (RuntimeError, ValueError, TypeError) as exc:
        notes.append(f"nn.Conv2d NHWC skipped: MindSpore {ms.__version__} on CPU refuses it "
                     f"({str(exc).strip().splitlines()[0]})")
    return cells, notes


def ms_step(cell):
    """A compiled call returning (sum of the output, (d input, (d weight,)))."""
    import mindspore as ms
    from mindspore import nn

    class SumOf(nn.Cell):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def construct(self, x):
            return self.inner(x).sum()

    class Step(nn.Cell):
        def __init__(self, inner) -> None:
            super().__init__()
            self.net = SumOf(inner)
            self.grad = ms.value_and_grad(self.net, grad_position=0,
                                          weights=self.net.trainable_params())

        def construct(self, x):
            return self.grad(x)

    return Step(cell)


def torch_step(x: np.ndarray, weight: np.ndarray):
    """PyTorch's conv2d forward and backward on the same arrays, as a call like ``ms_step``'s."""
    import torch
    from torch.nn import functional as F

    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tw = torch.from_numpy(weight.copy()).requires_grad_(True)

    def call():
        y = F.conv2d(tx, tw)
        loss = y.sum()
        dx, dw = torch.autograd.grad(loss, (tx, tw))
        return y, loss, dx, dw

    return call


def timed(call, iters: int, repeats: int, warmup: int, sync=None) -> float:
    """Median milliseconds per call over ``repeats`` runs of ``iters`` calls, after ``warmup``;
    ``sync`` (if any) waits for whatever is still queued at the end of each run."""
    for _ in range(warmup):
        call()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            call()
        if sync is not None:
            sync()
        runs.append((time.perf_counter() - start) / iters * 1e3)
    return statistics.median(runs)


def max_diff(got: list[np.ndarray], want: list[np.ndarray]) -> str:
    """Largest |difference| of the output, the input gradient and the weight gradient, each also
    relative to the reference's largest |value|."""
    parts = []
    for name, g, w in zip(("out", "dx", "dw"), got, want):
        d = float(np.max(np.abs(g - w)))
        parts.append(f"{name} {d:.1e} (rel {d / max(float(np.max(np.abs(w))), 1e-30):.0e})")
    return ", ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200, help="calls per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is kept")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import mindspore as ms
    from mindspore import Tensor

    from trainer.device import set_mode_and_device

    set_mode_and_device("graph", "CPU")
    try:
        import torch

        torch_note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError as exc:
        torch = None
        torch_note = f"torch conv2d skipped: torch does not import ({exc})"

    rng = np.random.default_rng(args.seed)
    rows, notes = [], []
    for layer, c_in, c_out, side in LAYERS:
        x = rng.standard_normal((args.batch, c_in, side, side), dtype=np.float32)
        bound = 1.0 / np.sqrt(c_in * KERNEL * KERNEL)
        weight = rng.uniform(-bound, bound, (c_out, c_in, KERNEL, KERNEL)).astype(np.float32)
        cells, layer_notes = build_cells(c_in, c_out, weight)
        notes += [n for n in layer_notes if n not in notes]
        reference = None
        base_ms = None
        for name, (cell, to_layout, from_layout) in cells.items():
            step = ms_step(cell)
            tx = Tensor(to_layout(x))
            out = cell(tx).asnumpy()
            _, (dx, (dw,)) = step(tx)
            got = [from_layout(out), from_layout(dx.asnumpy()), from_layout(dw.asnumpy())]
            if reference is None:
                reference = got
            diff = max_diff(got, reference) if name != "nn.Conv2d" else "(reference)"

            last = []

            def call(step=step, tx=tx, last=last):
                last[:] = [step(tx)]
                return last[0][0].asnumpy()

            def sync(last=last):
                # ms.runtime.synchronize is for Ascend and GPU only: read the gradients instead.
                _, (dx, (dw,)) = last[0]
                dx.asnumpy(), dw.asnumpy()

            per_call = timed(call, args.iters, args.repeats, args.warmup, sync)
            if base_ms is None:
                base_ms = per_call
            rows.append((name, layer, per_call, per_call / base_ms, diff))
        if torch is not None:
            tcall = torch_step(x, weight)
            y, _, dx, dw = tcall()
            diff = max_diff([y.detach().numpy(), dx.numpy(), dw.numpy()], reference)
            per_call = timed(lambda tcall=tcall: tcall()[1].item(), args.iters, args.repeats,
                             args.warmup)
            rows.append(("torch conv2d", layer, per_call, per_call / base_ms, diff))
    notes.append(torch_note)

    print(f"Batch {args.batch}, float32, MindSpore {ms.__version__} GRAPH_MODE on CPU; median of "
          f"{args.repeats} x {args.iters} calls after {args.warmup} warm-up calls.\n")
    print("| formulation | layer | ms per forward+backward | ratio to nn.Conv2d "
          "| max \\|difference\\| |")
    print("|---|---|---|---|---|")
    for name, layer, per_call, ratio, diff in rows:
        print(f"| {name} | {layer} | {per_call:.3f} | {ratio:.2f} | {diff} |")
    for note in notes:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

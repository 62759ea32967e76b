"""The native CPU kernels against MindSpore's own operators: nn.Conv2d (with ReLU and
nn.MaxPool2d), nn.MaxPool2d and nn.Dense (with ReLU), forward and gradients, graph and PyNative;
the fused momentum update against nn.Momentum and its formula; the same results with one thread
or several; LeNet-5 learning with them, validating with them, resuming exactly, exporting
without them, and the fallback when there is no compiler.

The library is built once per test session into the session's cache (conftest sets
``MSTRAIN_CACHE``). Convolutions on random data are compared within a float32 rounding bound
derived from each sum's length and the sum of its terms' magnitudes; chains with a ReLU or a
pooling (where a value within rounding of a tie or of zero could route a gradient elsewhere) are
compared bit for bit on small integers and binary fractions, whose sums are exact in float32
in any order, so the comparison holds on any CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from mindspore import nn, ops  # noqa: E402

from tests.conftest import run_train  # noqa: E402
from trainer.networks import native  # noqa: E402
from trainer.networks.native.ops import (  # noqa: E402
    NativeConv2d,
    NativeDense,
    NativeInference,
    NativeMaxPool2x2,
    NativeMomentum,
    NativeStepCounts,
)

EPS = 2.0 ** -24  # float32's unit roundoff


@pytest.fixture(scope="module")
def library() -> str:
    try:
        return str(native.library().path)
    except native.Unavailable as exc:
        pytest.skip(f"native kernels unavailable here: {exc}")


@pytest.fixture(params=["graph", "pynative"])
def mode(request):
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "graph" else ms.PYNATIVE_MODE)
    yield request.param
    ms.set_context(mode=ms.GRAPH_MODE)


class _Reference(nn.Cell):
    """MindSpore's chain: ops.conv2d (the weights as inputs, for their gradients), then ReLU
    and MaxPool2d as asked."""

    def __init__(self, pad: str, has_bias: bool, relu: bool, pool: bool) -> None:
        super().__init__()
        self.relu, self.pool = nn.ReLU(), nn.MaxPool2d(2, 2)
        self.pad, self.has_bias, self.use_relu, self.use_pool = pad, has_bias, relu, pool

    def construct(self, x, weight, bias):
        y = ops.conv2d(x, weight, bias if self.has_bias else None, pad_mode=self.pad)
        if self.use_relu:
            y = self.relu(y)
        if self.use_pool:
            y = self.pool(y)
        return y


class _Native(nn.Cell):
    def __init__(self, cell, has_bias: bool) -> None:
        super().__init__()
        self.cell, self.has_bias = cell, has_bias

    def construct(self, x, weight, bias):
        if self.has_bias:
            return self.cell(x, weight, bias)
        return self.cell(x, weight)


def _values_and_grads(net, x, weight, bias, dout):
    """The output, and the gradients of sum(out * dout) for x, the weight and the bias."""

    def scored(x, weight, bias):
        return (net(x, weight, bias) * dout).sum()

    grads = ms.grad(scored, grad_position=(0, 1, 2))(x, weight, bias)
    return [net(x, weight, bias).asnumpy(), *(g.asnumpy() for g in grads)]


def _run_both(library, case, x, w, b, dout):
    _, _, _, _, _, _, pad, relu, pool, has_bias = case
    ref = _Reference(pad, has_bias, relu, pool)
    mine = _Native(NativeConv2d(library, pad_mode=pad, relu=relu, pool=pool, has_bias=has_bias),
                   has_bias)
    args = (ms.Tensor(x), ms.Tensor(w), ms.Tensor(b), ms.Tensor(dout))
    return _values_and_grads(ref, *args), _values_and_grads(mine, *args)


def _magnitudes(x, w, dout, pad):
    """Each sum's terms' magnitudes, summed (float64): of the output, dw and dx."""
    x, w, dout = (np.abs(a).astype(np.float64) for a in (x, w, dout))
    k = w.shape[2]
    top = (k - 1) // 2 if pad == "same" else 0
    bottom = k - 1 - top if pad == "same" else 0
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (top, bottom)))
    ho, wo = dout.shape[2:]
    y, dw, dxp = np.zeros(dout.shape), np.zeros(w.shape), np.zeros(xp.shape)
    for a in range(k):
        for b in range(k):
            patch = xp[:, :, a:a + ho, b:b + wo]
            y += np.einsum("nihw,oi->nohw", patch, w[:, :, a, b])
            dw[:, :, a, b] = np.einsum("nihw,nohw->oi", patch, dout)
            dxp[:, :, a:a + ho, b:b + wo] += np.einsum("nohw,oi->nihw", dout, w[:, :, a, b])
    return y, dw, dxp[:, :, top:top + x.shape[2], top:top + x.shape[3]]


def _gamma(terms: int) -> float:
    """The classic bound on a float32 sum's relative rounding error, for ``terms`` terms."""
    return terms * EPS / (1 - terms * EPS)


# (batch, in channels, out channels, kernel, height, width, padding, relu, pool, bias)
RANDOM_CASES = [
    (1, 1, 6, 5, 32, 32, "valid", False, False, False),   # LeNet's conv1, batch 1
    (3, 6, 16, 5, 14, 14, "valid", False, False, True),   # LeNet's conv2
    (2, 3, 5, 3, 9, 7, "same", False, False, True),       # odd sizes, "same" padding
    (2, 4, 9, 4, 11, 8, "same", False, False, False),     # an even kernel: uneven padding
    (1, 2, 3, 1, 5, 6, "valid", False, False, True),      # 1x1
]


@pytest.mark.parametrize("case", RANDOM_CASES, ids=lambda c: "x".join(map(str, c[:6])) + c[6])
def test_convolution_within_float32_rounding(library, mode, case):
    n, cin, cout, k, h, wd, pad = case[:7]
    rng = np.random.default_rng(sum(case[:6]))
    x = rng.standard_normal((n, cin, h, wd)).astype(np.float32)
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    b = rng.standard_normal((cout,)).astype(np.float32)
    ho, wo = (h, wd) if pad == "same" else (h - k + 1, wd - k + 1)
    dout = rng.standard_normal((n, cout, ho, wo)).astype(np.float32)
    (y0, dx0, dw0, db0), (y1, dx1, dw1, db1) = _run_both(library, case, x, w, b, dout)
    assert y1.shape == y0.shape and dx1.shape == dx0.shape and dw1.shape == dw0.shape
    # Each side rounds a sum of m terms within gamma(m) times the sum of its terms' magnitudes.
    abs_y, abs_dw, abs_dx = _magnitudes(x, w, dout, pad)
    assert np.all(np.abs(y1 - y0) <= 2 * _gamma(cin * k * k + 1)
                  * (abs_y + np.abs(b)[:, None, None]) + 1e-30)
    assert np.all(np.abs(dw1 - dw0) <= 2 * _gamma(n * ho * wo) * abs_dw + 1e-30)
    assert np.all(np.abs(dx1 - dx0) <= 2 * _gamma(cout * k * k) * abs_dx + 1e-30)
    if case[9]:
        abs_db = np.abs(dout).sum(axis=(0, 2, 3))
        assert np.all(np.abs(db1 - db0) <= 2 * _gamma(n * ho * wo) * abs_db + 1e-30)


# Chains through a ReLU and a pooling, on exact data: many ties and zeros, bit-exact results.
EXACT_CASES = [
    (32, 1, 6, 5, 32, 32, "valid", True, True, False),    # LeNet's conv1 at batch 32
    (1, 6, 16, 5, 14, 14, "valid", True, True, False),    # LeNet's conv2, batch 1
    (2, 3, 4, 3, 11, 9, "valid", True, True, True),       # odd conv output: last row dropped
    (2, 2, 5, 3, 7, 10, "same", True, True, True),
    (3, 2, 3, 3, 8, 6, "same", True, False, True),        # ReLU without pooling
]


@pytest.mark.parametrize("case", EXACT_CASES, ids=lambda c: "x".join(map(str, c[:6])) + c[6]
                         + ("-pool" if c[8] else "-relu"))
def test_relu_and_pooling_chains_bit_exact(library, mode, case):
    n, cin, cout, k, h, wd, pad, relu, pool, has_bias = case
    rng = np.random.default_rng(sum(case[:6]))
    x = rng.integers(-3, 4, (n, cin, h, wd)).astype(np.float32)
    x[:, :, : h // 3] = 1.0  # a uniform band: tied windows with positive maxima
    w = (rng.integers(-4, 5, (cout, cin, k, k)) / 4).astype(np.float32)
    b = (rng.integers(-4, 5, (cout,)) / 2).astype(np.float32)
    ho, wo = (h, wd) if pad == "same" else (h - k + 1, wd - k + 1)
    out = (n, cout, ho // 2, wo // 2) if pool else (n, cout, ho, wo)
    dout = rng.integers(-5, 6, out).astype(np.float32)
    reference, mine = _run_both(library, case, x, w, b, dout)
    for name, a, b_ in zip(("output", "dx", "dw", "db"), reference, mine):
        if name == "db" and not has_bias:
            continue
        np.testing.assert_array_equal(b_, a, err_msg=name)
    assert np.count_nonzero(reference[0] == 0) > 0  # the ReLU closed some windows


def _tied(shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x[:, :, :4] = 0.5
    even = shape[3] - shape[3] % 2
    x[:, :, 4:6, 0:even:2] = x[:, :, 4:6, 1:even:2]
    return x


class _Pooled(nn.Cell):
    def __init__(self, pool: nn.Cell) -> None:
        super().__init__()
        self.pool = pool

    def construct(self, x, dout):
        return (self.pool(x) * dout).sum()


@pytest.mark.parametrize("shape", [(4, 6, 28, 28), (1, 16, 10, 10), (3, 2, 9, 7)])
def test_maxpool_bit_exact_with_ties(library, mode, shape):
    x = ms.Tensor(_tied(shape))
    out_shape = (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    dout = ms.Tensor(np.random.default_rng(1).standard_normal(out_shape).astype(np.float32))
    results = []
    for pool in (nn.MaxPool2d(kernel_size=2, stride=2), NativeMaxPool2x2(library)):
        grad = ms.grad(_Pooled(pool), grad_position=0)(x, dout)
        results.append((pool(x).asnumpy(), grad.asnumpy()))
    (ref_out, ref_grad), (out, grad) = results
    assert out.shape == out_shape
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(grad, ref_grad)


class _DenseReference(nn.Cell):
    """nn.Dense's arithmetic with the weights as inputs: x @ w.T (+ b), then a ReLU if asked."""

    def __init__(self, has_bias: bool, relu: bool) -> None:
        super().__init__()
        self.has_bias, self.use_relu = has_bias, relu

    def construct(self, x, weight, bias):
        y = ops.matmul(x, weight.T)
        if self.has_bias:
            y = y + bias
        return ops.relu(y) if self.use_relu else y


def _dense_both(library, has_bias, relu, x, w, b, dout):
    mine = _Native(NativeDense(library, relu=relu, has_bias=has_bias), has_bias)
    args = (ms.Tensor(x), ms.Tensor(w), ms.Tensor(b), ms.Tensor(dout))
    return (_values_and_grads(_DenseReference(has_bias, relu), *args),
            _values_and_grads(mine, *args))


# (batch, inputs, outputs, bias): LeNet's three layers, batch 1, sizes off the vector width.
DENSE_CASES = [(32, 400, 120, True), (32, 120, 84, True), (32, 84, 10, True), (1, 7, 3, False),
               (5, 33, 17, True), (6, 16, 4, False)]


@pytest.mark.parametrize("case", DENSE_CASES, ids=lambda c: "x".join(map(str, c[:3])))
def test_dense_within_float32_rounding(library, mode, case):
    n, k, m, has_bias = case
    rng = np.random.default_rng(sum(case[:3]))
    x, w = (rng.standard_normal(s).astype(np.float32) for s in ((n, k), (m, k)))
    b, dout = (rng.standard_normal(s).astype(np.float32) for s in ((m,), (n, m)))
    (y0, dx0, dw0, db0), (y1, dx1, dw1, db1) = _dense_both(library, has_bias, False,
                                                           x, w, b, dout)
    ax, aw, ad = np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), np.abs(dout)
    assert np.all(np.abs(y1 - y0) <= 2 * _gamma(k + 1) * (ax @ aw.T + np.abs(b)) + 1e-30)
    assert np.all(np.abs(dx1 - dx0) <= 2 * _gamma(m) * (ad @ aw) + 1e-30)
    assert np.all(np.abs(dw1 - dw0) <= 2 * _gamma(n) * (ad.T @ ax) + 1e-30)
    if has_bias:
        assert np.all(np.abs(db1 - db0) <= 2 * _gamma(n) * ad.sum(axis=0) + 1e-30)


@pytest.mark.parametrize("case", DENSE_CASES[::2], ids=lambda c: "x".join(map(str, c[:3])))
def test_dense_relu_bit_exact(library, mode, case):
    """On small integers and quarters every sum is exact, so the ReLU's cut (zeros included)
    must route the same gradients."""
    n, k, m, has_bias = case
    rng = np.random.default_rng(sum(case[:3]))
    x = rng.integers(-3, 4, (n, k)).astype(np.float32)
    w = (rng.integers(-4, 5, (m, k)) / 4).astype(np.float32)
    b = (rng.integers(-4, 5, (m,)) / 2).astype(np.float32)
    dout = rng.integers(-5, 6, (n, m)).astype(np.float32)
    reference, mine = _dense_both(library, has_bias, True, x, w, b, dout)
    for name, a, b_ in zip(("output", "dx", "dw", "db"), reference, mine):
        if name != "db" or has_bias:
            np.testing.assert_array_equal(b_, a, err_msg=name)
    assert np.count_nonzero(reference[0] == 0) > 0  # the ReLU cut some outputs


def test_results_do_not_depend_on_the_thread_count(library):
    """Each output is computed whole by one thread: one thread or all give the same bits."""
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(7)
    conv_case = (32, 6, 16, 5, 14, 14, "valid", True, True, True)
    conv_args = [rng.standard_normal(s).astype(np.float32)
                 for s in ((32, 6, 14, 14), (16, 6, 5, 5), (16,), (32, 16, 5, 5))]
    dense_args = [rng.standard_normal(s).astype(np.float32)
                  for s in ((32, 400), (120, 400), (120,), (32, 120))]
    before = native.threads()
    results = []
    try:
        for limit in (1, 4):
            used = native.threads(limit)
            results.append((used, [*_run_both(library, conv_case, *conv_args)[1],
                                   *_dense_both(library, True, True, *dense_args)[1]]))
    finally:
        native.threads(before)
    (one, first), (_, second) = results
    assert one == 1
    for a, b in zip(first, second):
        np.testing.assert_array_equal(b, a)


def test_msrun_workers_share_the_cpus(library, monkeypatch):
    """Under msrun each worker's pool takes its share of the machine's CPUs."""
    import os

    before = native.threads()
    monkeypatch.setenv("MS_ROLE", "MS_WORKER")
    monkeypatch.setenv("MS_WORKER_NUM", "2")
    native.reset()
    try:
        assert native.use_native("native", "CPU") == library
        assert native.threads() == max(1, len(os.sched_getaffinity(0)) // 2)
        monkeypatch.setenv("MS_WORKER_NUM", "many")
        assert native.msrun_workers() == 1
    finally:
        native.reset()
        native.threads(before)


def test_validation_runs_the_kernels_and_scores_as_inference_does(library):
    """The engine validates through NativeInference (the kernels); the network itself keeps
    MindSpore's operators in inference mode, and both give the same logits within rounding."""
    from trainer.config import TrainConfig
    from trainer.engine.optim import build_train_cells
    from trainer.networks import LeNet5

    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(3)
    net = LeNet5(kernels="native")
    cells = build_train_cells(TrainConfig(), net, np.full(4, 0.01, dtype=np.float32))
    assert isinstance(cells.eval_network._network, NativeInference)
    cells.eval_network.set_train(False)
    x = ms.Tensor(np.random.default_rng(3).standard_normal((5, 1, 32, 32)).astype(np.float32))
    labels = ms.Tensor(np.arange(5, dtype=np.int32))
    _, logits, _ = cells.eval_network(x, labels)
    reference = net(x).asnumpy()
    scale = np.abs(reference).max()
    np.testing.assert_allclose(logits.asnumpy(), reference, rtol=0, atol=1e-5 * scale)
    assert not np.array_equal(reference, np.zeros_like(reference))


def _momentum_launch(library, fused: bool, nesterov: bool = False):
    from trainer.engine.step import LaunchSteps, TrainStep
    from trainer.networks import LeNet5

    ms.set_seed(5)
    net = LeNet5(kernels="native")
    rates = ms.Tensor(np.linspace(0.02, 0.01, 32, dtype=np.float32))
    kind = NativeMomentum if fused else nn.Momentum
    extra = (library,) if fused else ()
    optimizer = kind(*extra, net.trainable_params(), rates, 0.9, weight_decay=1e-3,
                     use_nesterov=nesterov)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    launch = LaunchSteps(TrainStep(net, loss, optimizer))
    launch.set_train()
    return launch, optimizer


def test_fused_momentum_updates_as_apply_momentum(library):
    """NativeMomentum (one operator for every parameter, in place) against nn.Momentum (one
    ApplyMomentum each): the same parameters by name, and after 4 launches of 4 steps (a rate
    that changes every step, weight decay) the same weights and accumulations within rounding."""
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(2)
    data = ms.Tensor(rng.standard_normal((4, 8, 1, 32, 32)).astype(np.float32))
    labels = ms.Tensor(rng.integers(0, 10, (4, 8)).astype(np.int32))
    runs = []
    for fused in (False, True):
        launch, optimizer = _momentum_launch(library, fused)
        for _ in range(4):
            launch(data, labels).asnumpy()
        assert int(optimizer.global_step.asnumpy()[0]) == 16
        runs.append({p.name: p.asnumpy() for p in launch.get_parameters()})
    plain, fused = runs
    assert list(fused) == list(plain)
    for name, value in plain.items():
        if "weight" in name or "bias" in name:  # the weights and their accumulations
            scale = np.abs(value).max()
            assert scale > 0, name
            np.testing.assert_allclose(fused[name], value, rtol=0, atol=1e-4 * scale,
                                       err_msg=name)


@pytest.mark.parametrize("nesterov", [False, True], ids=["plain", "nesterov"])
def test_fused_momentum_follows_its_formula(library, mode, nesterov):
    """Two updates of two tensors against the formula in float64: accum = accum * momentum +
    grad; weight -= lr * accum, or with Nesterov weight -= lr * (grad + momentum * accum)."""
    rng = np.random.default_rng(4)
    shapes = [(3, 5), (7,)]
    weights = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    params = [ms.Parameter(ms.Tensor(w), name=f"w{k}") for k, w in enumerate(weights)]
    optimizer = NativeMomentum(library, params, 0.1, 0.9, use_nesterov=nesterov)
    expected = [w.astype(np.float64) for w in weights]
    accums = [np.zeros(s) for s in shapes]
    for _ in range(2):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        optimizer(tuple(ms.Tensor(g) for g in grads))
        for k, g in enumerate(grads):
            accums[k] = accums[k] * 0.9 + g
            step = g + 0.9 * accums[k] if nesterov else accums[k]
            expected[k] -= 0.1 * step
    for param, accum, moment, want in zip(params, accums, optimizer.moments, expected):
        np.testing.assert_allclose(moment.asnumpy(), accum, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(param.asnumpy(), want, rtol=1e-6, atol=1e-6)


def test_the_engine_fuses_momentum_only_with_the_kernels(library):
    """The engine's momentum is NativeMomentum when the network trains through the kernels,
    MindSpore's nn.Momentum otherwise; other optimizers are MindSpore's either way."""
    from trainer.config import TrainConfig
    from trainer.engine.optim import build_train_cells
    from trainer.networks import LeNet5

    ms.set_context(mode=ms.GRAPH_MODE)
    rates = np.full(4, 0.01, dtype=np.float32)
    for kernels, optimizer, kind in (("native", "momentum", NativeMomentum),
                                     ("mindspore", "momentum", nn.Momentum),
                                     ("native", "adam", nn.Adam)):
        cfg = TrainConfig(kernels=kernels, optimizer=optimizer).validate()
        cells = build_train_cells(cfg, LeNet5(kernels=kernels), rates)
        assert type(cells.step.optimizer) is kind, (kernels, optimizer)
        assert isinstance(cells.step.counts, NativeStepCounts) == (kernels == "native")


def test_native_step_counts_add_what_mindspores_operators_add(library):
    """The step's loss sum, correct predictions, samples and steps counted by one native
    operator equal the counts of TrainStep's own operators: the same float64 additions in the
    same order, and integer counts."""
    from trainer.engine.step import LaunchSteps, TrainStep
    from trainer.networks import LeNet5

    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(6)
    data = ms.Tensor(rng.standard_normal((5, 8, 1, 32, 32)).astype(np.float32))
    labels = ms.Tensor(rng.integers(0, 10, (5, 8)).astype(np.int32))
    counted = []
    for counts in (None, NativeStepCounts(library)):
        ms.set_seed(0)
        net = LeNet5(kernels="native")
        step = TrainStep(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                         nn.Momentum(net.trainable_params(), 0.01, 0.9), counts=counts)
        launch = LaunchSteps(step)
        launch.set_train()
        for _ in range(2):
            launch(data, labels).asnumpy()
        counted.append([p.asnumpy() for p in (step.stat_loss_sum, step.stat_correct,
                                              step.stat_samples, step.stat_steps)])
    for ours, theirs in zip(*counted):
        np.testing.assert_array_equal(theirs, ours)
    assert counted[0][2] == 80 and counted[0][3] == 10 and counted[0][0] > 0


def _lenet_step(kernels: str, seed: int = 0):
    from trainer.engine.step import LaunchSteps, TrainStep
    from trainer.networks import LeNet5

    ms.set_seed(seed)
    net = LeNet5(kernels=kernels)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    launch = LaunchSteps(TrainStep(net, loss, nn.Momentum(net.trainable_params(), 0.01, 0.9)))
    launch.set_train()
    return launch, net


def test_lenet_uses_the_kernels_in_training_only_with_the_same_parameters(library):
    ms.set_context(mode=ms.GRAPH_MODE)
    _, plain = _lenet_step("mindspore")
    _, fast = _lenet_step("native")
    assert fast.native and not plain.native
    assert ([p.name for p in fast.get_parameters()] == [p.name for p in plain.get_parameters()])
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32))
    fast.set_train(False)
    plain.set_train(False)
    np.testing.assert_array_equal(fast(x).asnumpy(), plain(x).asnumpy())  # same init, same ops


def test_lenet_step_with_native_kernels_runs_the_same_training(library):
    """Same start, same batches: the weights stay within rounding of MindSpore's operators'."""
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(0)
    data = ms.Tensor(rng.standard_normal((4, 8, 1, 32, 32)).astype(np.float32))
    labels = ms.Tensor(rng.integers(0, 10, (4, 8)).astype(np.int32))
    nets = []
    for kernels in ("mindspore", "native"):
        launch, net = _lenet_step(kernels)
        launch(data, labels).asnumpy()
        nets.append([p.asnumpy() for p in net.trainable_params()])
    for a, b in zip(*nets):
        scale = np.abs(a).max()
        assert np.abs(a - b).max() <= 1e-4 * scale  # 4 steps of lr 0.01: far below any change
        assert not np.array_equal(a, np.zeros_like(a))


# The recipe both whole runs below train: 2 epochs of Adam on the generated digits.
RECIPE = ["--no-plot", "--no-progress", "--log-every", "0", "--optimizer", "adam", "--lr",
          "0.005", "--epochs", "2"]
LEARNED = 0.6  # test accuracy after RECIPE, with either kernels (measured: 0.85-0.95)


def test_a_run_with_native_kernels_learns_resumes_exactly_and_exports(library, digits_dir,
                                                                     tmp_path):
    """train.py in-process: 2 epochs straight, and 1 + a resume, with native kernels, give the
    same weights bit for bit; the run learns; its checkpoint resumes with MindSpore's
    operators; the exported MINDIR (standard operators only) matches the checkpoint."""
    import json

    from trainer.checkpoint import read_checkpoint
    from trainer.cli import main
    from trainer.serving.export import export_checkpoint

    common = [*RECIPE, "--data-dir", str(digits_dir), "--output-dir", str(tmp_path)]
    assert main([*common, "--run-name", "straight"]) == 0
    assert main([*common, "--epochs", "1", "--run-name", "resumed"]) == 0
    assert main([*common, "--run-name", "resumed", "--resume", "auto"]) == 0
    latest = {}
    for name in ("straight", "resumed"):
        folder = tmp_path / name / "checkpoints"
        latest[name] = read_checkpoint(folder / json.loads((folder / "latest.json").read_text())
                                       ["file"])
    assert latest["straight"].meta.global_step == latest["resumed"].meta.global_step
    for key, value in latest["straight"].params.items():
        np.testing.assert_array_equal(np.asarray(latest["resumed"].params[key]),
                                      np.asarray(value), err_msg=key)
    assert latest["straight"].meta.run.config["kernels"] == "native"
    history = json.loads((tmp_path / "straight" / "history.json").read_text())
    assert history["test"]["final"]["test_accuracy"] >= LEARNED
    # Kernels are outside the fingerprint: the checkpoint resumes with MindSpore's operators.
    assert main([*common, "--epochs", "3", "--run-name", "straight", "--resume", "auto",
                 "--kernels", "mindspore"]) == 0
    exported = export_checkpoint(tmp_path / "straight", "mindir")
    assert b"Custom" not in exported.path.read_bytes()


def test_without_a_compiler_one_line_and_mindspore_operators(digits_dir, tmp_path):
    """The user's path: CXX names a missing program, so train.py says why in one line and
    trains (and learns) with MindSpore's operators."""
    result = run_train([*RECIPE, "--data-dir", str(digits_dir), "--output-dir", "runs",
                        "--run-name", "plain"], cwd=tmp_path,
                       env={"CXX": str(tmp_path / "no-such-compiler")})
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "Native kernels unavailable" in line]
    assert len(lines) == 1 and "no C++ compiler found" in lines[0], lines
    assert "MindSpore's operators" in lines[0]
    assert "Traceback" not in output
    assert "native kernels," not in output  # the start line names them only when used
    import json

    history = json.loads((tmp_path / "runs" / "plain" / "history.json").read_text())
    assert history["test"]["final"]["test_accuracy"] >= LEARNED


def test_fused_momentum_with_every_step_option_resumes_exactly(library, digits_dir, tmp_path):
    """Momentum through the fused update and the native step counts, with Nesterov, gradient
    accumulation, EMA and a dynamic loss scale: one epoch and a resume give the weights of two
    epochs straight, bit for bit (the update's ordering against the EMA, the accumulation
    buffers and the skipped-update branch included)."""
    import json

    from trainer.checkpoint import read_checkpoint
    from trainer.cli import main

    common = ["--no-plot", "--no-progress", "--log-every", "0", "--data-dir", str(digits_dir),
              "--output-dir", str(tmp_path), "--optimizer", "momentum", "--nesterov",
              "--accumulate-steps", "2", "--ema-decay", "0.9", "--loss-scale", "dynamic",
              "--lr", "0.02"]
    assert main([*common, "--epochs", "2", "--run-name", "straight"]) == 0
    assert main([*common, "--epochs", "1", "--run-name", "resumed"]) == 0
    assert main([*common, "--epochs", "2", "--run-name", "resumed", "--resume", "auto"]) == 0
    latest = {}
    for name in ("straight", "resumed"):
        folder = tmp_path / name / "checkpoints"
        latest[name] = read_checkpoint(folder / json.loads((folder / "latest.json").read_text())
                                       ["file"])
    assert latest["straight"].meta.run.config["kernels"] == "native"
    assert any(key.startswith("ema.") for key in latest["straight"].params)
    for key, value in latest["straight"].params.items():
        np.testing.assert_array_equal(np.asarray(latest["resumed"].params[key]),
                                      np.asarray(value), err_msg=key)
    history = json.loads((tmp_path / "straight" / "history.json").read_text())
    assert history["rows"][-1]["loss"] < history["rows"][0]["loss"]

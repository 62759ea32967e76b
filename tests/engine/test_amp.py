"""Mixed precision and loss scaling inside the one TrainStep, the options that ask for them, and
the messages for a device that cannot be used (simulated: no GPU or NPU is needed)."""

from __future__ import annotations

import ctypes
import logging
import threading

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from mindspore import amp, nn  # noqa: E402

from tests.conftest import ROOT, config_error  # noqa: E402
from tests.engine.test_step_options import Linear, _loss  # noqa: E402
from trainer import device  # noqa: E402
from trainer.checkpoint import load_bundle, network_weights, save_bundle  # noqa: E402
from trainer.checkpoint.bundle import is_train_state  # noqa: E402
from trainer.checkpoint.meta import BundleMeta  # noqa: E402
from trainer.cli import parse_args  # noqa: E402
from trainer.config import TrainConfig, load_config  # noqa: E402
from trainer.engine import amp as mixed  # noqa: E402
from trainer.engine.step import TrainStep  # noqa: E402
from trainer.errors import CheckpointError, ConfigError  # noqa: E402

RNG = np.random.default_rng(1)
X = RNG.normal(size=(12, 1, 8, 8)).astype(np.float32)
Y = RNG.integers(0, 10, 12).astype(np.int32)
# float16's largest value is 65504; the loss's gradient at the logits is about 0.1/12 per
# sample, so a scale of 2**24 overflows in a float16 backward pass on any machine.
OVERFLOWING = float(2**24)


def _step(level="O0", scaler=None, lr=0.5, momentum=0.9, **options):
    """A Linear network, its TrainStep at ``level`` with ``scaler``, and the network itself."""
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(3)
    net = Linear()
    opt = nn.Momentum(net.trainable_params(), lr, momentum)
    step = TrainStep(mixed.mixed_precision(net, level), _loss(), opt, loss_scaler=scaler,
                     **options)
    return net, step


def _values(cell) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def _run(step, x=X, y=Y):
    return step(ms.Tensor(x), ms.Tensor(y))


# ------------------------------------------------------------------------------ options
def test_options_from_yaml_flags_and_trainer_arguments():
    cfg = load_config(ROOT / "configs" / "lenet_amp.yaml")
    assert (cfg.amp_level, cfg.loss_scale) == ("O2", "dynamic")
    cfg = parse_args(["--amp-level", "auto", "--loss-scale", "fixed", "--loss-scale-value",
                      "4096"]).config
    assert (cfg.amp_level, cfg.loss_scale, cfg.loss_scale_value) == ("auto", "fixed", 4096.0)
    default = TrainConfig().validate()
    assert (default.amp_level, default.loss_scale) == ("O0", "none")
    # The level and the scaling decide what a checkpoint's state means: a resume must match.
    assert TrainConfig(amp_level="O2").validate().fingerprint() != default.fingerprint()
    assert TrainConfig(loss_scale="dynamic").validate().fingerprint() != default.fingerprint()


@pytest.mark.parametrize("values, expected", [
    ({"amp_level": "O4"}, "Option 'amp_level' is 'O4', which is not allowed. Choose one of: O0, "
                          "O1, O2, O3, auto."),
    ({"loss_scale": "auto"}, "Option 'loss_scale' is 'auto', which is not allowed. Choose one "
                             "of: none, fixed, dynamic."),
    ({"loss_scale_value": 0.5}, "Option 'loss_scale_value' is 0.5, but it must be at least 1.0"),
    ({"loss_scale_value": 1e39}, "Option 'loss_scale_value' is 1e+39, which is infinity in "
                                 "float32"),
])
def test_values_that_are_refused(values, expected):
    assert expected in config_error(TrainConfig(**values).validate)


# ------------------------------------------------------------------------ the twin network
@pytest.mark.parametrize("level", ["O1", "O2", "O3", "auto"])
def test_the_twin_shares_the_weights_and_the_network_stays_float32(level, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)  # MindSpore's rewrite (O1) would write ./rewritten_network
    ms.set_context(mode=ms.GRAPH_MODE)
    net = Linear()
    x = ms.Tensor(X)
    before = net(x).asnumpy()
    twin = mixed.mixed_precision(net, level)
    assert twin is not net
    assert [id(p) for p in twin.get_parameters()] == [id(p) for p in net.get_parameters()]
    assert all(p.dtype == ms.float32 for p in net.get_parameters())
    out = net(x)
    assert out.dtype == ms.float32 and np.array_equal(out.asnumpy(), before)
    trained = twin(x)
    assert trained.dtype == ms.float32
    np.testing.assert_allclose(trained.asnumpy(), before, atol=0.05)  # float16's precision
    assert not np.array_equal(trained.asnumpy(), before)  # it did compute in float16
    assert list(tmp_path.iterdir()) == []


def test_o0_trains_the_network_itself():
    net = Linear()
    assert mixed.mixed_precision(net, "O0") is net


def test_native_kernels_give_way_to_mindspore_operators(caplog):
    from trainer.networks.lenet import LeNet5

    net = LeNet5(kernels="native")
    if not net.native:
        pytest.skip("the native kernels cannot be built on this machine")
    with caplog.at_level(logging.INFO, logger="mstrain"):
        mixed.mixed_precision(net, "O2")
    assert not net.native
    assert ("Native kernels are float32 only; --amp-level O2 trains with MindSpore's operators."
            in caplog.text)


def test_a_network_that_cannot_be_copied_is_refused():
    class Locked(Linear):
        def __init__(self):
            super().__init__()
            self.guard = threading.Lock()

    with pytest.raises(ConfigError, match=r"--amp-level O3 needs a copy of the network Locked "
                                          r"that shares its weights .* or train with "
                                          r"--amp-level O0\."):
        mixed.mixed_precision(Locked(), "O3")


# ------------------------------------------------------------------------ the scaled step
def test_the_scaling_state_is_part_of_the_step_and_not_of_the_weights():
    net, step = _step("O2", amp.DynamicLossScaler(1024.0, 2, 1000))
    names = {p.name for p in step.get_parameters()}
    assert {"loss_scale.value", "loss_scale.counter", "loss_scale.overflows"} <= names
    assert all(is_train_state(n) for n in names if n.startswith("loss_scale."))
    _, plain = _step()
    assert not any(p.name.startswith("loss_scale") for p in plain.get_parameters())


def test_an_overflowing_update_changes_nothing_and_is_counted():
    net, step = _step("O3", amp.StaticLossScaler(OVERFLOWING), ema_decay=0.9)
    before = _values(step)
    loss = _run(step)
    assert np.isfinite(float(loss.asnumpy()))  # the forward pass is fine; its gradient is not
    after = _values(step)
    counters = {"loss_scale.overflows", "train_stats.loss_sum", "train_stats.correct",
                "train_stats.samples", "train_stats.steps"}
    changed = sorted(n for n in before if not np.array_equal(before[n], after[n]))
    assert changed == sorted(counters)  # weights, moments, step count, EMA all as they were
    assert int(after["loss_scale.overflows"]) == 1 and int(after["train_stats.steps"]) == 1


def test_an_overflowing_micro_batch_drops_its_whole_update():
    _, step = _step("O3", amp.StaticLossScaler(OVERFLOWING), accumulate=2)
    before = _values(step)
    _run(step, X[:6], Y[:6])
    _run(step, X[6:], Y[6:])
    after = _values(step)
    assert int(after["loss_scale.overflows"]) == 1  # one update, skipped
    assert int(after["grad_accum.count"]) == 0
    assert all(not after[n].any() for n in after if n.startswith("grad_accum.") and
               n != "grad_accum.count")
    assert all(np.array_equal(before[n], after[n]) for n in before
               if not n.startswith(("loss_scale", "train_stats")))


def test_the_dynamic_scale_halves_on_each_overflow_until_the_updates_go_through():
    _, step = _step("O3", amp.DynamicLossScaler(OVERFLOWING, 2, 1000), lr=0.1)
    start = _values(step)
    for _ in range(24):
        _run(step)
    scale = float(step.loss_scale.asnumpy())
    overflows = int(step.overflow_count.asnumpy())
    assert 1 <= overflows < 24 and scale == OVERFLOWING / 2**overflows
    assert int(step.optimizer.global_step.asnumpy()[0]) == 24 - overflows
    assert not np.array_equal(start["dense.weight"], _values(step)["dense.weight"])


def test_clipping_sees_unscaled_gradients():
    net, step = _step("O0", amp.StaticLossScaler(1024.0), lr=0.5, momentum=0.0, clip_norm=0.05)
    before = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
    loss_net = nn.WithLossCell(net, _loss())
    grads = [g.asnumpy() for g in ms.grad(loss_net, grad_position=None,
                                          weights=net.trainable_params())(ms.Tensor(X),
                                                                          ms.Tensor(Y))]
    norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
    assert norm > 0.05  # the clip has work to do, and would have far more on scaled gradients
    _run(step)
    for (name, w0), g in zip(before.items(), grads):
        np.testing.assert_allclose(net.trainable_params()[list(before).index(name)].asnumpy(),
                                   w0 - 0.5 * g * (0.05 / norm), rtol=1e-4, atol=1e-7)


def test_a_fixed_scale_without_overflow_gives_the_unscaled_update():
    _, plain = _step("O0")
    _, scaled = _step("O0", amp.StaticLossScaler(1024.0))
    for _ in range(3):
        _run(plain)
        _run(scaled)
    ours, theirs = _values(plain), _values(scaled)
    for name, value in ours.items():
        np.testing.assert_allclose(theirs[name], value, rtol=1e-5, atol=1e-7)
    assert int(scaled.overflow_count.asnumpy()) == 0


def test_a_bundle_with_an_impossible_loss_scale_is_damaged(tmp_path):
    class Held(nn.Cell):
        def __init__(self, value):
            super().__init__()
            self.weight = ms.Parameter(ms.Tensor(np.ones(3, np.float32)), name="w")
            self.scale = ms.Parameter(ms.Tensor(value, ms.float32), name="loss_scale.value")

    meta = BundleMeta(epoch=1, step_in_epoch=0, global_step=1, steps_per_epoch=1)
    good = load_bundle(save_bundle(Held(1024.0), tmp_path / "good.ckpt", meta))
    assert set(network_weights(good)) == {"w"}  # evaluation and export never see the scale
    save_bundle(Held(0.5), tmp_path / "bad.ckpt", meta)
    with pytest.raises(CheckpointError, match="damaged: its loss_scale.value tensor holds "
                                              r"\[0.5\], not one finite loss scale"):
        load_bundle(tmp_path / "bad.ckpt")


# --------------------------------------------------------------------- unusable devices
class FakeDriver:
    """libcuda.so.1 as ctypes shows it: cuInit, cuDeviceGetCount and cuDriverGetVersion."""

    def __init__(self, init=0, count=1, version=12040):
        self.init, self.count, self.version = init, count, version

    def cuInit(self, flags):
        return self.init

    def cuDeviceGetCount(self, ref):
        ref._obj.value = self.count
        return 0

    def cuDriverGetVersion(self, ref):
        ref._obj.value = self.version
        return 0


def _loader(present: dict[str, object]):
    return lambda name: present.get(name)


ALL_CUDA_11 = {soname: object() for _, soname in device.GPU_LIBRARIES}


@pytest.mark.parametrize("present, expected", [
    ({}, "no NVIDIA driver was found (libcuda.so.1 cannot be loaded)"),
    ({"libcuda.so.1": FakeDriver(init=100)}, "the NVIDIA driver finds no GPU "
                                             "(CUDA_ERROR_NO_DEVICE"),
    ({"libcuda.so.1": FakeDriver(init=999)}, "the NVIDIA driver does not start (cuInit returned "
                                             "CUDA error 999)"),
    ({"libcuda.so.1": FakeDriver(count=0)}, "no GPU found"),
    ({"libcuda.so.1": FakeDriver(version=10020)}, "the NVIDIA driver supports CUDA up to 10.2, "
                                                  "older than the CUDA 11.1"),
    ({"libcuda.so.1": FakeDriver(), "libcudart.so.12": object()},
     "the CUDA 11 runtime (libcudart.so.11.0), cuBLAS 11 (libcublas.so.11), cuDNN 8 "
     "(libcudnn.so.8)"),
    ({"libcuda.so.1": FakeDriver(), **ALL_CUDA_11, "libcudnn.so.8": None}, "cuDNN 8 "
                                                                             "(libcudnn.so.8) "
                                                                             "cannot be loaded"),
])
def test_what_a_gpu_lacks_is_named(present, expected):
    problem = device.gpu_problem(_loader(present))
    assert problem is not None and expected in problem
    if "libcudart.so.12" in present:
        assert problem.endswith("CUDA 12 is installed (libcudart.so.12), which this MindSpore "
                                "has no build for")


def test_a_complete_cuda_11_set_up_passes():
    assert device.gpu_problem(_loader({"libcuda.so.1": FakeDriver(), **ALL_CUDA_11})) is None


def test_what_an_ascend_set_up_lacks_is_named():
    assert device.ascend_problem(_loader({"libge_runner.so": object()})) == (
        "the CANN toolkit is not set up: AscendCL (libascendcl.so) cannot be loaded")
    assert device.ascend_problem(_loader({"libascendcl.so": object(),
                                          "libge_runner.so": object()})) is None


def test_a_missing_device_is_one_paragraph_before_mindspore_is_asked(monkeypatch):
    asked = []
    monkeypatch.setattr(device, "device_problem", lambda name: "no GPU found")
    monkeypatch.setattr(ms, "set_device", lambda *a, **k: asked.append(a))
    message = config_error(device.set_mode_and_device, "graph", "GPU")
    assert message.startswith("error: --device GPU cannot be used here: no GPU found. MindSpore "
                              "2.7.2 runs on an NVIDIA GPU with CUDA 11.1 or 11.6 and cuDNN 8")
    assert "ms.set_device('GPU'); ms.run_check()" in message
    assert message.endswith("Use --device CPU meanwhile.")
    assert asked == []


def test_a_back_end_mindspore_cannot_load_is_one_paragraph(monkeypatch):
    def refuse(name):  # what MindSpore 2.7.2 raises where its GPU plugin cannot load
        raise RuntimeError("Unsupported device target GPU. This process only supports one of "
                           "the ['CPU']. Please check whether the GPU environment is installed"
                           "\n\n----\n- C++ Call Stack: (For framework developers)\n----\n"
                           "mindspore/core/utils/ms_context.cc:279 SetDeviceTargetFromInner")

    monkeypatch.setattr(device, "device_problem", lambda name: None)
    monkeypatch.setattr(ms, "set_device", refuse)
    message = config_error(device.set_mode_and_device, "graph", "GPU")
    assert message.startswith("error: --device GPU cannot be used here: MindSpore could not use "
                              "its GPU back end (Unsupported device target GPU.")
    assert "C++ Call Stack" not in message and "ms_context.cc" not in message


def test_the_probe_reads_the_real_driver_without_mindspore():
    # Whatever this machine has, the probe answers in words (or None where a GPU works).
    problem = device.gpu_problem()
    assert problem is None or isinstance(problem, str) and problem
    assert device.load_library("libsurely-not-there.so.0") is None
    assert isinstance(device.load_library("libc.so.6"), ctypes.CDLL)

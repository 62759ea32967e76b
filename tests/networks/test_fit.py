"""Networks that fit the data: told ``num_classes``, ``in_channels`` and ``image_size`` (a user's
factory whichever it declares), and ResNet-20 with batch norm's statistics right in validation,
the moving average, checkpoints, evaluation and export."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

from tests.conftest import train_here  # noqa: E402
from trainer.errors import ConfigError  # noqa: E402
from trainer.networks import build_network  # noqa: E402


def forward(cell, batch: int, channels: int, size: int) -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(batch, channels, size, size)).astype(np.float32)
    return cell(ms.Tensor(x)).asnumpy()


@pytest.mark.parametrize("net, channels, classes, size, side", [
    ("lenet", 3, 2, 0, 32), ("lenet", 1, 5, 64, 64), ("lenet", 3, 10, 16, 16),
    ("mlp", 3, 2, 0, 16), ("mlp", 1, 3, 40, 40), ("resnet20", 3, 2, 0, 32),
    ("resnet20", 1, 4, 16, 16)])
def test_built_in_networks_take_the_datas_shape(net, channels, classes, size, side):
    built = build_network(net, classes, in_channels=channels, image_size=size, native=16)
    assert (built.image_size, built.in_channels) == (side, channels)
    built.cell.set_train(False)
    assert forward(built.cell, 2, channels, side).shape == (2, classes)


def test_a_side_too_small_for_lenet_is_refused():
    with pytest.raises(ConfigError, match="at least 16x16"):
        build_network("lenet", 10, image_size=8)


def test_mindvisions_lenet_takes_grayscale_only():
    with pytest.raises(ConfigError, match="takes 1-channel images, but the data has 3"):
        build_network("mindvision-lenet", 10, in_channels=3)


USER_NETS = textwrap.dedent("""
    from mindspore import nn

    seen = {}


    def classes_only(num_classes):
        seen["classes_only"] = {"num_classes": num_classes}
        return nn.SequentialCell(nn.Flatten(), nn.Dense(3 * 16 * 16, num_classes))


    def with_channels(num_classes, in_channels, image_size=8):
        seen["with_channels"] = {"num_classes": num_classes, "in_channels": in_channels,
                                 "image_size": image_size}
        return nn.SequentialCell(nn.Flatten(), nn.Dense(in_channels * image_size ** 2,
                                                        num_classes))


    def everything(num_classes, **kwargs):
        kwargs["num_classes"] = num_classes
        seen["everything"] = kwargs
        return nn.SequentialCell(nn.Flatten(), nn.Dense(kwargs["in_channels"]
                                                        * kwargs["image_size"] ** 2,
                                                        kwargs["num_classes"]))
""")


def test_a_users_factory_gets_what_it_declares(tmp_path, monkeypatch):
    import importlib
    import sys

    (tmp_path / "usernets_fit.py").write_text(USER_NETS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    try:
        for name in ("classes_only", "with_channels", "everything"):
            built = build_network(f"usernets_fit:{name}", 4, in_channels=3, native=16)
            assert forward(built.cell, 2, 3, built.image_size).shape == (2, 4)
        seen = importlib.import_module("usernets_fit").seen
    finally:
        sys.modules.pop("usernets_fit", None)
    assert seen == {"classes_only": {"num_classes": 4},
                    "with_channels": {"num_classes": 4, "in_channels": 3, "image_size": 16},
                    "everything": {"num_classes": 4, "in_channels": 3, "image_size": 16}}


def test_resnet20_is_the_papers_size():
    cell = build_network("resnet20", 10, in_channels=3).cell
    trainable = sum(p.size for p in cell.trainable_params())
    assert 260_000 < trainable < 280_000  # He et al.: 0.27 M
    stats = [p.name for p in cell.get_parameters() if not p.requires_grad]
    assert len(stats) == 2 * 19 and all("moving_" in name for name in stats)


def test_batch_norm_trains_its_statistics_and_evaluates_with_them():
    cell = build_network("resnet20", 3, in_channels=3, image_size=16).cell
    before = cell.bn1.moving_mean.asnumpy().copy()
    cell.set_train(True)
    forward(cell, 8, 3, 16)
    assert not np.array_equal(cell.bn1.moving_mean.asnumpy(), before)
    cell.set_train(False)
    x = np.random.default_rng(1).normal(size=(6, 3, 16, 16)).astype(np.float32)
    whole = cell(ms.Tensor(x)).asnumpy()
    alone = np.concatenate([cell(ms.Tensor(x[i:i + 1])).asnumpy() for i in range(6)])
    np.testing.assert_allclose(alone, whole, rtol=1e-4, atol=1e-5)  # no batch statistics


def test_the_moving_average_covers_batch_norms_statistics():
    from mindspore import nn

    from trainer.engine.step import TrainStep

    cell = build_network("resnet20", 3, in_channels=3, image_size=16).cell
    step = TrainStep(cell, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
                     nn.Momentum(cell.trainable_params(), 0.01, 0.9), ema_decay=0.5)
    names = {p.name for p in step.ema}
    assert "ema.bn1.moving_mean" in names and "ema.conv1.weight" in names
    x = np.random.default_rng(0).normal(size=(4, 3, 16, 16)).astype(np.float32)
    step.set_train(True)
    step(ms.Tensor(x), ms.Tensor(np.array([0, 1, 2, 0], dtype=np.int32)))
    average = {p.name: p.asnumpy() for p in step.ema}
    live = cell.bn1.moving_mean.asnumpy()
    assert not np.array_equal(average["ema.bn1.moving_mean"], live)  # averaged, not copied


USER_SOURCE = textwrap.dedent("""
    import numpy as np

    from trainer.data.sources import ArraySource


    def split(count, seed):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 3, count)
        images = rng.integers(0, 60, (count, 3, 16, 16)).astype(np.uint8)
        for k in range(3):
            images[labels == k, k, 4:12, :] += 150
        return images, labels


    def bands():
        return ArraySource(split(320, 1), split(64, 2), class_names=["red", "green", "blue"])
""")


def test_resnet20_trains_validates_evaluates_and_exports_with_its_statistics(tmp_path):
    (tmp_path / "bandsource.py").write_text(USER_SOURCE)
    common = ["--data-source", "bandsource:bands", "--output-dir", "runs", "--no-progress",
              "--no-plot"]
    trained = train_here([*common, "--net", "resnet20", "--image-size", "16", "--epochs", "1",
                          "--batch-size", "16", "--val-split", "64", "--ema-decay", "0.9",
                          "--log-every", "0", "--run-name", "rn"], tmp_path)
    assert trained.returncode == 0, trained.stderr
    run = tmp_path / "runs" / "rn"
    history = json.loads((run / "history.json").read_text())
    final = history["test"]["final"]["test_accuracy"]
    assert final >= 0.8, history  # the average's weights and statistics, in inference mode
    serving = common[:4]  # the data source and --output-dir: what mstrain eval and export take
    evaluated = train_here(["--eval-only", "--ckpt", str(run / "checkpoints" / "best.ckpt"),
                            *serving], tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((run / "evaluation.json").read_text())
    assert report["accuracy"] == pytest.approx(history["test"]["best"]["test_accuracy"])
    assert report["class_names"] == ["red", "green", "blue"]
    exported = train_here(["--export", "mindir", "--ckpt", str(run), *serving], tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "input [N, 3, 16, 16] float32; outputs match the checkpoint" in exported.stdout
    assert (run / "export" / "resnet20.mindir").is_file()
    assert Path(run / "export").is_dir()

"""The test split at the end of training: the final weights and the best checkpoint, scored with
the cell validation used; a best checkpoint equal to the final weights is not scored twice."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

import mindspore.dataset as ds  # noqa: E402
from mindspore import nn  # noqa: E402

from trainer.engine import final_test as ft  # noqa: E402
from trainer.evaluation import evaluate_network  # noqa: E402
from trainer.networks import LeNet5  # noqa: E402


def _test_split(count: int = 96):
    rng = np.random.default_rng(4)
    images = rng.standard_normal((count, 1, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, count).astype(np.int32)
    return ds.NumpySlicesDataset((images, labels), column_names=["image", "label"],
                                 shuffle=False).batch(32)


@pytest.fixture
def scoring(monkeypatch):
    """The network, its validation cell, and a record of every pass over the test split."""
    ms.set_seed(1)
    network = LeNet5()
    eval_net = nn.WithEvalCell(network, nn.SoftmaxCrossEntropyWithLogits(sparse=True,
                                                                         reduction="mean"))
    passes = []

    def counted(net, dataset, num_classes, **kwargs):
        passes.append(kwargs.get("eval_net"))
        return evaluate_network(net, dataset, num_classes, **kwargs)

    monkeypatch.setattr("trainer.evaluation.evaluate_network", counted)
    cfg = SimpleNamespace(num_classes=10, net="lenet")
    return SimpleNamespace(network=network, eval_net=eval_net, passes=passes, cfg=cfg)


def _values(network):
    return {p.name: p.asnumpy().copy() for p in network.get_parameters()}


def test_a_best_checkpoint_equal_to_the_final_weights_takes_their_scores(scoring, tmp_path):
    best = tmp_path / "best.ckpt"
    ms.save_checkpoint(scoring.network, str(best))
    results = ft.final_test(scoring.cfg, scoring.network, None, _test_split(), best, ema=False,
                            eval_net=scoring.eval_net)
    assert scoring.passes == [scoring.eval_net]  # one pass, with validation's cell
    final, kept = results["final"], results["best"]
    assert {k: kept[k] for k in final} == final
    assert kept["checkpoint"] == str(best)
    # The same scores a fresh network with the checkpoint's weights gets.
    fresh = LeNet5()
    ms.load_param_into_net(fresh, ms.load_checkpoint(str(best)))
    alone = evaluate_network(fresh, _test_split(), 10, keep_mistakes=0)
    assert final["test_accuracy"] == alone.accuracy
    assert final["test_loss"] == pytest.approx(alone.loss, rel=1e-6)


def test_another_best_checkpoint_is_scored_and_the_final_weights_are_put_back(scoring,
                                                                           tmp_path):
    best = tmp_path / "best.ckpt"
    ms.set_seed(7)
    other = LeNet5()  # other weights, as an earlier epoch's
    ms.save_checkpoint(other, str(best))
    before = _values(scoring.network)
    results = ft.final_test(scoring.cfg, scoring.network, None, _test_split(), best, ema=False,
                            eval_net=scoring.eval_net)
    assert scoring.passes == [scoring.eval_net, scoring.eval_net]
    after = _values(scoring.network)
    assert all(np.array_equal(before[name], after[name]) for name in before)
    assert scoring.network.training  # back in training mode, as after validation
    alone = evaluate_network(other, _test_split(), 10, keep_mistakes=0)
    assert results["best"]["test_accuracy"] == alone.accuracy
    assert results["best"]["test_loss"] == pytest.approx(alone.loss, rel=1e-6)
    # After the pass the network scores its own weights again, not the checkpoint's.
    rescored = evaluate_network(scoring.network, _test_split(), 10, keep_mistakes=0,
                                eval_net=scoring.eval_net)
    assert rescored.accuracy == results["final"]["test_accuracy"]
